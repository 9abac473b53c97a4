"""Size of the Coral image (issue 14): the OCI archive `make image` writes, its layers
compressed (what a registry stores and a node pulls) and uncompressed (what the node
unpacks), the Debian base and Coral's own layer apart.

    .venv/bin/python -m bench.bench_image
"""

from __future__ import annotations

import gzip
import json
import pathlib
import subprocess
import tarfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MB = 1 << 20


def _uncompressed(stream) -> int:
    size = 0
    with gzip.GzipFile(fileobj=stream) as layer:
        while chunk := layer.read(1 << 20):
            size += len(chunk)
    return size


def measure(archive: pathlib.Path) -> dict:
    with tarfile.open(archive) as tar:
        (entry,) = json.load(tar.extractfile("index.json"))["manifests"]
        manifest = json.load(tar.extractfile("blobs/sha256/" + entry["digest"].split(":")[1]))
        layers = []
        for layer in manifest["layers"]:
            blob = tar.extractfile("blobs/sha256/" + layer["digest"].split(":")[1])
            layers.append((layer["size"], _uncompressed(blob)))
    (base_c, base_u), *rest = layers
    return {
        "archive_mb": round(archive.stat().st_size / MB, 1),
        "compressed_mb": round(sum(c for c, _ in layers) / MB, 1),
        "uncompressed_mb": round(sum(u for _, u in layers) / MB, 1),
        "base_layer_compressed_mb": round(base_c / MB, 1),
        "base_layer_uncompressed_mb": round(base_u / MB, 1),
        "coral_layers_compressed_mb": round(sum(c for c, _ in rest) / MB, 1),
        "coral_layers_uncompressed_mb": round(sum(u for _, u in rest) / MB, 1),
        "layers": len(layers),
        "manifest_digest": entry["digest"],
    }


def run(*, quick: bool = False) -> dict:
    """Build (or reuse the cached) image and measure its archive; `quick` changes nothing."""
    started = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "tools" / "build_image.sh")], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=1800)
    meta = json.loads(done.stdout.strip().splitlines()[-1])
    return {**measure(pathlib.Path(meta["archive"])), "ref": meta["ref"],
            "build_or_cache_s": round(time.monotonic() - started, 1),
            "cached": "up to date" in done.stderr}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:32} {value}")
