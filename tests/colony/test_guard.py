"""The colony's pre-auth limits and name checks as pure decisions: names refused with the
field named, untrusted strings escaped, failed logins counted per peer with a bounded
number of audit records, exec sizes capped."""

from __future__ import annotations

import unicodedata

import pytest

from coral_lib import validate
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import guard


@pytest.mark.parametrize("value", ["node-agent-worker-1", "web01.example.com", "10.0.0.5",
                                   "ns/pod-1", "a"])
def test_agent_ids_accepted(value):
    assert validate.check_name("agent id", value) == value


@pytest.mark.parametrize(("value", "words"), [
    ("evil\n2026-01-01 INFO agent forged", "expected letters, digits"),
    ("red\x1b[31mtext", "\\x1b"),
    ("nul\x00byte", "\\x00"),
    ("", "agent_id is empty"),
    ("x" * 254, "254 characters long; an agent id may have at most 253"),
])
def test_agent_ids_refused_naming_the_field(value, words):
    with pytest.raises(validate.InvalidName) as info:
        validate.check_name("agent id", value, field="agent_id")
    assert str(info.value).startswith("agent_id") and words in str(info.value)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_service_names_allow_process_names_but_no_control_characters():
    assert validate.check_name("service", "gunicorn: master (api)") == "gunicorn: master (api)"
    for bad in ("a\nb", "a\rb", "a\x1b[2Jb", "a\x00b", "a\u202eb", "a\u2028b"):
        with pytest.raises(validate.InvalidName, match="services\\[0\\].component_name"):
            validate.check_name("service", bad, field="services[0].component_name")


def test_printable_escapes_controls_and_keeps_text():
    assert validate.printable("plain text/ü") == "plain text/ü"
    assert validate.printable("a\nb\rc\td\x1b[0m\x00\u202e") == "a\\nb\\rc\\td\\x1b[0m\\x00\\u202e"


def test_clip_marks_what_was_cut():
    assert validate.clip("short") == "short"
    clipped = validate.clip("x" * 20_000_000)
    assert len(clipped) < 300 and clipped.endswith("[19999744 more characters cut]")


def test_registration_refused_for_bad_agent_names():
    assert guard.registration_problem(agent_id="a1", node_name="n1", labels={"env": "x"}) == ""
    assert guard.registration_problem(agent_id="a1", node_name="n\n1").startswith("node_name")
    assert guard.registration_problem(agent_id="a1", labels={"env": "x\x1b[2J"}).startswith(
        "labels[env]")


def test_services_with_bad_names_are_skipped_naming_the_field():
    good = mesh_pb2.ServiceInfo(component_name="api", namespace="shop", labels={"env": "x"})
    bad_ns = mesh_pb2.ServiceInfo(component_name="api", namespace="Bad_NS")
    bad_label = mesh_pb2.ServiceInfo(component_name="api", labels={"env": "prod\nx"})
    kept, problems = guard.split_services([bad_ns, good, bad_label])
    assert kept == [good]
    assert problems[0].startswith("services[0].namespace 'Bad_NS'")
    assert problems[1].startswith("services[2].labels[env] 'prod\\nx'")


@pytest.mark.parametrize("svc, field", [
    (mesh_pb2.ServiceInfo(component_name=""), "services[0].component_name"),
    (mesh_pb2.ServiceInfo(component_name="api", pod_name="a b"), "services[0].pod_name"),
    (mesh_pb2.ServiceInfo(component_name="api", node_labels={"bad key": "v"}),
     "services[0].node_labels key"),
    (mesh_pb2.ServiceInfo(component_name="api", node_labels={"k": "\u202e"}),
     "services[0].node_labels[k]"),
    (mesh_pb2.ServiceInfo(component_name="a" * 254), "services[0].component_name"),
])
def test_every_refused_service_is_named_by_its_field(svc, field):
    """Issue 11, registration rate: services are checked without building field names, which
    are built only for a refused one; every refusal still names its field."""
    kept, problems = guard.split_services([svc])
    assert kept == [] and problems[0].startswith(field)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_throttle_the_peer_and_audit_at_most_twice_per_window():
    clock, records = Clock(), []
    limits = guard.Limits(login_failures=3, login_window=60.0)
    peers = guard.PeerGuard(limits, record=lambda *r: records.append(r), clock=clock)
    attacker, other = "ipv4:10.0.0.9:5555", "ipv4:10.0.0.7:4444"
    for _ in range(50):
        peers.failed(attacker, what="login", reason="unknown operator token")
    assert len(records) == 2
    assert records[0][:2] == ("10.0.0.9", "login") and records[1][3] == 3
    assert "throttled for 60s after 3 failures" in records[1][2]
    # Another source port of the same host is the same peer; another host is not.
    assert peers.retry_after("ipv4:10.0.0.9:6000") == pytest.approx(60.0)
    assert peers.retry_after(other) == 0.0
    clock.now += 60.0
    assert peers.retry_after(attacker) == 0.0
    peers.failed(attacker, what="login", reason="x" * 10_000)
    assert len(records) == 3 and len(records[2][2]) < 400


def test_peer_table_is_bounded():
    peers = guard.PeerGuard(guard.Limits(), record=lambda *r: None, max_peers=100)
    for i in range(1000):
        peers.failed(f"ipv4:10.0.{i // 250}.{i % 250}:1", what="login", reason="bad")
    assert len(peers._peers) == 100


def test_peer_host():
    assert guard.peer_host("ipv4:127.0.0.1:40000") == "127.0.0.1"
    assert guard.peer_host("ipv6:[::1]:40000") == "::1"
    assert guard.peer_host("unix:/tmp/x\n") == "unix:/tmp/x\\n"


