"""The colony's gRPC server over TLS: the Mesh service for agents, Colony for operators."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import threading
import time

import grpc

from coral_lib import convert
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2, colony_pb2_grpc
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import auth, links, operations, pki, registry, routing, secrets
from coral_lib.colony import shell as shell_mod

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ColonyState:
    """Everything the servicers share. Built by open_state(), closed by close()."""

    colony_id: str
    colony_secret: str
    files: pki.ColonyFiles
    registry: registry.Registry
    audit: audit_mod.AuditLog
    links: links.Links
    tokens: auth.TokenBook
    heartbeat_interval: float = 10.0
    degraded_after: float = 30.0
    unhealthy_after: float = 90.0
    authorize: operations.Authorize = operations.allow_all

    def close(self) -> None:
        self.links.close_all()
        self.registry.close()
        self.audit.close()


def open_state(*, data_dir: str, colony_id: str = "", colony_secret: str = "",
               tokens_file: str = "", heartbeat_interval: float = 10.0,
               degraded_after: float = 30.0, unhealthy_after: float = 90.0) -> ColonyState:
    files = pki.ensure(data_dir)
    state = ColonyState(
        colony_id=colony_id or files.colony_id.read_text().strip(),
        colony_secret=colony_secret or files.colony_secret.read_text().strip(),
        files=files, registry=registry.Registry(files.registry_db),
        audit=audit_mod.AuditLog(files.audit_db), links=links.Links(),
        tokens=auth.TokenBook(tokens_file or files.tokens),
        heartbeat_interval=heartbeat_interval, degraded_after=degraded_after,
        unhealthy_after=unhealthy_after,
    )
    secrets.register(state.colony_secret)
    for token in state.tokens.tokens():
        secrets.register(token)
    interrupted = state.audit.mark_interrupted()
    if interrupted:
        log.warning("audit: %d operations were cut off by the last stop; marked interrupted",
                    interrupted)
    return state


class MeshServicer(mesh_pb2_grpc.MeshServicer):
    def __init__(self, state: ColonyState) -> None:
        self.state = state

    def _agent_ok(self, *, agent_id: str, colony_id: str, secret: str, peer: str) -> str:
        """'' when the agent's credentials are right, else the reason it is refused."""
        if not agent_id:
            return "agent_id is empty"
        if colony_id != self.state.colony_id:
            return f"colony id {colony_id!r} does not match this colony"
        if not auth.secret_matches(secret, self.state.colony_secret):
            return "wrong colony secret"
        return ""

    def Register(self, request, context):
        reason = self._agent_ok(agent_id=request.agent_id, colony_id=request.colony_id,
                                secret=request.colony_secret, peer=context.peer())
        if reason:
            log.warning("registration of agent %r from %s refused: %s",
                        request.agent_id, context.peer(), reason)
            self.state.audit.refused(requester=f"agent:{request.agent_id}", verb="register",
                                     target=self.state.colony_id, command="", reason=reason,
                                     rule="colony-secret")
            return mesh_pb2.RegisterResponse(accepted=False, reason=reason)
        services = list(request.services) or _legacy_service(request)
        now = time.time()
        existing = self.state.registry.get_agent(request.agent_id)
        self.state.registry.upsert_agent(registry.AgentRow(
            agent_id=request.agent_id, version=request.version, runtime=request.runtime,
            node_name=request.node_name, node_labels=dict(request.node_labels),
            labels=dict(request.labels), registered_at=existing.registered_at if existing else now,
            last_seen=now,
        ))
        self._store_services(request.agent_id, services)
        log.info("agent %s registered (%d services)", request.agent_id, len(services))
        return mesh_pb2.RegisterResponse(
            accepted=True, agent_id=request.agent_id, colony_id=self.state.colony_id,
            heartbeat_interval_seconds=self.state.heartbeat_interval,
        )

    def Heartbeat(self, request, context):
        reason = self._agent_ok(agent_id=request.agent_id, colony_id=request.colony_id,
                                secret=request.colony_secret, peer=context.peer())
        if reason:
            return mesh_pb2.HeartbeatResponse(ok=False, reason=reason)
        if not self.state.registry.touch(request.agent_id):
            return mesh_pb2.HeartbeatResponse(ok=False, reregister=True,
                                              reason="agent not registered")
        if request.services_changed:
            self._store_services(request.agent_id, list(request.services))
        return mesh_pb2.HeartbeatResponse(ok=True)

    def _store_services(self, agent_id: str, services: list[mesh_pb2.ServiceInfo]) -> None:
        diff = self.state.registry.replace_services(agent_id, services)
        for event, items in (("added", diff.added), ("removed", diff.removed),
                             ("overridden", [s for s in diff.changed if s.provenance == 3])):
            for svc in items:
                self.state.audit.discovery(event=event, agent_id=agent_id,
                                           service=convert.to_dict(svc))

    def Link(self, request_iterator, context):
        try:
            hello = next(request_iterator)
        except StopIteration:
            return
        reason = self._agent_ok(agent_id=hello.hello.agent_id, colony_id=hello.hello.colony_id,
                                secret=hello.hello.colony_secret, peer=context.peer())
        if reason:
            log.warning("link from %s refused: %s", context.peer(), reason)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
        link = self.state.links.attach(hello.hello.agent_id)
        log.info("agent %s linked from %s", link.agent_id, context.peer())
        reader = threading.Thread(target=_pump, args=(request_iterator, link), daemon=True,
                                  name=f"link-{link.agent_id}")
        reader.start()
        context.add_callback(link.close)
        try:
            yield from link.outgoing()
        finally:
            self.state.links.detach(link)
            log.info("agent %s link closed", link.agent_id)


