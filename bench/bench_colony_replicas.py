"""Colony replicas on PostgreSQL beside one SQLite colony, in the same run (issue 11).

Setups, each measured the same way:
* `sqlite`: one `coral colony start` with its SQLite files (the embedded default);
* `replicas`: three `coral colony start --database` processes sharing a PostgreSQL 15
  server started here (Debian's initdb/pg_ctl, tests/support/postgres.py).

Load: `AGENTS` simulated DaemonSet node agents spread over `LOAD_PROCESSES` load processes
(many links per process: grpc.aio, one TLS channel per agent). Each agent holds a node
certificate minted with the colony CA (as after TokenReview), registers `PER_AGENT`
services, keeps a Link stream open and answers every exec at once. Agent i dials replica
i % 3 first and the others after it (a channel over all three addresses).

Every simulated agent links from 127.0.0.1, so the colonies run with a settings file
raising limits.streamsPerPeer and limits.concurrentRpcs above the agent count (the
defaults, 64 streams per address and 2,048 RPCs, are per-address and per-process guards
that a real fleet spread over many addresses and replicas does not meet this way).

Figures per setup: registration rate (agents/s, aggregate; each agent registers
REGISTER_PER_AGENT services over the protocol in one registration: one registry transaction
and one audit record naming them, colony/discovery_record.py), one
fan-out `exec --all` over every agent (seconds to the summary), ListServices latency with
AGENTS x PER_AGENT (~1,000,000) services stored, and for replicas the failover time:
SIGKILL of one replica until every agent it held has a Link again (goal <= 10 s).

Setup shortcut, named: registering all ~1,000,000 services through the protocol (with an
audit record each) took over 10 minutes per setup on the 2-core development machine, so
after the agents registered and linked, the bench bulk-loads the rest of each agent's
PER_AGENT services straight into the colony's registry (SQLite file or PostgreSQL) with
the colony's own registry code (coral_lib.colony.registry, no audit records), then runs
the fan-out and the ListServices queries against the full registry (`bulk_load_s`; on
PostgreSQL it ends with VACUUM ANALYZE, the state autovacuum keeps a registry filled over
time in). PostgreSQL runs with shared_buffers sized for the registry (PG_SETTINGS).

ListServices is timed per answer: one page of up to client.SERVICES_PAGE (1,000) records,
what `coral services` asks for first (`list_*_page_*`, 1,000 rounds per query), and the
whole listing of a namespace page after page (`list_namespace_all_pages_*`).

    .venv/bin/python -m bench --only colony_replicas [--quick]

Load processes: each builds its agents' RegisterRequest messages before registration
starts (issue 11: building 34 ServiceInfo messages in Python was ~0.1 ms of the load
process's CPU per agent, competing with the colonies for the same cores); every agent
still opens its own TLS channel, signs every call with its own key and sends the same
message.

Scaled-down iteration runs: BENCH_REPLICAS_AGENTS, BENCH_REPLICAS_PER_AGENT,
BENCH_REPLICAS_ROUNDS and BENCH_REPLICAS_PROCESSES override the sizes above.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.bench_colony_scale import node_holder, services_of  # noqa: E402
from coral_lib import addresses, client  # noqa: E402
from coral_lib._proto.coral.agent.v1 import agent_pb2  # noqa: E402
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc  # noqa: E402
from coral_lib.agent import credentials  # noqa: E402
from coral_lib.colony import dsn as dsn_mod  # noqa: E402
from coral_lib.colony import pki, registry, storage  # noqa: E402
from tests.support import coral_procs, postgres  # noqa: E402

AGENTS, PER_AGENT, LOAD_PROCESSES, REPLICAS = 3000, 334, 6, 3  # ~1,000,000 services
REGISTER_PER_AGENT = 34  # registered over the protocol; the rest is bulk-loaded
QUERY_ROUNDS = 1000
QUERIES = {  # name -> the filters of round i (services_of: 500 namespaces, app-0..app-333)
    "namespace": lambda i: {"namespace": f"ns-{i % 500}"},
    "label": lambda i: {"labels": {"app": f"app-{i % 10}"}},
    "namespace_and_label": lambda i: {"namespace": f"ns-{i % 500}",
                                      "labels": {"tier": ("web", "api", "db", "cache")[i % 4]}},
}
FAILOVER_GOAL_S = 10.0
# The tests' server runs with shared_buffers=32MB (many small schemas); a server holding a
# 1,000,000-service registry is sized for it (Debian's default is 128MB, 25% of RAM is
# the usual advice): with 32MB every page of an answer was read through the OS cache.
PG_SETTINGS = "-c shared_buffers=1GB"


class _ColonyView:
    """What node_holder needs: the data directory and colony id."""

    def __init__(self, data_dir: Path, colony_id: str) -> None:
        self.data_dir, self.colony_id = data_dir, colony_id


def _load_process(args: dict, events: multiprocessing.Queue) -> None:
    asyncio.run(_agents(args, events))


async def _agents(args: dict, events: multiprocessing.Queue) -> None:
    """Run this process's agents: register, then keep links; report what happens."""
    view = _ColonyView(Path(args["data_dir"]), args["colony_id"])
    ca = (view.data_dir / "ca.crt").read_bytes()
    state = tempfile.mkdtemp(prefix="bench-replica-agents-")
    stubs = {}
    for i in args["indexes"]:
        holder = node_holder(view, Path(state), f"node-{i}")
        order = [args["addresses"][(i + k) % len(args["addresses"])]
                 for k in range(len(args["addresses"]))]
        target, options = addresses.grpc_target(",".join(order))
        channel = grpc.aio.secure_channel(target, grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=ca),
            grpc.metadata_call_credentials(credentials.CallProof(holder))),
            options=[*options, ("grpc.use_local_subchannel_pool", 1)])
        stubs[i] = mesh_pb2_grpc.MeshStub(channel)
    # Each agent's request is built before the clock starts (a real agent's reconciler has
    # its service set before it registers): the registration sends the same message.
    requests = {i: mesh_pb2.RegisterRequest(
        version="bench", node_name=f"node-{i}",
        services=services_of(i, per_agent=args["register_per_agent"])) for i in stubs}
    gate = asyncio.Semaphore(50)

    async def register(i: int) -> None:
        async with gate:
            reply = await stubs[i].Register(requests[i], timeout=600)
        if not reply.accepted:
            raise RuntimeError(f"node-{i} refused: {reply.reason}")
    started = time.time()
    await asyncio.gather(*(register(i) for i in stubs))
    events.put(("registered", len(stubs), started, time.time()))
    await asyncio.gather(*(_link(i, stubs[i], events) for i in stubs))


