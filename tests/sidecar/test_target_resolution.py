"""Issue 10 item 2 in a sidecar: the agent enters only its own pod's containers, by exact
name (never an id or id prefix), refuses a raw container id, and reports what it entered.
A real pod from the pod harness."""

from __future__ import annotations

import pytest

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib.agent import handlers, sidecar
from coral_lib.ops import base


def _scope(shop_pod) -> sidecar.SidecarScope:
    return sidecar.SidecarScope(sidecar.PodIdentity(name="shop-7d9f", namespace="shop",
                                                    node="node-a"),
                                proc_root=shop_pod.proc_root)


def test_sidecar_resolves_by_exact_name_and_fills_what_it_entered(shop_pod):
    cache = shop_pod.containers["cache"]
    _, request = _scope(shop_pod).resolve(base.ExecRequest(
        argv=["true"], target=base.ExecTarget(container_name="cache")))
    got = request.target
    assert (got.namespace, got.pod_name, got.container_name, got.container_id,
            got.resolved_by) == ("shop", "shop-7d9f", "cache", cache.container_id, "sidecar")
    assert got.pid > 0  # in the pod's PID namespace, as the sidecar sees it


@pytest.mark.parametrize("length", [64, 12, 6, 1])
def test_sidecar_never_selects_a_container_by_id_or_prefix(shop_pod, length):
    wanted = shop_pod.containers["cache"].container_id[:length]
    with pytest.raises(base.OperationError, match="no container .* in this pod; containers"):
        _scope(shop_pod).resolve(base.ExecRequest(
            argv=["true"], target=base.ExecTarget(container_name=wanted)))


def test_sidecar_handlers_refuse_a_raw_container_id(shop_pod):
    ok = agent_pb2.Capability(available=True)
    h = handlers.Handlers(runtime=agent_pb2.RuntimeContext(can_exec=ok, can_shell=ok),
                          resolve=_scope(shop_pod).resolve)
    target = agent_pb2.ExecTarget(container_id=shop_pod.containers["cache"].container_id)
    result = h.exec(agent_pb2.ExecRequest(argv=["true"], target=target))
    assert result.error == handlers.RAW_CONTAINER_ID and not result.HasField("entered")