def _pump(request_iterator, link: links.AgentLink) -> None:
    try:
        for msg in request_iterator:
            link.deliver(msg)
    except grpc.RpcError:
        pass
    finally:
        link.close()


def _legacy_service(request: mesh_pb2.RegisterRequest) -> list[mesh_pb2.ServiceInfo]:
    """Agents of the first protocol version name one service in component_name only."""
    name = request.component_name  # deprecated field, read for compatibility
    if not name:
        return []
    return [mesh_pb2.ServiceInfo(component_name=name, node_name=request.node_name,
                                 provenance=mesh_pb2.SERVICE_PROVENANCE_EXPLICIT)]


class ColonyServicer(colony_pb2_grpc.ColonyServicer):
    def __init__(self, state: ColonyState) -> None:
        self.state = state
        self.fanout = operations.FanOut(registry=state.registry, audit=state.audit,
                                        links=state.links, authorize=state.authorize)

    def _who(self, context) -> auth.Identity:
        return auth.operator(context, self.state.tokens)

    def WhoAmI(self, request, context):
        who = self._who(context)
        return colony_pb2.WhoAmIResponse(identity=who.name, groups=list(who.groups))

    def ListAgents(self, request, context):
        self._who(context)
        now, counts = time.time(), self.state.registry.service_counts()
        connected = self.state.links.connected()
        return colony_pb2.ListAgentsResponse(agents=[
            colony_pb2.AgentRecord(
                agent_id=row.agent_id, version=row.version, runtime=row.runtime,
                node_name=row.node_name, node_labels=row.node_labels, labels=row.labels,
                last_seen=row.last_seen, registered_at=row.registered_at,
                connected=row.agent_id in connected, service_count=counts.get(row.agent_id, 0),
                status=registry.agent_status(
                    last_seen=row.last_seen, now=now, degraded_after=self.state.degraded_after,
                    unhealthy_after=self.state.unhealthy_after),
            )
            for row in self.state.registry.agents(node=request.node)
        ])

    def ListServices(self, request, context):
        self._who(context)
        flt = registry.ServiceFilter(
            name=request.name, labels=dict(request.labels), provenance=request.provenance,
            agent=request.agent, node=request.node, namespace=request.namespace,
        )
        return colony_pb2.ListServicesResponse(services=[
            colony_pb2.ServiceRecord(agent_id=agent_id, service=svc)
            for agent_id, svc in self.state.registry.services(flt)
        ])

    def _resolve(self, targeting, context) -> list[colony_pb2.Target]:
        agents = [routing.AgentView(a.agent_id, a.node_name, a.labels)
                  for a in self.state.registry.agents()]
        try:
            return routing.resolve(targeting, agents=agents,
                                   services=self.state.registry.services())
        except routing.NoTargets as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise

    def ResolveTargets(self, request, context):
        self._who(context)
        return colony_pb2.ResolveResponse(targets=self._resolve(request, context))

    def Operate(self, request, context):
        who = self._who(context)
        if not request.exec.argv:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exec.argv is empty: give a command")
        targets = self._resolve(request.targeting, context)
        yield from self.fanout.run(identity=who, request=request, targets=targets)

    def Shell(self, request_iterator, context):
        who = self._who(context)
        try:
            first = next(request_iterator)
        except StopIteration:
            return
        if first.input.WhichOneof("input") != "start":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first shell frame must start it")
        targets = self._resolve(first.targeting, context)
        if len(targets) != 1:
            names = ", ".join(f"{t.agent_id}:{t.pod or '-'}/{t.container or '-'}" for t in targets)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"a shell needs exactly one target; {len(targets)} matched: {names}")
        target = targets[0]
        verdict = self.state.authorize(who, "shell", target)
        if not verdict.allowed:
            self.state.audit.refused(requester=who.name, verb="shell", target=target.agent_id,
                                     command="", reason=verdict.reason, rule=verdict.rule)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"shell refused: {verdict.reason}")
        link = self.state.links.get(target.agent_id)
        if link is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"agent {target.agent_id} is not connected")
        agent = self.state.registry.get_agent(target.agent_id)
        yield from shell_mod.relay(
            identity=who, target=target, first=first, frames=request_iterator, link=link,
            audit=self.state.audit, rule=verdict.rule, is_active=context.is_active,
            runtime=agent_pb2.RuntimeMode.Name(agent.runtime.mode) if agent else "unknown",
        )

    def ListAudit(self, request, context):
        self._who(context)
        rows = self.state.audit.list(
            kind=request.kind or None, requester=request.requester or None,
            agent_id=request.agent_id or None, op_id=request.op_id or None,
            since=request.since or None, limit=request.limit or 1000,
        )
        return colony_pb2.ListAuditResponse(records=[_audit_record(r) for r in rows])

    def VerifyAudit(self, request, context):
        self._who(context)
        result = self.state.audit.verify()
        return colony_pb2.VerifyAuditResponse(
            ok=result.ok, checked=result.checked, first_bad_id=result.first_bad_id or 0,
            reason=result.reason,
        )


