"""Issue 10, review bullets "Authorization bypass" and "Target escape", replayed against real
processes: a colony with a policy, host agents, and a DaemonSet agent on real containerd.

The attacker holds a valid operator token with little power (read only, approve only,
exec behind an approval, exec on an observe-only agent, exec in one namespace) and talks
gRPC to the colony directly, setting the request fields the CLI never sets.

COMPONENT TEST for the agent side (issue 14): the DaemonSet agent is a plain `coral agent
node` process exec-ing through real containerd (named shortcut, tests/daemonset/conftest.py);
the colony's authorization, the part under attack, is the real thing.
"""

from __future__ import annotations

import json
import pathlib

import grpc
import pytest

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2, colony_pb2_grpc
from coral_lib.ops import base, cri
from tests.daemonset.conftest import kubeapi, node_agents, registry  # noqa: F401
from tests.daemonset.test_cri_exec import runtime  # noqa: F401
from tests.daemonset.test_target_resolution import run_pod
from tests.security.conftest import PolicyColony
from tests.support import coral_procs, kube_identity
from tests.support.coral_procs import wait_for

AUTHZ_POLICY = """
approvalTTL: 60s
observeOnlyAgents: [obs-1]
rules:
  - name: admins-all
    groups: [admins]
    verbs: ["*"]
  - name: reader-read
    identities: [reader]
    verbs: [read]
  - name: approver-approve
    identities: [approver]
    verbs: [approve]
  - name: gated-read
    identities: [gated]
    verbs: [read]
  - name: gated-exec
    identities: [gated]
    verbs: [exec]
    requireApproval: true
  - name: watcher-read
    identities: [watcher]
    verbs: [read]
  - name: watcher-exec
    identities: [watcher]
    verbs: [exec]
    scope: {node: ["*"]}
  - name: scoped-exec
    identities: [scoped]
    verbs: [exec]
    scope: {service: [app]}
"""


def _stub(colony: PolicyColony, identity: str):
    """A raw Colony stub and the caller's metadata: the attacker's own client."""
    creds = grpc.ssl_channel_credentials((colony.data_dir / "ca.crt").read_bytes())
    channel = grpc.secure_channel(colony.address, creds)
    token = (colony.tokens[identity] if identity != "admin"
             else (colony.data_dir / "admin.token").read_text().strip())
    return channel, colony_pb2_grpc.ColonyStub(channel), (
        ("authorization", f"Bearer {token}"),)


def _operate(colony: PolicyColony, identity: str, request: colony_pb2.OperateRequest
             ) -> tuple[list[colony_pb2.OperateEvent], grpc.RpcError | None]:
    channel, stub, metadata = _stub(colony, identity)
    events: list[colony_pb2.OperateEvent] = []
    try:
        for event in stub.Operate(request, metadata=metadata, timeout=30):
            events.append(event)
        return events, None
    except grpc.RpcError as exc:
        return events, exc
    finally:
        channel.close()


@pytest.fixture(scope="module")
def authz(tmp_path_factory):
    """A colony with AUTHZ_POLICY and two host agents: app-1 (service app) and obs-1
    (observe-only, service obs)."""
    tmp = tmp_path_factory.mktemp("authz")
    (tmp / "policy.yaml").write_text(AUTHZ_POLICY)
    colony = PolicyColony(tmp / "colony", args=("--policy", str(tmp / "policy.yaml")))
    for identity in ("reader", "approver", "gated", "watcher", "scoped"):
        colony.add_token(identity)
    colony.start()
    agents = [coral_procs.Agent(tmp / "agents", colony, agent_id="app-1",
                                services=[{"name": "app", "port": 18090}]).start(),
              coral_procs.Agent(tmp / "agents", colony, agent_id="obs-1",
                                services=[{"name": "obs", "port": 18091}]).start()]
    coral_procs.wait_registered(colony, ["app-1", "obs-1"])
    colony.work = tmp
    yield colony
    for agent in agents:
        agent.stop()
    colony.stop()


