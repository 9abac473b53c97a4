"""Policy truth table (issue 5: "documented truth table") and small pure helpers."""

from __future__ import annotations

import jsonpointer
import pytest

from coral_lib.webhook import inject, policy
from coral_lib.webhook import settings as settings_mod

S = settings_mod.InjectSettings()
ON = {"coral.io/inject": "true"}


def _pod(*, labels=None, annotations=None, host_network=None, init=None, containers=None):
    spec = {"containers": containers or [{"name": "app", "image": "x"}]}
    if host_network is not None:
        spec["hostNetwork"] = host_network
    if init is not None:
        spec["initContainers"] = init
    return {"metadata": {"labels": labels or {}, "annotations": annotations or {}}, "spec": spec}


AGENT = [{"name": "coral-agent", "image": "x"}]
# (id, pod, namespace, namespace labels, settings, expected inject)
TABLE = [
    ("ns-true", _pod(), "shop", ON, S, True),
    ("ns-unlabelled", _pod(), "shop", {}, S, False),
    ("ns-false", _pod(), "shop", {"coral.io/inject": "false"}, S, False),
    ("ns-other-value", _pod(), "shop", {"coral.io/inject": "yes"}, S, False),
    ("pod-label-true", _pod(labels=ON), "shop", {}, S, True),
    ("pod-annotation-true", _pod(annotations=ON), "shop", {}, S, True),
    ("pod-false-beats-ns-true (label)", _pod(labels={"coral.io/inject": "false"}), "shop", ON, S,
     False),
    ("pod-false-beats-ns-true (annotation)", _pod(annotations={"coral.io/inject": "false"}),
     "shop", ON, S, False),
    ("label-true-annotation-false", _pod(labels=ON, annotations={"coral.io/inject": "false"}),
     "shop", ON, S, False),
    ("kube-system", _pod(annotations=ON), "kube-system", ON, S, False),
    ("kube-public", _pod(), "kube-public", ON, S, False),
    ("kube-node-lease", _pod(), "kube-node-lease", ON, S, False),
    ("coral-namespace", _pod(), "coral-system", ON, S, False),
    ("custom-coral-namespace", _pod(), "obs", ON, settings_mod.InjectSettings(namespace="obs"),
     False),
    ("host-network", _pod(host_network=True), "shop", ON, S, False),
    ("host-network-opted-in-pod", _pod(host_network=True, labels=ON), "shop", {}, S, False),
    ("host-network-allowed", _pod(host_network=True), "shop", ON,
     settings_mod.InjectSettings(allow_host_network=True), True),
    ("agent-in-containers", _pod(containers=[{"name": "app"}, *AGENT]), "shop", ON, S, False),
    ("agent-in-init", _pod(init=AGENT), "shop", ON, S, False),
    ("already-injected", _pod(annotations={"coral.io/injected": "true"}), "shop", ON, S, False),
    ("injected-false-is-not-injected", _pod(annotations={"coral.io/injected": "false"}),
     "shop", ON, S, True),
]


@pytest.mark.parametrize(
    "pod,namespace,labels,settings,expected", [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
def test_policy_truth_table(pod, namespace, labels, settings, expected) -> None:
    decision = policy.should_inject(pod, namespace, labels, settings)
    assert decision.inject is expected, decision.reason
    assert decision.reason
    # inject() follows the policy exactly: a patch iff the decision says inject.
    assert bool(inject.inject(pod, labels, settings, namespace=namespace)) is expected


@pytest.mark.parametrize("key", ["a/b", "a~b", "~/~1/~0", "plain", "x~1y"])
def test_annotation_keys_escaped_per_rfc6901(key: str) -> None:
    pointer = "/" + inject.escape(key)
    assert jsonpointer.JsonPointer(pointer).parts == [key]


def test_escape_examples() -> None:
    assert inject.escape("coral.io/status") == "coral.io~1status"
    assert inject.escape("a~b/c") == "a~0b~1c"


@pytest.mark.parametrize(
    "bad", [None, [], "pod", {"spec": []}, {"spec": {"containers": []}},
            {"spec": {"containers": [{"image": "x"}]}}, {"metadata": "x", "spec": {}},
            {"metadata": {"annotations": ["x"]}, "spec": {"containers": [{"name": "a"}]}},
            {"spec": {"containers": [{"name": "a"}], "initContainers": "x"}}],
)
def test_malformed_pods_raise_invalid_pod(bad) -> None:
    with pytest.raises(inject.InvalidPod):
        inject.inject(bad, ON, S, namespace="shop")


@pytest.mark.parametrize(
    "mapping,message",
    [({"nope": 1}, "unknown setting"), ({"enable_bpf": "yes"}, "boolean"),
     ({"kubernetes_version": "latest"}, "major.minor"), ({"image": ""}, "non-empty"),
     ({"image_pull_policy": "Sometimes"}, "IfNotPresent")],
)
def test_settings_errors_name_the_input(mapping, message) -> None:
    with pytest.raises(settings_mod.SettingsError, match=message):
        settings_mod.from_mapping(mapping, source="test.yaml")


@pytest.mark.parametrize(
    "version,native", [("1.28", False), ("v1.28.3", False), ("1.29", True), ("1.30+", True),
                       ("2.0", True), ("1.9", False)]
)
def test_native_sidecar_from_version(version: str, native: bool) -> None:
    assert settings_mod.InjectSettings(kubernetes_version=version).native_sidecar is native
