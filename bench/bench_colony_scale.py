"""Colony scale: registration and heartbeat throughput from 1,000 simulated agents, and
ListServices latency filtered by namespace / label with 100,000 services stored.

A real colony process (`coral colony start`) serves on loopback TLS. The simulated
agents are grpc.aio clients in this process, each with its own channel and its own TLS
connection (local subchannel pool), speaking the real Mesh protocol as DaemonSet node
agents: each holds its own node certificate (minted before the clock starts with the CA
key from the data directory, as the colony would issue it after TokenReview) and sends
the per-call proof:
1,000 agents x 100 services = 100,000 services (each registration also writes 100
hash-chained audit records, as a real agent's first registration does). Then every
agent heartbeats as fast as it is answered for a fixed time. Then an operator client
(coral_lib.client, token auth) runs filtered ListServices queries; target p99 < 50 ms.

Each query is timed twice: through the operator client (coral_lib.client.list_services,
RPC + records turned into dicts) and as the bare RPC, to split colony from client cost.
Where the time goes inside the colony: the same queries are replayed in this process
against the colony's own registry file (WAL) with coral_lib.colony.registry, split into SQL,
protobuf parse and response build + serialise, so a missed target says what would fix it.

    .venv/bin/python -m bench --only colony_scale [--quick]
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from coral_lib import identity  # noqa: E402
from coral_lib._proto.coral.colony.v1 import colony_pb2, colony_pb2_grpc  # noqa: E402
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc  # noqa: E402
from coral_lib.agent import credentials  # noqa: E402
from coral_lib.colony import pki, registry  # noqa: E402
from tests.support import coral_procs  # noqa: E402

AGENTS, PER_AGENT, NAMESPACES = 1000, 100, 500
# A p99 needs 1,000 samples (bench/common.py); the bare-RPC comparison takes fewer (a max).
QUERY_ROUNDS, RPC_ONLY_ROUNDS = 1000, 100
TIERS = ("web", "api", "db", "cache")
TARGET_P99_MS = 50.0
QUERIES = {  # name -> (namespace, labels); result sizes are in the figures
    "namespace": ("ns-7", {}),
    "label": ("", {"app": "app-7"}),
    "namespace_and_label": ("ns-7", {"app": "app-7"}),
    "two_labels": ("", {"shard": "7", "tier": "web"}),
}


def services_of(i: int, *, per_agent: int = PER_AGENT) -> list[mesh_pb2.ServiceInfo]:
    """Agent i's services: spread over NAMESPACES namespaces, labelled app/tier/shard."""
    return [mesh_pb2.ServiceInfo(
        component_name=f"svc-{j}", port=8000 + j, namespace=f"ns-{(i + j) % NAMESPACES}",
        pod_name=f"pod-{i}-{j}", container_name="app", node_name=f"node-{i}",
        service_type="http", health_endpoint="/healthz",
        provenance=mesh_pb2.SERVICE_PROVENANCE_DISCOVERED,
        labels={"app": f"app-{j}", "tier": TIERS[j % len(TIERS)], "shard": str(i % 50)},
    ) for j in range(per_agent)]


