"""Issue 14 §3 "Pod Security admission for the pod-security.kubernetes.io/enforce levels,
checked against the Pod Security Standards table": table tests of the pure check, and the
refusal kubectl prints when the fixture enforces a level."""

from __future__ import annotations

import json

import pytest

from tests.support.kubeapi import podsecurity

RESTRICTED_OK = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "app", "image": "x", "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
}


def spec(**fields) -> dict:
    out = json.loads(json.dumps(RESTRICTED_OK))
    for key, value in fields.items():
        if key == "container":
            out["containers"][0]["securityContext"].update(value)
        else:
            out[key] = value
    return out


# (case, spec, {level: expected violations}); "restricted" includes everything baseline finds.
TABLE = [
    ("restricted pod", spec(), {"baseline": [], "restricted": []}),
    ("hostNetwork", spec(hostNetwork=True),
     {"baseline": ["host namespaces (hostNetwork=true)"]}),
    ("hostPID and hostIPC", spec(hostPID=True, hostIPC=True),
     {"baseline": ["host namespaces (hostPID=true, hostIPC=true)"]}),
    ("hostPath", spec(volumes=[{"name": "cri", "hostPath": {"path": "/run"}}]),
     {"baseline": ['hostPath volumes (volume "cri")'],
      "restricted": ['restricted volume types (volume "cri" uses restricted volume type '
                     '"hostPath")']}),
    ("privileged", spec(container={"privileged": True}),
     {"baseline": ['privileged (container "app" must not set securityContext.privileged=true)']}),
    ("baseline capability list", spec(container={"capabilities": {
        "drop": ["ALL"], "add": ["SYS_CHROOT", "KILL"]}}),
     {"baseline": [], "restricted": ['unrestricted capabilities (container "app" must not '
                                     'include "KILL", "SYS_CHROOT" in '
                                     'securityContext.capabilities.add)']}),
    ("SYS_PTRACE beyond baseline", spec(container={"capabilities": {
        "drop": ["ALL"], "add": ["SYS_PTRACE"]}}),
     {"baseline": ['non-default capabilities (container "app" must not include "SYS_PTRACE" '
                   'in securityContext.capabilities.add)'],
      "restricted": ['unrestricted capabilities (container "app" must not include '
                     '"SYS_PTRACE" in securityContext.capabilities.add)']}),
    ("NET_BIND_SERVICE is restricted-safe", spec(container={"capabilities": {
        "drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}), {"baseline": [], "restricted": []}),
    ("hostPort", spec(containers=[{"name": "app", "ports": [{"hostPort": 8080}],
                                   "securityContext": RESTRICTED_OK["containers"][0][
                                       "securityContext"]}]),
     {"baseline": ['hostPort (container "app" uses hostPort 8080)']}),
    ("seccomp Unconfined", spec(container={"seccompProfile": {"type": "Unconfined"}}),
     {"baseline": ['seccompProfile (container "app" must not set '
                   'securityContext.seccompProfile.type to "Unconfined")']}),
    ("unsafe sysctl", spec(securityContext={**RESTRICTED_OK["securityContext"],
                                            "sysctls": [{"name": "kernel.msgmax"}]}),
     {"baseline": ["forbidden sysctls (kernel.msgmax)"]}),
    ("procMount Unmasked", spec(container={"procMount": "Unmasked"}),
     {"baseline": ['procMount (container "app" must not set securityContext.procMount to '
                   '"Unmasked")']}),
    ("runAsUser 0", spec(container={"runAsUser": 0}),
     {"baseline": [], "restricted": ['runAsUser=0 (container "app" must not set runAsUser=0)']}),
]


@pytest.mark.parametrize("case, pod_spec, expected", TABLE, ids=[t[0] for t in TABLE])
def test_pod_security_standards_table(case, pod_spec, expected):
    baseline = expected["baseline"]
    assert podsecurity.violations(pod_spec, "baseline") == baseline
    assert podsecurity.violations(pod_spec, "restricted") == expected.get("restricted",
                                                                          baseline)
    assert podsecurity.violations(pod_spec, "privileged") == []


def test_pod_security_restricted_unset_fields_named_in_upstream_order():
    bare = {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]}
    assert podsecurity.violations(bare, "restricted") == [
        'allowPrivilegeEscalation != false (containers "i", "a" must set '
        'securityContext.allowPrivilegeEscalation=false)',
        'unrestricted capabilities (containers "i", "a" must set '
        'securityContext.capabilities.drop=["ALL"])',
        'runAsNonRoot != true (pod or containers "i", "a" must set '
        'securityContext.runAsNonRoot=true)',
        'seccompProfile (pod or containers "i", "a" must set '
        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")']
    assert podsecurity.violations(bare, "baseline") == []


def test_pod_security_namespace_levels():
    assert podsecurity.namespace_level(None) == ("privileged", "latest")
    assert podsecurity.namespace_level({podsecurity.LABEL: "baseline"}) == ("baseline", "latest")
    assert podsecurity.namespace_level({podsecurity.LABEL: "bogus"})[0] == "restricted"


DAEMONSET_AGENT_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: agent}
spec:
  hostPID: true
  volumes: [{name: cri, hostPath: {path: /run/containerd}}]
  containers:
  - name: agent
    image: busybox
    securityContext: {privileged: true}
"""


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_pod_security_kubectl_refusal_like_the_real_one(server, kubectl, tmp_path, level):
    ns = f"psa-{level}"
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": ns, "labels": {podsecurity.LABEL: level}}})
    path = tmp_path / "pod.yaml"
    path.write_text(DAEMONSET_AGENT_POD)
    out = kubectl("apply", "-n", ns, "-f", str(path))
    assert out.returncode != 0
    want = {
        "baseline": 'host namespaces (hostPID=true), hostPath volumes (volume "cri"), '
                    'privileged (container "agent" must not set securityContext.privileged=true)',
        "restricted": 'allowPrivilegeEscalation != false (container "agent" must set '
                      'securityContext.allowPrivilegeEscalation=false), unrestricted '
                      'capabilities (container "agent" must set '
                      'securityContext.capabilities.drop=["ALL"]), host namespaces '
                      '(hostPID=true), privileged (container "agent" must not set '
                      'securityContext.privileged=true), restricted volume types (volume '
                      '"cri" uses restricted volume type "hostPath"), runAsNonRoot != true '
                      '(pod or container "agent" must set securityContext.runAsNonRoot=true), '
                      'seccompProfile (pod or container "agent" must set '
                      'securityContext.seccompProfile.type to "RuntimeDefault" or '
                      '"Localhost")'}[level]
    assert out.stderr.strip() == (
        f'Error from server (Forbidden): error when creating "{path}": pods "agent" is '
        f'forbidden: violates PodSecurity "{level}:latest": {want}')
    # The same pod is admitted where the namespace is privileged (or unlabelled).
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": f"{ns}-priv", "labels": {podsecurity.LABEL: "privileged"}}})
    assert kubectl("apply", "-n", f"{ns}-priv", "-f", str(path)).returncode == 0
