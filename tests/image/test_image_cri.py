"""Issue 14, 1. Images: the image built by `make image` (tools/build_image.sh) runs on a
real containerd through CRI -- the agent with `coral --version`, runtime detection and
the binaries it execs; the webhook as a non-root user with a read-only root filesystem,
serving /healthz -- and carries the OCI labels (source, version, revision)."""

from __future__ import annotations

import json
import pathlib
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.request
import uuid

from coral_lib import __version__
from coral_lib._proto.cri.runtime.v1 import api_pb2
from tests.image import cri_helpers
from tests.support import containerd, coral_procs, image
from tests.support.image import WEBHOOK_UID


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pod(node, name: str):
    return node.run_pod(name, "coral-system", str(uuid.uuid4()), containers=[])


def _status_field(pid: int, field: str) -> str:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _pids_with(needle: str) -> list[int]:
    out = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def test_agent_image_runs_coral_version_and_detects_its_runtime_in_a_cri_container(
        node, agent_image):
    """Item: the agent image runs on containerd; what the agent needs at run time is in it."""
    pod = _pod(node, "agent-probe")
    cid = cri_helpers.start(node, pod, name="coral-agent", image=agent_image.ref,
                            argv=["sleep", "infinity"],
                            env={"CORAL_AGENT_MODE": "sidecar", "POD_NAME": "agent-probe",
                                 "POD_NAMESPACE": "coral-system"})
    code, out, err = cri_helpers.exec_sync(node, cid, ["coral", "--version"])
    assert (code, out.strip()) == (0, f"coral {__version__}"), err
    code, out, err = cri_helpers.exec_sync(node, cid, ["coral", "agent", "status"])
    assert code == 0, err
    assert "sidecar" in out.lower(), out
    code, out, err = cri_helpers.exec_sync(
        node, cid, ["sh", "-c", "command -v nsenter setpriv setsid chroot python3 && id -u"])
    assert code == 0 and out.split()[-1] == "0", (out, err)  # the agents run as root
    code, out, err = cri_helpers.exec_sync(node, cid, ["python3", "-c", (
        "import coral_lib.agent.modes, coral_lib.ops.tap, coral_lib.webhook.server, grpc, "
        "cryptography, kubernetes, psutil, pyroute2; print('imports ok')")])
    assert (code, out.strip()) == (0, "imports ok"), err
    node.remove_pod(pod)


def test_webhook_image_runs_as_non_root_with_a_read_only_root_fs_and_serves_healthz(
        node, agent_image, tmp_path):
    """Item: the webhook runs as a non-root user with a read-only root filesystem (the
    securityContext its manifest sets: runAsUser 65532, readOnlyRootFilesystem)."""
    tls = tmp_path / "tls"
    coral_procs.coral("webhook", "certs", "--out", str(tls), "--ip", "127.0.0.1")
    (tls / "labels.json").write_text("{}")
    for path in tls.iterdir():
        path.chmod(0o644)  # a Secret volume's default mode
    tls.chmod(0o755)
    port = _free_port()
    pod = _pod(node, "webhook")
    cid = cri_helpers.start(
        node, pod, name="webhook", image=agent_image.ref, run_as_user=WEBHOOK_UID,
        readonly_rootfs=True, mounts=[(str(tls), "/etc/coral-webhook")],
        argv=["coral", "webhook", "serve", "--listen", f"127.0.0.1:{port}",
              "--cert", "/etc/coral-webhook/tls.crt", "--key", "/etc/coral-webhook/tls.key",
              "--namespace-labels", "/etc/coral-webhook/labels.json"])
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    deadline, body = time.monotonic() + 30, ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context,
                                        timeout=2) as reply:
                body = reply.read().decode()
                break
        except OSError:
            time.sleep(0.2)
    assert body == "ok\n", node.log_tail()
    servers = _pids_with(f"127.0.0.1:{port}")
    assert servers
    for pid in servers:
        assert _status_field(pid, "Uid").split() == [str(WEBHOOK_UID)] * 4
        assert int(_status_field(pid, "CapEff"), 16) == 0  # non-root: no capabilities
    code, out, err = cri_helpers.exec_sync(node, cid, ["sh", "-c", "touch /opt/coral/x"])
    assert code != 0 and "Read-only file system" in err, (code, out, err)
    code, out, _ = cri_helpers.exec_sync(node, cid, ["id", "-un"])
    assert out.strip() == "coral"
    node.remove_pod(pod)


def test_image_archive_carries_the_oci_labels(agent_image):
    """Item: OCI labels (source, version, revision) in the image config."""
    with tarfile.open(agent_image.archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        (entry,) = index["manifests"]
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == agent_image.tag

        def blob(digest: str) -> dict:
            return json.load(tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1]))

        config = blob(blob(entry["digest"])["config"]["digest"])
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.revision"] == agent_image.revision
    assert labels["org.opencontainers.image.source"].startswith("https://")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).parents[2]).stdout.strip()
    assert agent_image.revision == head


def test_make_image_imports_into_a_containerd(node, agent_image, tmp_path):
    """Item: `make image IMPORT=<socket>` (tools/build_image.sh --import) imports the
    archive into containerd's k8s.io namespace, where CRI finds it by its full name."""
    with containerd.Containerd(tmp_path) as fresh:
        done = subprocess.run(["bash", str(image.SCRIPT), "--import", fresh.socket],
                              cwd=image.ROOT, capture_output=True, text=True,
                              timeout=image.BUILD_TIMEOUT)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout.strip().splitlines()[-1])["ref"] == agent_image.ref
        request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=agent_image.ref))
        deadline = time.monotonic() + 30
        while not fresh.images_service.ImageStatus(request, timeout=30).image.id:
            assert time.monotonic() < deadline, "CRI does not see the imported image"
            time.sleep(0.1)
        tags = fresh.images_service.ImageStatus(request, timeout=30).image.repo_tags
        assert agent_image.ref in tags
