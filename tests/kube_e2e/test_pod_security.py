"""Issue 14 §4.2 "The README's Pod Security table is made true by tests that run each mode in
a namespace enforcing the level it claims": one test per row of the README's "Pod Security
Standards" table. Each creates the pod exactly as its mode makes it (the rendered DaemonSet
and webhook Deployment pod templates; an app pod with the sidecar injected by the same
`inject` function the webhook serves) in a namespace whose `pod-security.kubernetes.io/enforce`
label is the level the row claims; the fixture's Pod Security admission admits it and the
pod runner starts every container from the project's image. Where a stricter level
exists, the same pod is refused there, so the claim is the tightest level that holds.

The host mode has no row: it runs no pod.

FIXTURE NOTE: only the DaemonSet row adds hostNetwork (its agent reaches the loopback
colony and API, see tests/support/kubecluster.py); `privileged` allows it and the stricter
level refuses the rendered pod for its own reasons (asserted). The other rows' pods run on
the pod network as rendered; their agents need not reach the colony for this check."""

from __future__ import annotations

import pytest

from coral_lib import manifests
from coral_lib.commands.manifests import load_or_generate_tls
from coral_lib.manifests import settings as settings_mod
from coral_lib.webhook import inject
from coral_lib.webhook import settings as inject_settings
from tests.support.coral_procs import wait_for
from tests.support.kubeapi import errors, podsecurity, workloads

APP = {"name": "app", "image": "docker.io/local/busybox:latest",
       "command": ["sh", "-c", "exec sleep 100000"]}


def _namespace(kube, name: str, level: str) -> None:
    kube.server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {podsecurity.LABEL: level,
                                 "kubernetes.io/metadata.name": name}}})


def _refused(kube, pod: dict, namespace: str) -> str:
    """The 403 Pod Security answers for `pod` in `namespace`."""
    with pytest.raises(errors.ApiError) as refused:
        kube.server.store.create({**pod, "metadata": {**pod["metadata"],
                                                      "namespace": namespace}})
    assert refused.value.code == 403, refused.value.message
    return refused.value.message


def _admitted_and_started(kube, pod: dict, namespace: str, *, ready: bool = False) -> dict:
    """Create `pod` in `namespace`; wait until the runner started every container (an init
    sidecar too); with ready, until the pod is Ready. The pod is deleted afterwards."""
    name = pod["metadata"]["name"]
    kube.server.store.create({**pod, "metadata": {**pod["metadata"], "namespace": namespace}})

    def started() -> bool:
        body = kube.server.store.get("pods", name, namespace=namespace)
        status = body.get("status") or {}
        wanted = [c["name"] for c in body["spec"].get("initContainers") or []] + \
            [c["name"] for c in body["spec"]["containers"]]
        seen = {s["name"] for key in ("initContainerStatuses", "containerStatuses")
                for s in status.get(key) or [] if s.get("containerID")}
        return set(wanted) <= seen and (not ready or workloads.is_ready(body))

    try:
        try:
            wait_for(started, timeout=90, what=f"{namespace}/{name} started from the image")
        except TimeoutError as exc:
            body = kube.server.store.get("pods", name, namespace=namespace)
            logs = {c["name"]: kube.container_log(namespace, name, c["name"])[-1500:]
                    for c in body["spec"]["containers"]}
            raise AssertionError(f"{exc}: {body.get('status')}\n{logs}") from None
        return kube.server.store.get("pods", name, namespace=namespace)
    finally:
        kube.server.store.delete("pods", name, namespace=namespace)


def _prepare(kube, colony, namespace: str, objs: list[dict] = ()) -> None:
    """What the pod references in its namespace: the colony ConfigMap, and the service
    accounts, Secrets and ConfigMaps of the rendered objects."""
    kube.colony_config_map(colony, namespace)
    for obj in objs:
        if obj["kind"] in ("ServiceAccount", "Secret", "ConfigMap"):
            kube.server.store.create({**obj, "metadata": {**obj["metadata"],
                                                          "namespace": namespace}})


def _template_pod(objs: list[dict], kind: str, name: str) -> dict:
    (workload,) = [o for o in objs if o["kind"] == kind]
    template = workload["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "labels": template["metadata"]["labels"]},
        "spec": {**template["spec"], "nodeName": "node-b"}}