def _touch(colony, name: str, *, service: str = "app", verb: str = "", **extra):
    marker = pathlib.Path(colony.work) / name
    request = colony_pb2.OperateRequest(
        targeting=colony_pb2.Targeting(service=service),
        exec=agent_pb2.ExecRequest(argv=["touch", str(marker)]), verb=verb, **extra)
    return marker, request


def _started(colony, requester: str) -> list[dict]:
    with colony.client() as c:
        return c.audit(kind="started", requester=requester)


@pytest.mark.parametrize("identity", ["reader", "approver"])
@pytest.mark.parametrize("verb", ["read", "approve", ""])
def test_review_read_only_or_approve_only_identity_cannot_exec(authz, identity, verb):
    """Review: `Operate` checked `request.verb or "exec"`, so `verb: read` ran as root."""
    marker, request = _touch(authz, f"{identity}-{verb or 'empty'}", verb=verb)
    events, error = _operate(authz, identity, request)
    assert error is not None, events
    expected = (grpc.StatusCode.PERMISSION_DENIED if not verb
                else grpc.StatusCode.INVALID_ARGUMENT)
    assert error.code() == expected, error.details()
    if verb:
        assert "'verb'" in error.details() and "exec" in error.details()
    else:
        assert f"no rule allows {identity} to exec" in error.details()
    assert not marker.exists()
    assert not _started(authz, identity)


def test_review_request_verb_cannot_skip_the_approval(authz):
    marker, request = _touch(authz, "gated-read", verb="read")
    _, error = _operate(authz, "gated", request)
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not marker.exists()
    marker, request = _touch(authz, "gated-exec", verb="exec", no_wait=True)
    events, error = _operate(authz, "gated", request)
    assert error is None and [e.WhichOneof("event") for e in events] == ["pending"]
    assert not marker.exists() and not _started(authz, "gated")


def test_review_request_verb_cannot_skip_observe_only(authz):
    marker, request = _touch(authz, "watcher-read", service="obs", verb="read")
    _, error = _operate(authz, "watcher", request)
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    marker, request = _touch(authz, "watcher-exec", service="obs")
    _, error = _operate(authz, "watcher", request)
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "observe-only" in error.details()
    assert not marker.exists() and not _started(authz, "watcher")
    with authz.client() as c:
        rules = [r["rule"] for r in c.audit(kind="refused", requester="watcher")]
    assert rules == ["verb-fixed-by-rpc", "observe-only"]


def test_review_approve_verb_comes_from_decide_only(authz):
    """The approver may decide; the reader (no `approve`) may not, whatever it sends."""
    _, request = _touch(authz, "gated-approved", no_wait=True)
    events, _ = _operate(authz, "gated", request)
    approval_id = events[0].pending.approval_id
    for identity, allowed in (("reader", False), ("approver", True)):
        channel, stub, metadata = _stub(authz, identity)
        try:
            record = stub.Decide(colony_pb2.ApprovalDecision(approval_id=approval_id,
                                                             approve=True), metadata=metadata)
            assert allowed and record.state == "approved"
        except grpc.RpcError as exc:
            assert not allowed and exc.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "no rule allows reader to approve" in exc.details()
        finally:
            channel.close()


# -- target escape: a DaemonSet agent on real containerd ------------------------------------

TENANT_POLICY = """
rules:
  - name: admins-all
    groups: [admins]
    verbs: ["*"]
  - name: shop-tenant
    identities: [tenant]
    verbs: [read, exec, shell, tap, trace]
    scope: {namespace: [shop]}
"""


def test_review_failed_lookup_names_no_other_targets_to_a_scoped_identity(authz):
    """A failed target lookup ran before RBAC and listed what exists (an enumeration
    oracle for a tenant scoped to one service or namespace). Only a caller who may list
    the registry anyway is told the close matches."""
    for name in ("ap", "obs-typo"):
        run = coral_procs.coral("exec", "--service", name, "--", "true",
                                env=authz.env_for("scoped"))
        assert run.returncode != 0 and f"unknown service '{name}'" in run.stderr
        assert "app" not in run.stderr.replace(f"'{name}'", "") and "obs" not in \
            run.stderr.replace(f"'{name}'", ""), run.stderr
    admin = coral_procs.coral("exec", "--service", "ap", "--", "true",
                              env=authz.operator_env)
    assert admin.returncode != 0 and "did you mean: app" in admin.stderr


