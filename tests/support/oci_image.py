"""Build one-layer OCI image archives offline from the busybox-static binary.

No registry is reachable here, so test images are made from Debian's busybox-static:
the binary, one symlink per applet, /etc/passwd and /etc/group. `import_image` loads an
archive into containerd's `k8s.io` namespace (the one CRI uses) under a full
`docker.io/local/NAME:latest` name, because CRI expands short names and would try to pull.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Sequence

BUSYBOX = "/bin/busybox"
TAG = "latest"
PAUSE_NAME = "pause"
# The sandbox's PID 1: sleeps until SIGTERM/SIGINT, then exits at once like the real pause.
PAUSE_ENTRYPOINT = ("/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
_GROUP = b"root:x:0:\nnobody:x:65534:\n"
_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys", "dev")


def image_ref(name: str) -> str:
    return f"docker.io/local/{name}:{TAG}"


def busybox_path() -> str:
    """The static busybox binary; a dynamically linked one would not run inside the image."""
    path = pathlib.Path(shutil.which("busybox") or BUSYBOX)
    if not path.exists() or _has_interpreter(path.read_bytes()):
        raise RuntimeError("a static busybox is required: apt-get install -y busybox-static")
    return str(path)


def _has_interpreter(elf: bytes) -> bool:
    """True when a 64-bit little-endian ELF has a PT_INTERP header (dynamically linked)."""
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3
               for i in range(phnum))


def _applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    return sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})


def _add(tar: tarfile.TarFile, name: str, *, data: bytes = b"", mode: int = 0o644,
         kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def layer_tar(busybox: str) -> bytes:
    """The uncompressed root filesystem layer, byte-for-byte reproducible."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in _DIRS:
            mode = 0o1777 if directory == "tmp" else 0o755
            _add(tar, directory, kind=tarfile.DIRTYPE, mode=mode)
        _add(tar, "bin/busybox", data=pathlib.Path(busybox).read_bytes(), mode=0o755)
        for applet in _applets(busybox):
            if applet != "bin/busybox":
                _add(tar, applet, kind=tarfile.SYMTYPE, link="/bin/busybox", mode=0o777)
        _add(tar, "etc/passwd", data=_PASSWD)
        _add(tar, "etc/group", data=_GROUP)
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _json(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def build_archive(
    path: pathlib.Path,
    *,
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = ("/bin/sh",),
    layer: bytes | None = None,
) -> pathlib.Path:
    """Write an OCI image layout tar (what `ctr image import` reads) to path."""
    layer = layer if layer is not None else layer_tar(busybox_path())
    blobs: dict[str, bytes] = {}
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": list(entrypoint) or None, "Cmd": list(cmd) or None,
                   "Env": [PATH_ENV], "WorkingDir": "/"},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _blob(blobs, _json(config), "application/vnd.oci.image.config.v1+json"),
        "layers": [_blob(blobs, layer, "application/vnd.oci.image.layer.v1.tar")],
    }
    entry = _blob(blobs, _json(manifest), "application/vnd.oci.image.manifest.v1+json")
    entry["annotations"] = {"org.opencontainers.image.ref.name": TAG}
    index = {"schemaVersion": 2, "manifests": [entry]}
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", data=_json({"imageLayoutVersion": "1.0.0"}))
        _add(tar, "index.json", data=_json(index))
        _add(tar, "blobs", kind=tarfile.DIRTYPE, mode=0o755)
        _add(tar, "blobs/sha256", kind=tarfile.DIRTYPE, mode=0o755)
        for digest, data in blobs.items():
            _add(tar, "blobs/sha256/" + digest.removeprefix("sha256:"), data=data)
    return path


def import_image(archive: pathlib.Path, *, name: str, address: str) -> str:
    """Import into containerd's k8s.io namespace; returns the full image reference."""
    argv = ["ctr", "-n", "k8s.io", "--address", address, "image", "import",
            "--base-name", f"docker.io/local/{name}", str(archive)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return image_ref(name)