async def _link(i: int, stub, events: multiprocessing.Queue) -> None:
    """Keep agent i's Link open, answering execs; report each (re)link."""
    attempt = 0
    while True:
        outbox: asyncio.Queue = asyncio.Queue()
        await outbox.put(mesh_pb2.AgentMessage(hello=mesh_pb2.LinkHello()))

        async def requests(outbox: asyncio.Queue = outbox):
            while True:
                yield await outbox.get()
        try:
            async for msg in stub.Link(requests()):
                if msg.WhichOneof("body") == "exec":
                    await outbox.put(mesh_pb2.AgentMessage(op_id=msg.op_id, exec_result=(
                        agent_pb2.ExecResult(exit_code=0, stdout=b"ok\n"))))
            attempt += 1
        except grpc.aio.AioRpcError:
            attempt += 1
        events.put(("lost", i, time.time()))
        await asyncio.sleep(min(0.5, 0.05 * attempt))


def _replica_holders(dsn: str) -> dict[str, str]:
    import psycopg
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT agent_id, replica FROM colony_links").fetchall())


def _linked_count(colony: coral_procs.Colony) -> int:
    with colony.client() as c:
        return sum(a["connected"] for a in c.list_agents())


def _bulk_load(where, *, per_agent: int) -> float:
    """Each registered agent's services_of(i, per_agent), written with the colony's own
    registry code into its store (`where`: SQLite file or dsn.Dsn); seconds taken.
    On PostgreSQL the load ends with VACUUM ANALYZE: a registry filled over weeks has been
    autovacuumed, while one filled in two minutes would be vacuumed (and have its hint
    bits written) during the query phase, which is the bench's shortcut, not the colony."""
    started = time.perf_counter()
    reg = registry.Registry(where)
    try:
        for row in reg.agents():
            index = int(row.node_name.rpartition("-")[2])
            reg.replace_services(row.agent_id, services_of(index, per_agent=per_agent))
        if not storage.is_file(where):
            reg._db.execute("VACUUM ANALYZE")
    finally:
        reg.close()
    return round(time.perf_counter() - started, 1)


