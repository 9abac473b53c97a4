"""Issue 10, "Pre-auth exhaustion" and the colony side of the hygiene bullets, played against
a real colony process: an unauthenticated caller (no token, no colony secret) tries to
freeze it, blow up its memory, fill its disk with audit records, guess tokens, and forge
log lines with names; an operator tries to drop an agent's link with a huge request."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re

import grpc
import pytest

from coral_lib import client
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc
from tests.security import conftest
from tests.support import agent_identity, coral_procs


def _start(tmp: pathlib.Path, limits: dict | None = None) -> conftest.PolicyColony:
    cfg = tmp / "colony.yaml"
    cfg.write_text(json.dumps({"limits": limits or {}}))
    return conftest.PolicyColony(tmp / "colony", args=("--config", str(cfg))).start()


@pytest.fixture(scope="module")
def colony(tmp_path_factory):
    colony = _start(tmp_path_factory.mktemp("limits"), {"loginFailures": 1000})
    yield colony
    colony.stop()


def _rss_kib(pid: int) -> int:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)[1])


def _mesh(colony, **options) -> tuple[grpc.Channel, mesh_pb2_grpc.MeshStub]:
    creds = grpc.ssl_channel_credentials((colony.data_dir / "ca.crt").read_bytes())
    chan = grpc.secure_channel(colony.address, creds, options=list(options.items()))
    return chan, mesh_pb2_grpc.MeshStub(chan)


def _refusals(colony) -> list[dict]:
    with colony.client() as c:
        return c.audit(kind="refused")


def test_review_600_link_streams_without_hello_do_not_freeze_the_colony(colony):
    async def attack() -> tuple[list, str]:
        creds = grpc.ssl_channel_credentials((colony.data_dir / "ca.crt").read_bytes())
        channels = [grpc.aio.secure_channel(colony.address, creds, options=[
            ("grpc.use_local_subchannel_pool", 1)]) for _ in range(6)]
        never = asyncio.Event()

        async def silent():  # opens the stream, never says hello
            await never.wait()
            yield mesh_pb2.AgentMessage()

        async def outcome(call) -> str:
            try:
                async for _ in call:
                    pass
                return "ended"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        calls = [mesh_pb2_grpc.MeshStub(channels[i % 6]).Link(silent()) for i in range(600)]
        results = asyncio.gather(*(outcome(c) for c in calls))
        await asyncio.sleep(1.0)

        def operator_call() -> str:
            with client.connect(colony.address, ca_file=str(colony.data_dir / "ca.crt"),
                                token=(colony.data_dir / "admin.token").read_text().strip(),
                                timeout=10.0) as c:
                return c.whoami()

        who = await asyncio.to_thread(operator_call)
        # Every stream ends by itself: agent calls are verified from their metadata before
        # the stream is read, so a stream without an agent's proof is refused at once.
        ends = await asyncio.wait_for(results, 20)
        never.set()
        for chan in channels:
            await chan.close()
        return ends, who

    ends, who = asyncio.run(attack())
    assert who == "admin"
    assert ends.count("UNAUTHENTICATED") == 600, sorted(set(ends))


def test_review_256mb_message_is_refused_before_it_is_parsed(colony):
    before = _rss_kib(colony.proc.pid)
    chan, stub = _mesh(colony, **{"grpc.max_send_message_length": 300 << 20})
    request = mesh_pb2.RegisterRequest(agent_id="a" * (250 * 1000 * 1000))
    with pytest.raises(grpc.RpcError) as info:
        stub.Register(request, timeout=60)
    del request
    chan.close()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    grown_mib = (_rss_kib(colony.proc.pid) - before) / 1024
    assert grown_mib < 100, f"colony RSS grew by {grown_mib:.0f} MiB"
    with colony.client() as c:
        assert c.whoami() == "admin"


def test_review_refused_register_with_20mb_agent_id_writes_no_large_audit_record(colony):
    """Unauthenticated Registers with huge agent ids: refused before the message is parsed
    (over the receive limit, or before the handler reads it: no agent proof), counted per
    peer, audited at most twice per window with clipped fields."""
    audit_files = [colony.data_dir / n for n in ("audit.db", "audit.db-wal")]
    size_before = sum(p.stat().st_size for p in audit_files if p.exists())
    chan, stub = _mesh(colony, **{"grpc.max_send_message_length": 64 << 20})
    with pytest.raises(grpc.RpcError) as info:
        stub.Register(mesh_pb2.RegisterRequest(agent_id="x" * (20 << 20)), timeout=60)
    assert info.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 grpc.StatusCode.UNAUTHENTICATED)
    for _ in range(20):  # under the receive limit: refused unread, counted, not each audited
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(mesh_pb2.RegisterRequest(agent_id="y" * (2 << 20)), timeout=60)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    chan.close()
    grown = sum(p.stat().st_size for p in audit_files if p.exists()) - size_before
    assert grown < 256 << 10, f"audit files grew by {grown} bytes"
    # aggregated per peer and window (earlier attacks in this module share the window)
    mine = [r for r in _refusals(colony) if r["rule"] == "authentication"]
    assert 1 <= len(mine) <= 2, mine
    assert all(len(json.dumps(r)) < 2000 for r in mine)
    assert mine[0]["requester"] == "peer:127.0.0.1"


def test_review_failed_logins_are_audited_with_the_peer_and_throttled(tmp_path):
    colony = _start(tmp_path, {"loginFailures": 5, "loginWindow": "30s"})
    try:
        outcomes = []
        for attempt in range(12):
            try:
                with client.connect(colony.address, ca_file=str(colony.data_dir / "ca.crt"),
                                    token=f"guess-{attempt}") as c:
                    c.whoami()
            except client.RateLimited as exc:
                outcomes.append(("throttled", exc.retry_after))
            except client.Unauthenticated:
                outcomes.append(("unauthenticated", 0.0))
        assert [o for o, _ in outcomes[:5]] == ["unauthenticated"] * 5
        assert all(o == "throttled" and 0 < wait <= 30 for o, wait in outcomes[5:])
        # While the peer is throttled even the right token is refused: no guessing oracle.
        with colony.client() as c, pytest.raises(client.RateLimited, match="failed logins"):
            c.whoami()
        records = colony.data_dir / "audit.db"
        import sqlite3
        with sqlite3.connect(records) as db:
            rows = [json.loads(f) for (f,) in db.execute(
                "SELECT fields FROM audit WHERE kind = 'refused'")]
        logins = [r for r in rows if r["verb"] == "login"]
        assert len(logins) == 2  # the first failure and the moment it was throttled
        assert all(r["requester"] == "peer:127.0.0.1" and r["rule"] == "authentication"
                   for r in logins)
        assert "unknown operator token" in logins[0]["reason"]
        assert "throttled for 30s after 5 failures" in logins[1]["reason"]
    finally:
        colony.stop()


FORGED_IDS = ["x\n2099-01-01 INFO coral_lib.colony.server: agent forged registered (0 services)",
              "x\x1b[2K\r2099-01-01 INFO forged", "x\x00forged"]


def _log_is_clean(colony) -> None:
    log = colony.log_path.read_bytes()
    assert b"\x1b" not in log and b"\x00" not in log
    assert not [line for line in log.splitlines() if line.startswith(b"2099-01-01")]


@pytest.mark.parametrize("agent_id", FORGED_IDS)
def test_review_agent_ids_with_newline_ansi_nul_are_refused_and_forge_no_log_line(
        colony, agent_id):
    """Agent ids come from join tokens (the certificate carries them): a forged one is
    refused where it would enter, naming the field."""
    with colony.client() as c, pytest.raises(client.CoralError) as info:
        c.create_join_token(agent_id, ttl=600)
    assert "agent" in str(info.value) and not re.search(r"[\x00-\x08\x0b-\x1f]",
                                                        str(info.value))
    _log_is_clean(colony)


@pytest.mark.parametrize(("field", "request_kwargs"), [
    ("labels[env]", {"labels": {"env": "prod\x1b[31m"}}),
    ("node_name", {"node_name": "n\n2099-01-01 INFO forged"}),
    ("node_name", {"node_name": "n\x00forged"}),
])
def test_review_names_with_newline_ansi_nul_are_refused_and_forge_no_log_line(
        colony, tmp_path, field, request_kwargs):
    """An enrolled agent sends names of its own (node, labels): refused naming the field."""
    with agent_identity.MeshAgent(colony, tmp_path, "honest") as agent:
        agent.join()
        reply = agent.stub.Register(mesh_pb2.RegisterRequest(**request_kwargs), timeout=30)
    assert not reply.accepted and reply.reason.startswith(field), reply.reason
    assert not re.search(r"[\x00-\x08\x0b-\x1f]", reply.reason)
    _log_is_clean(colony)


def test_review_forged_service_names_from_an_agent_are_skipped_and_log_nothing_forged(
        tmp_path):
    """A process on a host can be named anything: the agent's other services register, the
    forged ones are skipped, and nothing forged reaches the colony's log or tables."""
    colony = _start(tmp_path)
    agent = coral_procs.Agent(tmp_path / "agents", colony, agent_id="named-1", services=[
        {"name": "api", "port": 18090},
        {"name": "web\n2099-01-01 INFO coral_lib.colony.server: agent forged registered",
         "port": 18091},
        {"name": "db", "port": 18092, "labels": {"env": "prod\x1b[2J\x1b[31m"}},
    ]).start()
    try:
        coral_procs.wait_registered(colony, ["named-1"])
        with colony.client() as c:
            names = {s["component_name"] for s in c.list_services(agent="named-1")}
        assert "api" in names and "db" not in names
        assert not [n for n in names if n.startswith("web")]
        table = coral_procs.coral("services", env=colony.operator_env)
        assert table.returncode == 0 and "\x1b" not in table.stdout
        assert not [line for line in table.stdout.splitlines() if line.startswith("2099")]
        log = colony.log_path.read_bytes()
        assert b"].component_name 'web\\n2099-01-01" in log  # escaped, on the skip line
        assert b"].labels[env] 'prod\\x1b[2J" in log
        assert b"\x1b" not in log and b"\x00" not in log
        assert not [line for line in log.splitlines() if line.startswith(b"2099-01-01")]
    finally:
        agent.stop()
        colony.stop()