@pytest.fixture
def colony(tmp_path, kubeapi):  # noqa: F811
    """Overrides the DaemonSet fixtures' colony: one with a namespace-scoped tenant, which
    checks the node agents' service account tokens on the API fixture (TokenReview)."""
    (tmp_path / "policy.yaml").write_text(TENANT_POLICY)
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, tmp_path / "colony-kubeconfig")
    colony = PolicyColony(tmp_path / "colony", args=(
        "--policy", str(tmp_path / "policy.yaml"), "--token-review-kubeconfig", kubeconfig))
    colony.add_token("tenant")
    colony.start()
    yield colony
    colony.stop()


@pytest.fixture
def two_tenants(kubeapi, runtime, colony, node_agents):  # noqa: F811
    """shop/web (container app) and kube-system/coredns on node-a, both in containerd
    (kube-system is not discovered: only shop/web registers)."""
    web = run_pod(kubeapi, runtime, "web", "shop", "app")
    dns = run_pod(kubeapi, runtime, "coredns", "kube-system", "coredns")
    node_agents("node-a", flags=["--cri-socket", runtime.socket])
    coral_procs.wait_registered(colony, ["node-node-a"])
    wait_for(lambda: {s["pod_name"] for s in registry(colony)} == {"web"}, timeout=30,
             what="pod web registered")
    yield web, dns
    runtime.remove_pod(web)
    runtime.remove_pod(dns)


def _pwned(runtime, dns) -> bool:  # noqa: F811
    with cri.CRIBackend(runtime.socket) as backend:
        result = backend.run(base.ExecRequest(argv=["cat", "/tmp/pwned"], target=base.ExecTarget(
            namespace="kube-system", pod_name="coredns", container_name="coredns")))
    return result.exit_code == 0


def test_review_forged_container_id_cannot_escape_the_namespace(colony, runtime, two_tenants):  # noqa: F811
    """Review: an identity scoped to `shop` sent exec.target.container_id of a kube-system
    container (1-character prefixes worked) while targeting its own pod; the agent obeyed
    the id, failures told which ids exist, and the audit named shop/web."""
    web, dns = two_tenants
    real = dns.containers["coredns"]
    details = set()
    for forged in (real, real[:1], "f" * 64, "z"):
        request = colony_pb2.OperateRequest(
            targeting=colony_pb2.Targeting(pod="web", namespace="shop"),
            exec=agent_pb2.ExecRequest(argv=["sh", "-c", "echo owned > /tmp/pwned"],
                                       target=agent_pb2.ExecTarget(container_id=forged)))
        events, error = _operate(colony, "tenant", request)
        assert error is not None, events
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "exec.target.container_id" in error.details()
        details.add(error.details())
    assert len(details) == 1, "the error must not tell existing ids from missing ones"
    assert not _pwned(runtime, dns)
    with colony.client() as c:
        assert not c.audit(kind="started", requester="tenant")
        refused = c.audit(kind="refused", requester="tenant")
    assert [r["rule"] for r in refused] == ["raw-target"] * 4


def test_review_audit_names_the_container_actually_entered(colony, runtime, two_tenants):  # noqa: F811
    web, _ = two_tenants
    run = coral_procs.coral("exec", "--pod", "web", "-n", "shop", "-o", "json", "--",
                            "hostname", env=colony.env_for("tenant"))
    (result,) = json.loads(run.stdout)["results"]
    assert result["rc"] == 0, result
    with colony.client() as c:
        (started,) = c.audit(kind="started", requester="tenant")
        (entered,) = c.audit(kind="entered", op_id=started["op_id"])
    assert (started["namespace"], started["pod"], started["provenance"]) == (
        "shop", "web", "discovered")
    assert {k: entered[k] for k in ("node", "namespace", "pod", "container", "container_id",
                                    "resolved_by")} == {
        "node": "node-a", "namespace": "shop", "pod": "web", "container": "app",
        "container_id": web.containers["app"], "resolved_by": "cri"}