def _measure(colonies: list[coral_procs.Colony], *, agents: int, per_agent: int,
             processes: int, rounds: int, where, dsn: str = "") -> dict:
    events: multiprocessing.Queue = multiprocessing.Queue()
    addresses_ = [c.address for c in colonies]
    chunks = [list(range(agents))[p::processes] for p in range(processes)]
    workers = [multiprocessing.Process(target=_load_process, daemon=True, args=(
        {"data_dir": str(colonies[0].data_dir), "colony_id": colonies[0].colony_id,
         "addresses": addresses_, "indexes": chunk,
         "register_per_agent": min(per_agent, REGISTER_PER_AGENT)}, events))
        for chunk in chunks if chunk]
    for worker in workers:
        worker.start()
    figures: dict = {}
    try:
        firsts, lasts = [], []
        lost_early = 0
        while len(firsts) < len(workers):
            event = events.get(timeout=3600)
            if event[0] != "registered":  # a link of a process done registering ended
                lost_early += 1
                continue
            firsts.append(event[2])
            lasts.append(event[3])
        figures["links_lost_while_registering"] = lost_early
        figures["register_per_second"] = round(agents / (max(lasts) - min(firsts)), 1)
        coral_procs.wait_for(lambda: _linked_count(colonies[0]) == agents, timeout=600,
                             interval=1.0, what="every simulated agent linked")
        figures["bulk_load_s"] = _bulk_load(where, per_agent=per_agent)
        with colonies[0].client() as c:
            figures["services_stored"] = sum(a["service_count"] for a in c.list_agents())
            started = time.perf_counter()
            outcome = c.exec(client.Targeting(all=True), argv=["true"], timeout=120)
            figures["fanout_all_s"] = round(time.perf_counter() - started, 2)
            figures["fanout_ok"] = sum(r["status"] == "ok" for r in outcome.results)
            figures.update(_query_latency(c, rounds=rounds))
        if len(colonies) > 1:
            figures.update(_failover(colonies, dsn, events, agents))
    finally:
        for worker in workers:
            worker.kill()
    return figures


