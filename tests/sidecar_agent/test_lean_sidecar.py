"""Issue 15, "A leaner agent": a sidecar agent at steady state has not imported pydantic,
YAML, the config models, the tap and pty backends, or host discovery's psutil.

The sidecar runs in a real pod (this directory's harness: the pod's namespaces and
cgroup, its own projected-style token reviewed by the colony) as `coral agent start`
with PROBE (tests/lean/test_lean_agent_runtime.py) in front of `cli.main`; once the
colony lists it registered, it is asked for its sys.modules.
"""

from __future__ import annotations

import sys

import pytest

from tests.lean import test_lean_agent_runtime as lean
from tests.sidecar.conftest import why_not_runnable
from tests.sidecar_agent.conftest import SidecarAgent
from tests.support import coral_procs, podharness


def test_registered_sidecar_holds_no_pydantic_yaml_tap_or_pty(tmp_path, colony, kubeapi,
                                                               monkeypatch):
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "modules.json"
    monkeypatch.setattr(coral_procs, "CORAL", [sys.executable, "-c", lean.PROBE])
    pod = podharness.Pod("shop-lean", "payments").start()
    agent = None
    try:
        pod.add_container("web", ["sh", "-c", "busybox httpd -f -p 8080 & wait"], port=8080)
        agent = SidecarAgent(pod, colony, tmp_path, kubeapi)
        agent.extra_env = {"CORAL_TEST_MODULES_OUT": str(out)}
        agent.start()
        try:
            coral_procs.wait_registered(colony, [agent.agent_id], timeout=60)
        except TimeoutError:
            raise AssertionError(f"sidecar not registered; its log:\n{agent.log()[-3000:]}") \
                from None
        modules = lean.modules_of(out)
    finally:
        if agent:
            agent.stop()
        pod.stop()
    assert "coral_lib.agent.sidecar" in modules  # the probe read a running sidecar agent
    assert "coral_lib.config.view" in modules
    assert sorted(modules.intersection(lean.NEVER_AT_RUN_TIME)) == []
    assert "psutil" not in modules  # host discovery's: a sidecar reads /proc itself