def _injected(*, annotations: dict, settings: inject_settings.InjectSettings,
              name: str) -> dict:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "x", "annotations": annotations},
           "spec": {"nodeName": "node-b", "containers": [dict(APP)]}}
    patch = inject.inject(pod, {"coral.io/inject": "true"}, settings)
    assert patch, "the policy injects this pod"
    out = inject.apply_patch(pod, patch)
    out["metadata"].pop("namespace")
    return out


@pytest.mark.parametrize("observe_only", [False, True], ids=["full", "observe-only"])
def test_pod_security_row_daemonset_agent_needs_privileged(kube, cluster_colony, tmp_path,
                                                           observe_only):
    """Row "DaemonSet agent (both variants) | privileged"."""
    objs = manifests.render("daemonset", manifests.ManifestSettings(
        cri_socket=kube.runtime.socket, state_host_path=str(tmp_path / "state"),
        observe_only=observe_only))
    pod = _template_pod(objs, "DaemonSet", "agent")
    pod["spec"]["hostNetwork"] = True  # see the module's FIXTURE NOTE
    ns = f"pss-ds-{'observe' if observe_only else 'full'}"
    _namespace(kube, f"{ns}-baseline", "baseline")
    message = _refused(kube, pod, f"{ns}-baseline")
    assert "host namespaces (hostNetwork=true, hostPID=true)" in message, message
    assert ("privileged" in message) != observe_only, message
    _namespace(kube, ns, "privileged")
    _prepare(kube, cluster_colony, ns, objs)
    _admitted_and_started(kube, pod, ns)


def test_pod_security_row_webhook_deployment_meets_restricted(kube, cluster_colony):
    """Row "webhook Deployment | restricted": admitted under restricted as rendered (on the
    pod network) and Ready through its real /healthz probe."""
    values = settings_mod.parse_sets(["webhook_replicas=1"])
    objs = manifests.render("webhook", settings_mod.build(
        values, tls=load_or_generate_tls(None, values)))
    pod = _template_pod(objs, "Deployment", "webhook")
    _namespace(kube, "pss-webhook", "restricted")
    _prepare(kube, cluster_colony, "pss-webhook", objs)
    _admitted_and_started(kube, pod, "pss-webhook", ready=True)


@pytest.mark.parametrize("observe_only", [False, True], ids=["full", "observe-only"])
def test_pod_security_row_injected_sidecar_meets_baseline(kube, cluster_colony, observe_only):
    """Row "pods with the injected sidecar (also observe-only) | baseline"; restricted
    refuses them (the agent runs as root to switch to each app's uid)."""
    annotations = {"coral.io/observe-only": "true"} if observe_only else {}
    pod = _injected(annotations=annotations, settings=inject_settings.InjectSettings(),
                    name="app")
    ns = f"pss-sidecar-{'observe' if observe_only else 'full'}"
    _namespace(kube, f"{ns}-restricted", "restricted")
    message = _refused(kube, pod, f"{ns}-restricted")
    assert 'violates PodSecurity "restricted:latest"' in message, message
    _namespace(kube, ns, "baseline")
    _prepare(kube, cluster_colony, ns)
    _admitted_and_started(kube, pod, ns)


@pytest.mark.parametrize("how", ["sidecar-ptrace", "enable_bpf"])
def test_pod_security_row_sidecar_ptrace_or_bpf_needs_privileged(kube, cluster_colony, how):
    """Row "pods annotated coral.io/sidecar-ptrace: "true", or with BPF enabled in the
    webhook settings | privileged": baseline refuses the added capability by name."""
    annotations = {"coral.io/sidecar-ptrace": "true"} if how == "sidecar-ptrace" else {}
    settings = inject_settings.InjectSettings(enable_bpf=how == "enable_bpf")
    pod = _injected(annotations=annotations, settings=settings, name="app")
    ns = f"pss-{how.replace('_', '-')}"
    _namespace(kube, f"{ns}-baseline", "baseline")
    message = _refused(kube, pod, f"{ns}-baseline")
    added = "SYS_PTRACE" if how == "sidecar-ptrace" else "BPF"
    assert f'non-default capabilities (container "coral-agent" must not include "{added}"' \
        in message, message
    _namespace(kube, ns, "privileged")
    _prepare(kube, cluster_colony, ns)
    _admitted_and_started(kube, pod, ns)
