"""Issue 14, 4.2 least privilege: the sidecar agent, run from the image in a CRI container
with exactly the runtime's default capability set (what the webhook now injects: no added
capability), reaches the app containers of its pod -- a root app and a non-root app -- by
chroot through /proc/<pid>/root as the app's own uid: exec and shell, with the app's
environment and working directory, and tap. An app with more capabilities than the sidecar stays
out of reach (the coral.io/sidecar-ptrace annotation is for those), and the old path,
setns into the app's mount namespace, is refused with these capabilities."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import uuid

from coral_lib.ops import nsenter
from tests.image import cri_helpers
from tests.support import containerd

# containerd's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
DEFAULT_CAPS = 0xa80425fb
DEFAULT_SET = ("-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,"
               "+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap")
HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _app(node, pod, name: str, **kwargs) -> str:
    return cri_helpers.start(
        node, pod, name=name, image=containerd.BUSYBOX_IMAGE, working_dir="/tmp",
        argv=["sh", "-c", f"echo {name}-marker > /tmp/marker; exec sleep 100000"],
        env={"CORAL_CONTAINER_NAME": name, "APP_ONLY": f"{name}-env"}, **kwargs)


def test_sidecar_with_the_default_capability_set_execs_and_shells_into_root_and_non_root_apps(
        node, agent_image):
    pod = cri_helpers.run_pod(node, "shop-web", "shop", str(uuid.uuid4()), privileged=True)
    _app(node, pod, "web")  # root, default capabilities
    _app(node, pod, "worker", run_as_user=1000)  # non-root, no capabilities
    capture = _app(node, pod, "capture", privileged=True)  # root with every capability
    agent = cri_helpers.start(
        node, pod, name="coral-agent", image=agent_image.ref, argv=["sleep", "infinity"],
        mounts=[(str(HERE), "/probe")],
        env={"CORAL_AGENT_MODE": "sidecar", "POD_NAME": "shop-web", "POD_NAMESPACE": "shop",
             "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    code, out, err = cri_helpers.exec_sync(
        node, agent, ["python3", "/probe/sidecar_probe.py", "web", "worker"], timeout=120)
    assert code == 0, (out, err)
    report = json.loads(out)

    # exactly the runtime's default set, as root: nothing added, nothing privileged
    assert (report["cap_eff"], report["uid"]) == (DEFAULT_CAPS, 0)
    rt = report["runtime"]
    assert (rt["mode"], rt["exec_backend"], rt["can_exec"], rt["can_shell"]) == \
        ("K8S_SIDECAR", "chroot", True, True), rt
    assert {"web", "worker"} <= set(report["containers"])

    for name, uid, caps in (("web", 0, DEFAULT_CAPS), ("worker", 1000, 0)):
        result = report["exec"][name]
        assert result["error"] == "" and result["rc"] == 0, result
        # the app's uid, its files, its cwd and environment (+ the request's), and no
        # capability beyond the app's own (SYS_CHROOT is not left ambient)
        assert result["stdout"] == (f"{uid}\n{name}-marker\ncwd=/tmp env={name}-env "
                                    f"extra=from-request\nCapEff:\t{caps:016x}\n"), result
        shell = report["shell"][name]
        assert shell["rc"] == 7, shell
        assert f"{uid}\r\n{name}-marker\r\ncwd=/tmp env={name}-env" in shell["output"], shell
        # tap: the pod's network namespace is the sidecar's own; AF_PACKET needs NET_RAW only
        tapped = report["tap"][name]
        assert (tapped["packets"], tapped["reason"], tapped["payload_seen"]) == \
            (3, "max_packets", True), tapped
        # the old path (setns into the app's mount namespace) needs what the pod lacks
        assert report["nsenter"][name] == \
            "namespace entry denied: missing CAP_SYS_ADMIN, CAP_SYS_PTRACE"

    # an app with capabilities beyond the sidecar's: the kernel refuses, the error says why
    (denied,) = [v for k, v in report["unnamed"].items() if k == capture[:12]]
    assert "Permission denied" in denied and "coral.io/sidecar-ptrace" in denied, denied
    # ... and what that annotation adds, SYS_PTRACE on top of the default set, reaches it
    capture_pid = nsenter.find_container_pid(container_id=capture)
    assert _chroot_cat(capture_pid, DEFAULT_SET + ",+sys_ptrace") == "capture-marker\n"
    assert "coral.io/sidecar-ptrace" in _chroot_cat(capture_pid, DEFAULT_SET)
    node.remove_pod(pod)


_CAT = """
import sys
from coral_lib.ops import base, chroot
try:
    result = chroot.ChrootBackend().run(base.ExecRequest(
        argv=["cat", "/tmp/marker"], target=base.ExecTarget(pid=int(sys.argv[1]))))
    print(result.stdout.decode(), end="")
except base.OperationError as exc:
    print(exc)
"""


def _chroot_cat(pid: int, bounding: str) -> str:
    """The chroot backend run from this machine as root with exactly `bounding`."""
    out = subprocess.run(
        ["setpriv", "--inh-caps=-all", f"--bounding-set={bounding}", sys.executable, "-c", _CAT,
         str(pid)], capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    return out.stdout
