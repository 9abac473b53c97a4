"""Issue 14 §2 "A pod runner that does what kubelet does": pods created through the API
fixture run as real busybox containers on the private containerd; each test names the item.
"""

from __future__ import annotations

import base64
import os
import pathlib
import time

from coral_lib._proto.cri.runtime.v1 import api_pb2
from tests.podrunner.conftest import (
    container_state,
    exec_in,
    is_ready,
    pod,
    pod_status,
    wait_for,
)
from tests.support import containerd as containerd_

SLEEP = ["sleep", "100000"]
# containerd's default capability set (the runtime's, which add/drop apply on top of).
DEFAULT_CAPS = {"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                "AUDIT_WRITE"}
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
            "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18,
            "SYS_PTRACE": 19, "SYS_ADMIN": 21, "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31}


def run(cluster, ns, name, containers, **spec):
    cluster.store.create(pod(name, containers, **spec), namespace=ns)
    wait_for(lambda: is_ready(cluster, ns, name), what=f"pod {name} ready")


def status_field(cluster, ns, name, container, field):
    _code, out = exec_in(cluster, ns, name, container, ["cat", "/proc/self/status"])
    for line in out.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in /proc/self/status: {out}")


def caps(cluster, ns, name, container="c"):
    mask = int(status_field(cluster, ns, name, container, "CapEff"), 16)
    return {n for n, bit in CAP_BITS.items() if mask >> bit & 1}, mask


# ---- sandbox namespaces -------------------------------------------------------------------

def test_sandbox_namespaces_host_network_and_host_pid(cluster, ns):
    run(cluster, ns, "host", [{"name": "c", "command": SLEEP}], hostNetwork=True, hostPID=True)
    for kind in ("net", "pid"):
        _c, out = exec_in(cluster, ns, "host", "c", ["readlink", f"/proc/self/ns/{kind}"])
        assert out.strip() == os.readlink(f"/proc/self/ns/{kind}"), kind
    assert pod_status(cluster, ns, "host")["podIP"] == "127.0.0.1"


def test_sandbox_namespaces_pod_network_and_isolated_pid(cluster, ns):
    run(cluster, ns, "iso", [{"name": "c", "command": SLEEP}, {"name": "d", "command": SLEEP}])
    _c, out = exec_in(cluster, ns, "iso", "c", ["readlink", "/proc/self/ns/net"])
    assert out.strip() != os.readlink("/proc/self/ns/net")
    ip = pod_status(cluster, ns, "iso")["podIP"]
    _c, addrs = exec_in(cluster, ns, "iso", "c", ["ip", "-4", "addr"])
    assert ip and ip in addrs
    # Without shareProcessNamespace each container is PID 1 of its own PID namespace.
    assert exec_in(cluster, ns, "iso", "d", ["sh", "-c", "pidof sleep"])[1].split() == ["1"]


def test_sandbox_namespaces_share_process_namespace(cluster, ns):
    run(cluster, ns, "shared", [{"name": "c", "command": ["sleep", "123457"]},
                                {"name": "d", "command": SLEEP}], shareProcessNamespace=True)
    _c, out = exec_in(cluster, ns, "shared", "d", ["ps", "-o", "args"])
    assert "sleep 123457" in out


# ---- init containers and native sidecars ---------------------------------------------------

def test_init_containers_in_order(cluster, ns):
    mount = [{"name": "work", "mountPath": "/work"}]
    inits = [{"name": f"init-{i}", "image": containerd_.BUSYBOX_IMAGE, "volumeMounts": mount,
              "command": ["sh", "-c", f"sleep 0.{3 - i}; echo {i} >> /work/order"]}
             for i in (1, 2)]
    run(cluster, ns, "ordered", [{"name": "c", "command": SLEEP, "volumeMounts": mount}],
        initContainers=inits, volumes=[{"name": "work", "emptyDir": {}}])
    assert exec_in(cluster, ns, "ordered", "c", ["cat", "/work/order"])[1] == "1\n2\n"
    for i in (1, 2):
        state = container_state(cluster, ns, "ordered", f"init-{i}", init=True)["state"]
        assert state["terminated"]["reason"] == "Completed"


def test_native_sidecar_starts_before_app_and_keeps_running(cluster, ns):
    mount = [{"name": "work", "mountPath": "/work"}]
    sidecar = {"name": "side", "image": containerd_.BUSYBOX_IMAGE, "restartPolicy": "Always",
               "volumeMounts": mount,
               "command": ["sh", "-c", "touch /work/sidecar-up; rm -f /work/stop; "
                           "while [ ! -f /work/stop ]; do sleep 0.1; done; exit 1"]}
    # The app refuses to run unless the sidecar was already up when it started.
    app = {"name": "c", "volumeMounts": mount,
           "command": ["sh", "-c", "test -f /work/sidecar-up || exit 7; exec sleep 100000"]}
    run(cluster, ns, "sc", [app], initContainers=[sidecar],
        volumes=[{"name": "work", "emptyDir": {}}])
    side = container_state(cluster, ns, "sc", "side", init=True)
    assert "running" in side["state"] and side["ready"]
    assert container_state(cluster, ns, "sc", "c")["restartCount"] == 0
    # A sidecar that exits is restarted while the app keeps running.
    exec_in(cluster, ns, "sc", "c", ["touch", "/work/stop"])
    wait_for(lambda: container_state(cluster, ns, "sc", "side", init=True)["restartCount"] >= 1
             and "running" in container_state(cluster, ns, "sc", "side", init=True)["state"],
             what="sidecar restarted")
    assert container_state(cluster, ns, "sc", "c")["restartCount"] == 0


# ---- securityContext -----------------------------------------------------------------------

def test_security_context_capabilities_add_drop_on_default_set(cluster, ns):
    run(cluster, ns, "caps", [
        {"name": "c", "command": SLEEP},
        {"name": "add", "command": SLEEP,
         "securityContext": {"capabilities": {"add": ["SYS_PTRACE"], "drop": ["NET_RAW"]}}},
        {"name": "min", "command": SLEEP,
         "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}])
    default, _ = caps(cluster, ns, "caps", "c")
    assert default == DEFAULT_CAPS
    added, _ = caps(cluster, ns, "caps", "add")
    assert added == DEFAULT_CAPS - {"NET_RAW"} | {"SYS_PTRACE"}
    _names, mask = caps(cluster, ns, "caps", "min")
    assert mask == 1 << CAP_BITS["NET_BIND_SERVICE"]


def test_security_context_privileged(cluster, ns):
    run(cluster, ns, "priv", [{"name": "c", "command": SLEEP,
                               "securityContext": {"privileged": True}}])
    names, _ = caps(cluster, ns, "priv")
    assert {"SYS_ADMIN", "SYS_PTRACE"} <= names
    # Privileged containers see the host's devices and no masked /proc paths.
    assert exec_in(cluster, ns, "priv", "c", ["test", "-e", "/dev/kmsg"])[0] == 0


def test_security_context_run_as_user_group_and_readonly_rootfs(cluster, ns):
    run(cluster, ns, "user", [{"name": "c", "command": SLEEP,
                               "volumeMounts": [{"name": "tmp", "mountPath": "/scratch"}],
                               "securityContext": {"runAsGroup": 2345,
                                                   "readOnlyRootFilesystem": True}}],
        securityContext={"runAsUser": 1234, "runAsNonRoot": True},
        volumes=[{"name": "tmp", "emptyDir": {}}])
    assert exec_in(cluster, ns, "user", "c", ["id", "-u"])[1].strip() == "1234"
    assert exec_in(cluster, ns, "user", "c", ["id", "-g"])[1].strip() == "2345"
    code, out = exec_in(cluster, ns, "user", "c", ["touch", "/tmp/x"])
    assert code != 0 and "Read-only file system" in out
    assert exec_in(cluster, ns, "user", "c", ["touch", "/scratch/x"])[0] == 0


def test_security_context_run_as_non_root_refuses_root_image(cluster, ns):
    cluster.store.create(pod("nonroot", [{"name": "c", "command": SLEEP,
                                          "securityContext": {"runAsNonRoot": True}}]),
                         namespace=ns)
    state = wait_for(lambda: container_state(cluster, ns, "nonroot", "c").get("state", {})
                     .get("waiting", {}).get("reason") == "CreateContainerConfigError"
                     and container_state(cluster, ns, "nonroot", "c")["state"]["waiting"],
                     what="CreateContainerConfigError")
    assert "container has runAsNonRoot and image will run as root" in state["message"]
    assert pod_status(cluster, ns, "nonroot")["phase"] == "Pending"


def test_security_context_allow_privilege_escalation_and_seccomp(cluster, ns):
    run(cluster, ns, "sec", [
        {"name": "c", "command": SLEEP},
        {"name": "locked", "command": SLEEP,
         "securityContext": {"allowPrivilegeEscalation": False,
                             "seccompProfile": {"type": "RuntimeDefault"}}}])
    assert status_field(cluster, ns, "sec", "c", "NoNewPrivs") == "0"
    assert status_field(cluster, ns, "sec", "c", "Seccomp") == "0"
    assert status_field(cluster, ns, "sec", "locked", "NoNewPrivs") == "1"
    assert status_field(cluster, ns, "sec", "locked", "Seccomp") == "2"  # filter mode


# ---- env ----------------------------------------------------------------------------------

def test_env_field_ref_secret_key_ref_config_map_key_ref(cluster, ns):
    cluster.store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                          "data": {"pw": base64.b64encode(b"hunter2").decode()}}, namespace=ns)
    cluster.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                          "data": {"mode": "fast"}}, namespace=ns)
    env = [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
           {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
           {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
           {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "mode"}}},
           {"name": "GREETING", "value": "$(POD) on $(NODE)"}]
    body = pod("envy", [{"name": "c", "command": SLEEP, "env": env}])
    body["metadata"]["labels"] = {"app": "shop"}
    cluster.store.create(body, namespace=ns)
    wait_for(lambda: is_ready(cluster, ns, "envy"), what="ready")
    _c, out = exec_in(cluster, ns, "envy", "c", ["env"])
    got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert {k: got[k] for k in ("POD", "NS", "NODE", "APP", "PW", "MODE", "GREETING")} == {
        "POD": "envy", "NS": ns, "NODE": "node-a", "APP": "shop", "PW": "hunter2",
        "MODE": "fast", "GREETING": "envy on node-a"}
    assert got["IP"] == pod_status(cluster, ns, "envy")["podIP"]
    # kubelet's service variables and the ServiceAccount admission's API credentials.
    assert got["KUBERNETES_SERVICE_PORT"] == str(cluster.port)
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    _c, ca = exec_in(cluster, ns, "envy", "c", ["cat", f"{sa_dir}/ca.crt"])
    assert ca == cluster.ca_pem.decode()
    _c, token = exec_in(cluster, ns, "envy", "c", ["cat", f"{sa_dir}/token"])
    assert cluster.tokens.review({"spec": {"token": token}})["status"]["user"][
        "username"] == f"system:serviceaccount:{ns}:default"