def test_review_link_hello_with_forged_agent_id_is_refused_and_logs_nothing_forged(colony):
    """The hello's agent id is not an identity any more (the certificate is): a Link with a
    forged id and no agent proof is refused before its hello is read, and nothing of the
    forged id reaches the colony log."""
    chan, stub = _mesh(colony)
    hello = mesh_pb2.AgentMessage(hello=mesh_pb2.LinkHello(agent_id="evil\n2099 forged"))
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Link(iter([hello]), timeout=30))
    chan.close()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not any(line.startswith("2099 forged") for line in colony.log_path.read_text()
                   .splitlines())


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sizes")
    colony = _start(tmp)
    agent = coral_procs.Agent(tmp / "agents", colony, agent_id="size-1").start()
    coral_procs.wait_registered(colony, ["size-1"])
    yield colony
    agent.stop()
    colony.stop()


def test_review_4mb_argv_is_refused_before_audit_and_the_agent_link_stays_up(linked):
    closed = linked.log_path.read_text().count("agent size-1 link closed")
    with linked.client() as c:
        with pytest.raises(client.InvalidRequest, match="limits.requestBytes"):
            c.exec(client.Targeting(agent="size-1"), argv=["echo", "x" * (4 << 20)])
        with pytest.raises(client.InvalidRequest, match="limits.requestBytes"):
            c.exec(client.Targeting(agent="size-1"), argv=["cat"], stdin=b"z" * (2 << 20))
        assert not [r for r in c.audit(kind="started") if len(r["command"]) > 1 << 20]
        assert c.exec(client.Targeting(agent="size-1"), argv=["echo", "still linked"]
                      ).results[0]["stdout"] == "still linked\n"
        assert [a["connected"] for a in c.list_agents()] == [True]
    assert linked.log_path.read_text().count("agent size-1 link closed") == closed


def test_review_operate_asking_for_more_than_256mb_output_is_capped(linked):
    """300 MB of output per stream once made an agent reply larger than the link's message
    limit and the colony dropped the link: the colony caps what it asks the agent for."""
    closed = linked.log_path.read_text().count("agent size-1 link closed")
    with linked.client() as c:
        big = c.exec(client.Targeting(agent="size-1"), argv=["head -c 6000000 /dev/zero"],
                     shell=True, max_output=300 << 20, timeout=30).results[0]
        assert big["status"] == "ok" and big["truncated"], big["error"]
        assert len(big["stdout"]) == 4 << 20  # limits.outputBytes
        assert [a["connected"] for a in c.list_agents()] == [True]
    assert linked.log_path.read_text().count("agent size-1 link closed") == closed


def test_review_forged_target_names_from_operators_are_refused_before_audit(linked):
    with linked.client() as c:
        before = len(c.audit())
        with pytest.raises(client.InvalidRequest, match="targeting.pod 'web\\\\n2099"):
            c.exec(client.Targeting(agent="size-1", pod="web\n2099-01-01 INFO forged"),
                   argv=["true"])
        assert len(c.audit()) == before
    assert b"\n2099-01-01" not in linked.log_path.read_bytes()