def node_holder(colony: coral_procs.Colony, state: Path, node: str) -> credentials.Holder:
    """A node agent's key and certificate, signed here with the colony's CA key."""
    files = pki.ColonyFiles(colony.data_dir)
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
    ca_pem = files.ca_cert.read_bytes()
    who = identity.node_identity(node)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, who.agent_id)]))
            .issuer_name(x509.load_pem_x509_certificate(ca_pem).subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(seconds=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                identity.spiffe_uri(colony.colony_id, who))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    holder = credentials.Holder(state, who.agent_id, ca_pem=ca_pem)
    holder.store(key, cert.public_bytes(serialization.Encoding.PEM), who.agent_id)
    return holder


class SimAgents:
    """N agents over N TLS channels to one colony; register and heartbeat like real ones."""

    def __init__(self, colony: coral_procs.Colony, count: int) -> None:
        ca = (colony.data_dir / "ca.crt").read_bytes()
        self.state = tempfile.TemporaryDirectory(prefix="bench-sim-agents-")
        holders = [node_holder(colony, Path(self.state.name), f"node-{i}") for i in range(count)]
        self.channels = [grpc.aio.secure_channel(colony.address, grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=ca),
            grpc.metadata_call_credentials(credentials.CallProof(holder))), options=[
            ("grpc.use_local_subchannel_pool", 1)]) for holder in holders]
        self.stubs = [mesh_pb2_grpc.MeshStub(c) for c in self.channels]

    async def connect(self) -> None:
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 60) for c in self.channels))

    async def register_all(self, *, per_agent: int, concurrency: int = 100) -> list[float]:
        gate, samples = asyncio.Semaphore(concurrency), []

        async def one(i: int) -> None:
            request = mesh_pb2.RegisterRequest(
                version="bench", node_name=f"node-{i}",
                services=services_of(i, per_agent=per_agent))
            async with gate:
                started = time.perf_counter()
                reply = await self.stubs[i].Register(request, timeout=600)
                samples.append(time.perf_counter() - started)
            if not reply.accepted:
                raise RuntimeError(f"node-{i} refused: {reply.reason}")
        await asyncio.gather(*(one(i) for i in range(len(self.stubs))))
        return samples

    async def heartbeat_for(self, seconds: float) -> list[float]:
        deadline, samples = time.monotonic() + seconds, []

        async def loop(i: int) -> None:
            request = mesh_pb2.HeartbeatRequest()
            while time.monotonic() < deadline:
                started = time.perf_counter()
                reply = await self.stubs[i].Heartbeat(request, timeout=60)
                samples.append(time.perf_counter() - started)
                if not reply.ok:
                    raise RuntimeError(f"node-{i} heartbeat refused: {reply.reason}")
        await asyncio.gather(*(loop(i) for i in range(len(self.stubs))))
        return samples

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels))
        self.state.cleanup()


def _query_latency(client, *, rounds: int) -> dict:
    """Per query: the operator client's list_services (what `coral services` and the
    modules call: RPC + turning records into dicts) and the bare RPC alone."""
    figures = {}
    stub = colony_pb2_grpc.ColonyStub(client._channel)
    for name, (namespace, labels) in QUERIES.items():
        count = len(client.list_services(namespace=namespace or None, labels=labels or None))
        request = colony_pb2.ListServicesRequest(namespace=namespace, labels=labels)
        samples, rpc = [], []
        for i in range(rounds):
            started = time.perf_counter()
            client.list_services(namespace=namespace or None, labels=labels or None)
            samples.append(time.perf_counter() - started)
            if i < RPC_ONLY_ROUNDS:
                started = time.perf_counter()
                stub.ListServices(request, metadata=client._metadata, timeout=60)
                rpc.append(time.perf_counter() - started)
        figures.update(common.summary_ms(f"list_{name}", samples))
        figures.update(common.summary_ms(f"list_{name}_rpc_only", rpc))
        figures[f"list_{name}_results"] = count
    return figures


def _list_all(client) -> dict:
    """Unfiltered ListServices once: does the whole registry fit in one gRPC answer?"""
    started = time.perf_counter()
    try:
        count = len(client.list_services())
    except Exception as exc:  # noqa: BLE001 - the failure is the figure
        return {"list_all_error": str(exc)[:200]}
    return {"list_all_ms": round((time.perf_counter() - started) * 1000, 1),
            "list_all_results": count}