def _query_latency(c: client.Client, *, rounds: int) -> dict:
    """Per query: one ListServices answer of up to a page (client.SERVICES_PAGE records:
    what `coral services` asks for first), `rounds` times over varying values; then the
    whole namespace listing, page after page, a tenth as often."""
    figures: dict = {}
    for name, query in QUERIES.items():
        samples, sizes = [], []
        for i in range(rounds):
            started = time.perf_counter()
            rows = c.list_services(**query(i), limit=client.SERVICES_PAGE)
            samples.append(time.perf_counter() - started)
            sizes.append(len(rows))
        figures.update(common.summary_ms(f"list_{name}_page", samples))
        figures[f"list_{name}_page_results_median"] = int(common.percentile(sizes, 50))
    samples, sizes = [], []
    for i in range(max(1, rounds // 10)):
        started = time.perf_counter()
        sizes.append(len(c.list_services(**QUERIES["namespace"](i))))
        samples.append(time.perf_counter() - started)
    figures.update(common.summary_ms("list_namespace_all_pages", samples))
    figures["list_namespace_all_pages_results_median"] = int(common.percentile(sizes, 50))
    return figures


def _failover(colonies: list[coral_procs.Colony], dsn: str, events, agents: int) -> dict:
    """SIGKILL replica 1; seconds until each agent it held has a link on a survivor."""
    victim = colonies[1]
    name = "r1"
    held = {a for a, r in _replica_holders(dsn).items() if r == name}
    while not events.empty():
        events.get_nowait()
    killed = time.time()
    victim.stop(sig=signal.SIGKILL)
    deadline = killed + 120

    def moved() -> bool:
        now = _replica_holders(dsn)
        return all(now.get(a) not in (None, name) for a in held)
    while not moved() and time.time() < deadline:
        time.sleep(0.1)
    took = time.time() - killed
    return {"failover_agents_moved": len(held), "failover_relink_s": round(took, 2),
            "failover_goal_met": took <= FAILOVER_GOAL_S}


def _sized(name: str, default: int) -> int:
    """A size from BENCH_REPLICAS_<NAME> (scaled-down iteration runs), else `default`."""
    return int(os.environ.get(f"BENCH_REPLICAS_{name}") or default)


def run(*, quick: bool = False, agents: int = 0, per_agent: int = 0) -> dict:
    """Both setups; `agents`/`per_agent` override the sizes (a probe run), as do the
    environment's BENCH_REPLICAS_AGENTS / _PER_AGENT / _ROUNDS / _PROCESSES."""
    agents, per_agent = (60, 10) if quick else (agents or _sized("AGENTS", AGENTS),
                                                per_agent or _sized("PER_AGENT", PER_AGENT))
    processes, rounds = (2, 50) if quick else (_sized("PROCESSES", LOAD_PROCESSES),
                                               _sized("ROUNDS", QUERY_ROUNDS))
    figures: dict = {"agents": agents, "services": agents * per_agent,
                     "register_services_per_agent": min(per_agent, REGISTER_PER_AGENT),
                     "load_processes": processes}
    with tempfile.TemporaryDirectory(prefix="bench-colony-replicas-") as tmp:
        root = Path(tmp)
        settings = root / "colony.yaml"
        settings.write_text(json.dumps({"limits": {
            "streamsPerPeer": agents + 64, "concurrentRpcs": agents + 2048}}))
        single = coral_procs.Colony(root / "sqlite", args=("--config", str(settings))).start()
        try:
            for key, value in _measure(
                    [single], agents=agents, per_agent=per_agent, processes=processes,
                    rounds=rounds, where=pki.ColonyFiles(single.data_dir).registry_db).items():
                figures[f"sqlite_{key}"] = value
        finally:
            single.stop()
        server = postgres.Server(settings=PG_SETTINGS).start()
        replicas: list[coral_procs.Colony] = []
        try:
            dsn = server.fresh_dsn().secret()
            (root / "dsn").write_text(dsn)
            coral_procs.coral("colony", "init", "--data-dir", str(root / "template"), check=True)
            for i in range(REPLICAS):
                shutil.copytree(root / "template", root / f"r{i}")
                replicas.append(coral_procs.Colony(root / f"r{i}", args=(
                    "--database", f"file:{root / 'dsn'}", "--replica-name", f"r{i}",
                    "--config", str(settings))).start())
            for key, value in _measure(replicas, agents=agents, per_agent=per_agent,
                                       processes=processes, rounds=rounds,
                                       where=dsn_mod.Dsn(dsn), dsn=dsn).items():
                figures[f"replicas_{key}"] = value
        finally:
            for replica in replicas:
                replica.stop()
            server.stop()
    return figures


def main() -> None:
    figures = run(quick="--quick" in sys.argv or os.environ.get("BENCH_QUICK") == "1")
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
