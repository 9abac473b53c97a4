"""Fuzz the pure core (hypothesis): inject() never fails except with InvalidPod, every
patch applies with the real jsonpatch library, and injecting the result is a no-op.

CORAL_FUZZ_EXAMPLES scales the number of examples (the resilience suite raises it).
"""

from __future__ import annotations

import os

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coral_lib.webhook import inject
from coral_lib.webhook import settings as settings_mod

EXAMPLES = int(os.environ.get("CORAL_FUZZ_EXAMPLES", "500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

text = st.text(max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
words = st.sampled_from(["true", "false", "TRUE", "", "yes"]) | text
keys = st.sampled_from(
    ["coral.io/inject", "coral.io/injected", "coral.io/observe-only", "coral.io/agent-image",
     "kubectl.kubernetes.io/default-container", "a~b/c"]
) | text
string_maps = st.dictionaries(keys, words, max_size=4) | st.none() | json_values
container = st.fixed_dictionaries(
    {"name": st.sampled_from(["app", "coral-agent", "web", "", "x/y~z"]) | json_values},
    optional={"image": text, "restartPolicy": st.just("Always")},
)
pods = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries(
            {}, optional={"labels": string_maps, "annotations": string_maps,
                          "namespace": text | json_values, "name": text}
        ) | json_values,
        "spec": st.fixed_dictionaries(
            {}, optional={"containers": st.lists(container, max_size=3) | json_values,
                          "initContainers": st.lists(container, max_size=2) | json_values,
                          "shareProcessNamespace": st.booleans() | json_values,
                          "hostNetwork": st.booleans() | json_values}
        ) | json_values,
    },
)
all_settings = st.builds(
    settings_mod.InjectSettings,
    allow_host_network=st.booleans(),
    enable_bpf=st.booleans(),
    kubernetes_version=st.sampled_from(["1.27", "1.28", "1.29", "1.30", "v1.33.1"]),
)


@FUZZ
@given(pod=pods | json_values, labels=string_maps, cfg=all_settings,
       namespace=st.sampled_from(["shop", "kube-system", "coral-system"]) | st.none())
def test_fuzz_pure_inject(pod, labels, cfg, namespace) -> None:
    """Issue 5 acceptance (fuzz): random pods never crash inject(); patches apply and are
    idempotent."""
    try:
        patch = inject.inject(pod, labels, cfg, namespace=namespace)
    except inject.InvalidPod as exc:
        assert str(exc)
        return
    if not patch:
        return
    result = jsonpatch.apply_patch(pod, patch)
    assert inject.apply_patch(pod, patch) == result
    assert inject.inject(result, labels, cfg, namespace=namespace) == []