def where_time_goes(db_path: Path, *, rounds: int = 20) -> dict:
    """Replay each query in-process on the colony's registry file, split into stages."""
    registry_mod = registry
    if not db_path.exists():
        raise FileNotFoundError(f"colony registry {db_path} not found")
    figures = {}
    db = registry_mod.Registry(db_path)
    try:
        for name, (namespace, labels) in QUERIES.items():
            flt = registry.ServiceFilter(namespace=namespace, labels=labels)
            sql, args = registry_mod._service_query(flt)
            stages = {"sql": [], "parse": [], "build": []}
            for _ in range(rounds):
                t0 = time.perf_counter()
                rows = db._db.execute(sql, args).fetchall()
                t1 = time.perf_counter()
                parsed = [(a, registry_mod._service(b)) for a, b in rows]
                t2 = time.perf_counter()
                colony_pb2.ListServicesResponse(services=[
                    colony_pb2.ServiceRecord(agent_id=a, service=s) for a, s in parsed
                ]).SerializeToString()
                t3 = time.perf_counter()
                for key, value in (("sql", t1 - t0), ("parse", t2 - t1), ("build", t3 - t2)):
                    stages[key].append(value)
            for key, values in stages.items():
                figures[f"inproc_{name}_{key}_median_ms"] = round(
                    common.percentile(values, 50) * 1000, 2)
            plan = db._db.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
            figures[f"inproc_{name}_plan"] = "; ".join(str(row[-1]) for row in plan)
    finally:
        db.close()
    return figures


def verdict(figures: dict) -> dict:
    """Which queries miss the p99 target, and by how much."""
    def p99(name: str) -> float:  # a max stands in for a p99 that has too few samples
        return figures.get(f"list_{name}_p99_ms", figures[f"list_{name}_max_ms"])
    misses = {name: round(p99(name) - TARGET_P99_MS, 2)
              for name in QUERIES if p99(name) >= TARGET_P99_MS}
    return {"list_p99_target_ms": TARGET_P99_MS, "list_p99_target_met": not misses,
            "list_p99_over_target_ms": misses}


async def load(colony: coral_procs.Colony, *, agents: int, per_agent: int = PER_AGENT,
               heartbeat_seconds: float = 0) -> dict:
    """Register `agents` simulated agents (then heartbeat for a while); return figures."""
    sim = SimAgents(colony, agents)
    try:
        started = time.perf_counter()
        await sim.connect()
        connect_s = time.perf_counter() - started
        started = time.perf_counter()
        reg = await sim.register_all(per_agent=per_agent)
        reg_s = time.perf_counter() - started
        hb = await sim.heartbeat_for(heartbeat_seconds) if heartbeat_seconds else []
    finally:
        await sim.close()
    return {"agents": agents, "services": agents * per_agent,
            "connect_all_tls_s": round(connect_s, 2),
            "register_per_second": round(agents / reg_s, 1),
            "registered_services_per_second": round(agents * per_agent / reg_s, 1),
            "register_all_s": round(reg_s, 1), **common.summary_ms("register", reg),
            "heartbeats_per_second": round(len(hb) / heartbeat_seconds, 1) if hb else 0,
            **common.summary_ms("heartbeat", hb)}


def run(*, quick: bool = False) -> dict:
    agents = 100 if quick else AGENTS
    with tempfile.TemporaryDirectory(prefix="bench-colony-scale-") as tmp:
        colony = coral_procs.Colony(Path(tmp) / "colony").start()
        try:
            figures = asyncio.run(load(colony, agents=agents, per_agent=PER_AGENT,
                                        heartbeat_seconds=5 if quick else 15))
            figures["colony_rss_mb"] = round(
                psutil.Process(colony.proc.pid).memory_info().rss / (1 << 20), 1)
            with colony.client() as client:
                figures["services_stored"] = sum(a["service_count"] for a in client.list_agents())
                figures.update(_list_all(client))
                figures.update(_query_latency(client, rounds=50 if quick else QUERY_ROUNDS))
            figures.update(where_time_goes(pki.ColonyFiles(colony.data_dir).registry_db))
        finally:
            colony.stop()
    figures.update(verdict(figures))
    return figures


def main() -> None:
    figures = run(quick="--quick" in sys.argv or os.environ.get("BENCH_QUICK") == "1")
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