_AUDIT_META = ("id", "ts", "kind", "prev_hash", "hash")


def _audit_record(row: dict) -> colony_pb2.AuditRecord:
    fields = {k: v for k, v in row.items() if k not in _AUDIT_META}
    return colony_pb2.AuditRecord(
        id=row["id"], ts=row["ts"], kind=row["kind"], prev_hash=row["prev_hash"],
        hash=row["hash"], fields_json=json.dumps(fields, sort_keys=True, default=str),
    )


class ColonyServer:
    """A running colony: start() binds and serves in background threads; stop() ends it."""

    def __init__(self, state: ColonyState, *, listen: str, max_workers: int = 512) -> None:
        self.state, self.listen = state, listen
        self._server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="grpc"),
            options=[("grpc.keepalive_time_ms", 20000),
                     ("grpc.http2.min_ping_interval_without_data_ms", 10000),
                     ("grpc.keepalive_permit_without_calls", 1)],
        )
        mesh_pb2_grpc.add_MeshServicer_to_server(MeshServicer(state), self._server)
        colony_pb2_grpc.add_ColonyServicer_to_server(ColonyServicer(state), self._server)
        creds = grpc.ssl_server_credentials(
            [(state.files.server_key.read_bytes(), state.files.server_cert.read_bytes())],
            root_certificates=state.files.ca_cert.read_bytes(), require_client_auth=False,
        )
        self.port = self._server.add_secure_port(listen, creds)
        if not self.port:
            raise OSError(f"cannot listen on {listen}: address in use or not available")

    def start(self) -> ColonyServer:
        self._server.start()
        log.info("colony %s listening on %s (TLS)", self.state.colony_id, self.listen)
        return self

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float = 2.0) -> None:
        self.state.links.close_all()
        self._server.stop(grace).wait()
        self.state.close()