def test_exec_sizes_capped_before_anything_runs():
    limits = guard.Limits()
    assert guard.exec_problem(agent_pb2.ExecRequest(argv=["echo", "hi"]), limits) == ""
    big = agent_pb2.ExecRequest(argv=["echo", "x" * (4 << 20)])
    assert "limits.requestBytes" in guard.exec_problem(big, limits)
    stdin = agent_pb2.ExecRequest(argv=["cat"], stdin=b"x" * (1 << 20))
    assert "argv, stdin and env are" in guard.exec_problem(stdin, limits)
    output = agent_pb2.ExecRequest(argv=["true"], max_output_bytes=300 << 20)
    assert guard.exec_problem(output, limits) == ""
    assert guard.capped_output(300 << 20, limits) == 4 << 20
    assert guard.capped_output(0, limits) == 0 and guard.capped_output(10, limits) == 10
    assert guard.exec_problem(agent_pb2.ExecRequest(argv=["true"], max_output_bytes=-1),
                              limits)


def test_limits_keep_an_agents_largest_reply_receivable():
    with pytest.raises(ValueError, match="limits.receiveBytes .* must be at least"):
        guard.Limits(receive_bytes=8 << 20, output_bytes=8 << 20)
    with pytest.raises(ValueError, match="limits.streamsPerPeer"):
        guard.Limits(streams_per_peer=0)


# -- approvals at the gate: bounded waiting, rate-limited creation ---------------------------

def _gate(tmp_path, **settings):
    from coral_lib.colony import approvals, audit, policy, rbac, registry
    rule = rbac.Rule(name="gated", identities=frozenset({"alice"}),
                     verbs=frozenset({"exec", "shell"}), require_approval=True)
    reg = registry.Registry(tmp_path / "registry.db")
    gate = policy.Gate(
        policy.Settings(policy=rbac.Policy(rules=(rule,)), **settings),
        audit=audit.AuditLog(tmp_path / "audit.db"),
        approvals=approvals.ApprovalStore(tmp_path / "approvals.db"), registry=reg)
    return gate


def _admit(gate, *, verb="shell", no_wait=False, command="sh"):
    from coral_lib._proto.coral.colony.v1 import colony_pb2
    from coral_lib.colony import auth
    return gate.admit(identity=auth.Identity("alice"), verb=verb, no_wait=no_wait,
                      targets=[colony_pb2.Target(agent_id="a1")], command=command)


def test_requests_waiting_on_the_colony_are_bounded(tmp_path):
    from coral_lib.colony import policy
    gate = _gate(tmp_path, approval_pending=1000, approval_rate=None)
    held = []
    for i in range(policy.MAX_WAITING_SHELLS):
        waiting = _admit(gate, command=f"sh {i}")
        assert next(waiting).approval_id  # paused at its pending event: a waiter
        held.append(waiting)
    with pytest.raises(policy.Refused, match="already wait on the colony") as info:
        next(_admit(gate, command="sh one-too-many"))
    assert info.value.code == "RESOURCE_EXHAUSTED"
    held.pop().close()  # the operator went away: its place is free again
    assert next(_admit(gate, command="sh next")).approval_id


def test_approval_creation_is_rate_limited_per_identity(tmp_path):
    from coral_lib.colony import policy, ratelimit
    gate = _gate(tmp_path, approval_rate=ratelimit.Rate(per_second=1 / 60, burst=3),
                 approval_pending=100)
    for i in range(3):
        assert next(_admit(gate, verb="exec", no_wait=True, command=f"x{i}")).approval_id
    with pytest.raises(policy.Refused, match="rate limit for identity 'alice'") as info:
        next(_admit(gate, verb="exec", no_wait=True, command="x4"))
    assert info.value.code == "RESOURCE_EXHAUSTED" and info.value.retry_after > 0


def test_targeting_names_are_checked():
    from coral_lib._proto.coral.colony.v1 import colony_pb2
    ok = colony_pb2.Targeting(agent="a1", pod="web-1", namespace="shop", container="app",
                              selector={"env": "prod"})
    assert guard.targeting_problem(ok) == ""
    bad = colony_pb2.Targeting(agent="a1", pod="web\n2099 forged")
    assert guard.targeting_problem(bad).startswith("targeting.pod 'web\\n2099 forged'")
    assert "targeting.selector key" in guard.targeting_problem(
        colony_pb2.Targeting(selector={"a b": "c"}))


def test_cli_tables_escape_control_characters(capsys):
    from coral_lib.commands import common
    common.print_table([{"name": "web\n2099-01-01 INFO forged", "env": "prod\x1b[2J"}],
                       ["name", "env"])
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "\x1b" not in out
    assert "web\\n2099-01-01 INFO forged" in out and "prod\\x1b[2J" in out


@pytest.mark.parametrize("kind", ["service", "label value"])
def test_printable_text_fast_path_accepts_and_refuses_as_the_character_check(kind):
    """Issue 11, registration rate: ASCII text skips the per-character category lookup;
    every one of the 128 ASCII characters is still judged as before (controls refused)."""
    for code in range(128):
        value = f"a{chr(code)}b"
        unsafe = unicodedata.category(chr(code)) in ("Cc", "Cf", "Zl", "Zp", "Cs")
        if unsafe:
            with pytest.raises(validate.InvalidName):
                validate.check_name(kind, value)
        else:
            assert validate.check_name(kind, value) == value
    assert validate.check_name(kind, "caf\u00e9") == "caf\u00e9"  # non-ASCII: full check
    for text in ("\u202eevil", "a\u2028b"):
        with pytest.raises(validate.InvalidName):
            validate.check_name(kind, text)