def test_review_tenant_cannot_name_a_pod_of_another_namespace(colony, runtime, two_tenants):  # noqa: F811
    _, dns = two_tenants
    run = coral_procs.coral("exec", "--agent", "node-node-a", "--pod", "coredns", "-n",
                            "kube-system", "--", "sh", "-c", "echo owned > /tmp/pwned",
                            env=colony.env_for("tenant"))
    assert run.returncode != 0 and "no rule allows tenant to exec" in run.stderr
    named = coral_procs.coral("exec", "--agent", "node-node-a", "--pod", "coredns", "-n", "shop",
                              "--", "sh", "-c", "echo owned > /tmp/pwned",
                              env=colony.env_for("tenant"))
    assert named.returncode != 0 and "pod shop/coredns is not on node node-a" in (
        named.stdout + named.stderr)
    assert not _pwned(runtime, dns)


@pytest.mark.parametrize("rpc", ["Shell", "Tap", "Trace"])
def test_review_shell_tap_trace_refuse_a_forged_container_id(authz, rpc):
    """The same field flowed into shell, tap and trace; the colony refuses it before any
    agent is asked (the agent refuses it too: tests/daemonset/test_target_resolution.py)."""
    target = agent_pb2.ExecTarget(container_id="a")
    targeting = colony_pb2.Targeting(service="app")
    channel, stub, metadata = _stub(authz, "admin")
    try:
        if rpc == "Shell":
            frames = iter([colony_pb2.ShellFrame(targeting=targeting, input=agent_pb2.ShellInput(
                start=agent_pb2.ShellStart(argv=["true"], target=target)))])
            call, field = stub.Shell(frames, metadata=metadata, timeout=30), "input.start.target"
        elif rpc == "Tap":
            call, field = stub.Tap(colony_pb2.TapOperateRequest(
                targeting=targeting, tap=agent_pb2.TapRequest(target=target, duration_seconds=1)),
                metadata=metadata, timeout=30), "tap.target"
        else:
            call, field = stub.Trace(colony_pb2.TraceOperateRequest(
                targeting=targeting, trace=agent_pb2.TraceRequest(
                    target=target, kind="exec", duration_seconds=1)),
                metadata=metadata, timeout=30), "trace.target"
        with pytest.raises(grpc.RpcError) as info:
            list(call)
    finally:
        channel.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field}.container_id is not accepted" in info.value.details()


def test_review_shell_and_tap_audit_names_the_container_entered(colony, runtime, two_tenants):  # noqa: F811
    """Shell and tap carry the agent's `entered` report to the audit, not to the operator."""
    from coral_lib import client

    web, _ = two_tenants
    with colony.client_for("tenant") as tenant:
        shell = list(tenant.shell(client.Targeting(pod="web", namespace="shop"), inputs=iter(
            [agent_pb2.ShellInput(stdin=b"exit 0\n")])))
        # the raw stream (Client.tap() yields typed events and would hide a leaked one)
        tap = list(tenant._stub.Tap(colony_pb2.TapOperateRequest(
            targeting=client.Targeting(pod="web", namespace="shop").to_proto(),
            tap=agent_pb2.TapRequest(duration_seconds=1, max_packets=1)),
            metadata=tenant._metadata, timeout=60))
    kinds = [o.WhichOneof("output") for o in shell]
    assert "entered" not in kinds and kinds[-1] == "exit_code", shell
    assert all(e.event.WhichOneof("event") != "entered" for e in tap if e.HasField("event")), tap
    with colony.client() as c:
        started = {r["verb"]: r["op_id"] for r in c.audit(kind="started", requester="tenant")}
        assert set(started) == {"shell", "tap"}
        for verb, op_id in started.items():
            (entered,) = c.audit(kind="entered", op_id=op_id)
            assert (entered["node"], entered["namespace"], entered["pod"], entered["container"],
                    entered["container_id"]) == (
                "node-a", "shop", "web", "app", web.containers["app"]), verb