def test_env_missing_secret_is_create_container_config_error(cluster, ns):
    env = [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "pw"}}}]
    cluster.store.create(pod("nosecret", [{"name": "c", "command": SLEEP, "env": env}]),
                         namespace=ns)
    waiting = wait_for(lambda: container_state(cluster, ns, "nosecret", "c").get("state", {})
                       .get("waiting", {}).get("reason") == "CreateContainerConfigError"
                       and container_state(cluster, ns, "nosecret", "c")["state"]["waiting"],
                       what="config error")
    assert waiting["message"] == 'secret "absent" not found'


# ---- volumes ------------------------------------------------------------------------------

def test_volumes_host_path_secret_config_map_empty_dir_downward_api(cluster, ns, tmp_path):
    (tmp_path / "host.txt").write_text("from the node\n")
    cluster.store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                          "data": {"key": base64.b64encode(b"secret!").decode()}}, namespace=ns)
    cluster.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                          "data": {"app.conf": "x=1\n"}}, namespace=ns)
    volumes = [{"name": "h", "hostPath": {"path": str(tmp_path)}},
               {"name": "s", "secret": {"secretName": "s"}},
               {"name": "cm", "configMap": {"name": "cm"}},
               {"name": "e", "emptyDir": {}},
               {"name": "d", "downwardAPI": {"items": [
                   {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]
    mounts = [{"name": n, "mountPath": f"/v/{n}"} for n in ("h", "s", "cm", "e", "d")]
    body = pod("vols", [{"name": "c", "command": SLEEP, "volumeMounts": mounts},
                        {"name": "d", "command": SLEEP,
                         "volumeMounts": [{"name": "e", "mountPath": "/shared"}]}],
               volumes=volumes)
    body["metadata"]["labels"] = {"tier": "web"}
    cluster.store.create(body, namespace=ns)
    wait_for(lambda: is_ready(cluster, ns, "vols"), what="ready")

    def cat(path, container="c"):
        return exec_in(cluster, ns, "vols", container, ["cat", path])[1]
    assert cat("/v/h/host.txt") == "from the node\n"
    assert cat("/v/s/key") == "secret!"
    assert cat("/v/cm/app.conf") == "x=1\n"
    assert cat("/v/d/labels") == 'tier="web"'
    code, out = exec_in(cluster, ns, "vols", "c", ["touch", "/v/s/new"])
    assert code != 0 and "Read-only" in out  # secret volumes are mounted read-only
    exec_in(cluster, ns, "vols", "c", ["sh", "-c", "echo hi > /v/e/note"])
    assert cat("/shared/note", "d") == "hi\n"  # one emptyDir, two containers
    exec_in(cluster, ns, "vols", "c", ["sh", "-c", "echo back > /v/h/from-pod"])
    assert (tmp_path / "from-pod").read_text() == "back\n"


def test_volumes_projected_service_account_token_bound_and_refreshed(cluster, ns):
    cluster.store.create({"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": "agent"}}, namespace=ns)
    volume = {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {
        "path": "token", "audience": "coral", "expirationSeconds": 600}}]}}
    run(cluster, ns, "tok", [{"name": "c", "command": SLEEP,
                              "securityContext": {"runAsUser": 1000},
                              "volumeMounts": [{"name": "tok", "mountPath": "/var/run/tok"}]}],
        serviceAccountName="agent", volumes=[volume])
    # Readable by the pod's (non-root) user, as kubelet arranges.
    code, token = exec_in(cluster, ns, "tok", "c", ["cat", "/var/run/tok/token"])
    assert code == 0, token
    review = cluster.tokens.review({"spec": {"token": token, "audiences": ["coral"]}})
    assert review["status"]["authenticated"], review
    assert review["status"]["user"]["username"] == f"system:serviceaccount:{ns}:agent"
    extra = review["status"]["user"]["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["tok"]
    # kubelet rewrites the token after 80% of its life: the pod reads a new, valid one.
    cluster.tokens.advance(500)
    fresh = wait_for(lambda: (t := exec_in(cluster, ns, "tok", "c",
                                           ["cat", "/var/run/tok/token"])[1]) != token and t,
                     what="refreshed token")
    assert cluster.tokens.review({"spec": {"token": fresh, "audiences": ["coral"]}})[
        "status"]["authenticated"]
    # Bound: once the pod is deleted its token no longer authenticates.
    cluster.store.delete("pods", "tok", namespace=ns)
    assert not cluster.tokens.review({"spec": {"token": fresh, "audiences": ["coral"]}})[
        "status"].get("authenticated")


# ---- probes -------------------------------------------------------------------------------

def test_probes_exec_readiness_written_to_pod_status(cluster, ns):
    probe = {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1,
             "failureThreshold": 1}
    cluster.store.create(pod("rd", [{"name": "c", "command": SLEEP, "readinessProbe": probe}]),
                         namespace=ns)
    wait_for(lambda: pod_status(cluster, ns, "rd").get("phase") == "Running", what="running")
    assert not is_ready(cluster, ns, "rd")
    exec_in(cluster, ns, "rd", "c", ["touch", "/tmp/ready"])
    wait_for(lambda: is_ready(cluster, ns, "rd"), what="ready after the file appears")
    exec_in(cluster, ns, "rd", "c", ["rm", "/tmp/ready"])
    wait_for(lambda: not is_ready(cluster, ns, "rd"), what="unready again")
    assert container_state(cluster, ns, "rd", "c")["ready"] is False


def test_probes_http_get_and_tcp_socket_readiness(cluster, ns):
    script = "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"
    run(cluster, ns, "web", [{
        "name": "c", "command": ["sh", "-c", script],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}])
    # The probe reached the pod's own address over the pod network.
    assert pod_status(cluster, ns, "web")["podIP"] != "127.0.0.1"
    bad = {"name": "c", "command": ["sh", "-c", script],
           "readinessProbe": {"httpGet": {"path": "/missing", "port": 8080},
                              "periodSeconds": 1}}
    cluster.store.create(pod("web404", [bad]), namespace=ns)
    wait_for(lambda: "running" in container_state(cluster, ns, "web404", "c").get("state", {}),
             what="running")
    wait_for(lambda: container_state(cluster, ns, "web404", "c").get("started"), what="started")
    time.sleep(2.5)  # two failed probes at periodSeconds=1
    assert not is_ready(cluster, ns, "web404")  # 404 is a failure


def test_probes_liveness_failure_restarts_container(cluster, ns):
    probe = {"exec": {"command": ["test", "-f", "/tmp/alive"]}, "periodSeconds": 1,
             "failureThreshold": 2}
    script = "touch /tmp/alive; exec sleep 100000"
    cluster.store.create(pod("live", [{"name": "c", "livenessProbe": probe,
                                       "command": ["sh", "-c", script]}]), namespace=ns)
    wait_for(lambda: is_ready(cluster, ns, "live"), what="ready")
    exec_in(cluster, ns, "live", "c", ["rm", "/tmp/alive"])
    state = wait_for(lambda: (s := container_state(cluster, ns, "live", "c"))["restartCount"] >= 1
                     and "running" in s["state"] and s, what="restart after liveness failure")
    assert "terminated" in state["lastState"]
    # The new container is a fresh one: the file is back, so it stays up.
    assert exec_in(cluster, ns, "live", "c", ["test", "-f", "/tmp/alive"])[0] == 0


# ---- restarts per restartPolicy ------------------------------------------------------------

def test_restarts_per_restart_policy(cluster, ns):
    fail = [{"name": "c", "command": ["sh", "-c", "exit 3"]}]
    ok = [{"name": "c", "command": ["true"]}]
    cluster.store.create(pod("never", fail, restartPolicy="Never"), namespace=ns)
    cluster.store.create(pod("onfail", ok, restartPolicy="OnFailure"), namespace=ns)
    cluster.store.create(pod("always", fail), namespace=ns)
    wait_for(lambda: pod_status(cluster, ns, "never").get("phase") == "Failed", what="Failed")
    never = container_state(cluster, ns, "never", "c")
    assert never["restartCount"] == 0 and never["state"]["terminated"]["exitCode"] == 3
    wait_for(lambda: pod_status(cluster, ns, "onfail").get("phase") == "Succeeded",
             what="Succeeded")
    wait_for(lambda: container_state(cluster, ns, "always", "c").get("restartCount", 0) >= 2,
             what="restarts under Always")
    last = container_state(cluster, ns, "always", "c")["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    assert pod_status(cluster, ns, "always")["phase"] == "Running"


def test_missing_image_is_image_pull_back_off(cluster, ns):
    cluster.store.create(pod("noimg", [{"name": "c", "image": "docker.io/local/absent:1"}]),
                         namespace=ns)
    waiting = wait_for(lambda: container_state(cluster, ns, "noimg", "c").get("state", {})
                       .get("waiting", {}).get("reason") == "ImagePullBackOff"
                       and container_state(cluster, ns, "noimg", "c")["state"]["waiting"],
                       what="ImagePullBackOff")
    assert waiting["message"] == 'Back-off pulling image "docker.io/local/absent:1"'
    assert not is_ready(cluster, ns, "noimg")


# ---- deletion -------------------------------------------------------------------------------

def test_deletion_stops_the_sandbox(cluster, ns):
    run(cluster, ns, "gone", [{"name": "c", "command": SLEEP}])
    uid = cluster.store.get("pods", "gone", namespace=ns)["metadata"]["uid"]
    runtime = cluster.runners["node-a"].containerd.runtime
    sandboxes = runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    mine = [s for s in sandboxes if s.metadata.uid == uid]
    assert len(mine) == 1 and mine[0].state == api_pb2.SANDBOX_READY
    cluster.store.delete("pods", "gone", namespace=ns)

    def removed():
        items = runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        return not any(s.metadata.uid == uid for s in items)
    wait_for(removed, what="sandbox removed")
    # The runner removes the pod's cgroup after RemovePodSandbox returns, and containerd
    # drops the sandbox from its list before that reply arrives: wait, do not race it.
    cgroup = f"kubepods/besteffort/pod{uid}"
    wait_for(lambda: not any(pathlib.Path(m, cgroup).exists()
                             for m in containerd_.cgroup_mounts()),
             what="pod cgroup removed")
