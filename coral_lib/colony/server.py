"""The colony's gRPC server over TLS: the Mesh service for agents, Colony for operators."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import pathlib
import shlex
import threading
import time

import grpc

from coral_lib import identity, logs, metrics, validate
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2, colony_pb2_grpc
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc
from coral_lib.colony import (
    agentauth,
    auth,
    checkpoints,
    discovery_record,
    enrollment,
    guard,
    instrument,
    lifecycle,
    links,
    operations,
    paging,
    pki,
    policy,
    registry,
    routing,
    secrets,
    service_page,
    tap_relay,
    verbs,
)
from coral_lib.colony import approvals as approvals_mod
from coral_lib.colony import audit as audit_mod
from coral_lib.colony import shell as shell_mod
from coral_lib.colony import targets as targets_mod

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ColonyState:
    """Everything the servicers share. Built by open_state(), closed by close()."""

    colony_id: str
    files: pki.ColonyFiles
    registry: registry.Registry
    audit: audit_mod.AuditLog
    links: links.Links
    tokens: auth.TokenBook
    approvals: approvals_mod.ApprovalStore
    gate: policy.Gate
    enrollment: enrollment.Enrollment
    agent_auth: agentauth.AgentAuth
    limits: guard.Limits = dataclasses.field(default_factory=guard.Limits)
    # Failed logins per peer address, operators and agents apart (so a broken agent does
    # not lock out an operator on the same host). Built by open_state.
    peers: guard.PeerGuard | None = None
    agent_peers: guard.PeerGuard | None = None
    heartbeat_interval: float = 10.0
    degraded_after: float = 30.0
    unhealthy_after: float = 90.0
    agent_expiry: float = lifecycle.DEFAULT_EXPIRY
    metrics: metrics.Colony = dataclasses.field(default_factory=metrics.Colony)
    checkpoint_dir: pathlib.Path | None = None  # the audit sink /readyz checks
    replication: object | None = None  # replication.Replication (replicas on PostgreSQL)

    def close(self) -> None:
        if self.replication is not None:
            self.replication.close()
        self.links.close_all()
        self.registry.close()
        self.approvals.close()
        self.enrollment.close()
        self.audit.close()


def open_state(*, data_dir: str, colony_id: str = "", tokens_file: str = "",
               heartbeat_interval: float = 10.0, degraded_after: float = 30.0,
               unhealthy_after: float = 90.0, settings: policy.Settings | None = None,
               audit_options: checkpoints.Options | None = None,
               limits: guard.Limits | None = None,
               agent_cert_ttl: float = enrollment.DEFAULT_TTL,
               agent_service_account: str = enrollment.DEFAULT_AGENT_SERVICE_ACCOUNT,
               reviewer: enrollment.Reviewer | None = None,
               agent_expiry: float = lifecycle.DEFAULT_EXPIRY,
               database: str = "") -> ColonyState:
    """Open the data directory's stores; `settings` None is the embedded default policy;
    `audit_options` None keeps audit keys in the data dir, checkpoints beside it;
    `limits` None is guard.Limits() (the documented defaults). `reviewer` (an object with
    review(token) -> PodClaims, e.g. tokenreview.TokenReviewer) enables Kubernetes agents'
    bootstrap; None refuses it with a clear error. `database` (a dsn.Dsn) keeps every
    store in that PostgreSQL database instead of the data directory's SQLite files."""
    files = pki.ensure(data_dir)
    if (files.data_dir / "colony.secret").exists():
        log.warning("%s is no longer used (agents hold their own certificates): delete it",
                    files.data_dir / "colony.secret")
    colony_id = colony_id or files.colony_id.read_text().strip()
    audit_options = audit_options or checkpoints.Options()
    reg = registry.Registry(database or files.registry_db)
    audit = audit_mod.AuditLog(database or files.audit_db,
                               key_file=audit_options.audit_key(files.data_dir),
                               checkpoints=audit_options.writer(files.data_dir, colony_id))
    approvals = approvals_mod.ApprovalStore(database or files.approvals_db)
    gate = policy.Gate(settings or policy.load_settings(None), audit=audit,
                       approvals=approvals, registry=reg)
    enroll = enrollment.Enrollment(files, colony_id=colony_id, audit=audit,
                                   cert_ttl=agent_cert_ttl, reviewer=reviewer,
                                   agent_service_account=agent_service_account,
                                   database=database)
    verifier = agentauth.Verifier(ca_cert=enroll.ca_certificate, colony_id=colony_id,
                                  revoked_at=enroll.revoked_at)
    state = ColonyState(
        colony_id=colony_id, files=files, registry=reg, audit=audit, links=links.Links(),
        tokens=auth.TokenBook(tokens_file or files.tokens), approvals=approvals, gate=gate,
        enrollment=enroll, agent_auth=agentauth.AgentAuth(verifier),
        heartbeat_interval=heartbeat_interval, degraded_after=degraded_after,
        unhealthy_after=unhealthy_after, limits=limits or guard.Limits(),
        agent_expiry=agent_expiry,
        checkpoint_dir=audit_options.sink_dir(files.data_dir),
    )
    instrument.attach(state, state.metrics)
    state.peers = guard.PeerGuard(state.limits, record=_login_recorder(state))
    state.agent_peers = guard.PeerGuard(state.limits, record=_login_recorder(state))
    state.agent_auth.on_refused = _agent_refusal_counter(state.agent_peers)
    if files.admin_token.exists():  # tokens.json holds hashes; redact the one we know
        secrets.register(files.admin_token.read_text().strip())
    # Replicas share the log: each closes only its own operations (replicas.Membership).
    interrupted = 0 if database else state.audit.mark_interrupted()
    if interrupted:
        log.warning("audit: %d operations were cut off by the last stop; marked interrupted",
                    interrupted)
    return state


def _agent_refusal_counter(peers: guard.PeerGuard):
    """AgentAuth's on_refused hook: a refused agent call counts as a failed login."""
    def count(peer: str, method: str, reason: str) -> None:
        peers.failed(peer, what=method.rsplit("/", 1)[-1].lower(), reason=reason)
    return count


def _login_recorder(state: ColonyState):
    """Audit a failed login or refused pre-auth request (PeerGuard bounds how often)."""
    def record(host: str, what: str, reason: str, failures: int) -> None:
        state.audit.refused(requester=f"peer:{host}", verb=what, target=state.colony_id,
                            command="", reason=f"{reason} ({failures} from {host} this window)",
                            rule="authentication")
    return record


class MeshServicer(mesh_pb2_grpc.MeshServicer):
    """Every call but Join arrives verified by agentauth.AgentAuth; who the agent is comes
    from its certificate, never from the request's agent_id/colony_id/colony_secret."""

    def __init__(self, state: ColonyState) -> None:
        self.state = state

    def Join(self, request, context):
        # Only join credentials can be guessed: a peer with too many failed logins is
        # throttled here. Calls past the AgentAuth interceptor carry a verified proof of a
        # colony-issued key, which no guessing produces, so agents sharing an address
        # (NAT, one node) are never locked out by a broken neighbour.
        guard.throttled(context, self.state.agent_peers)
        if len(request.join_token) > 256 or len(request.service_account_token) > 16384 or \
                len(request.agent_id_hint) > identity.MAX_ID:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "join request too large: join_token <= 256, service_account_token "
                          f"<= 16384, agent_id_hint <= {identity.MAX_ID} characters")
        try:
            issued = self.state.enrollment.join(
                join_token=request.join_token, service_account_token=request.service_account_token,
                csr_der=request.csr_der, hint=request.agent_id_hint, peer=context.peer())
        except enrollment.Refused as exc:
            log.warning("join from %s refused: %s", validate.printable(context.peer()), exc,
                        extra=logs.fields(outcome="refused"))
            self.state.agent_peers.failed(context.peer(), what="join", reason=str(exc))
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"join not recorded: {exc}")
        log.info("agent %s joined from %s", issued.who.agent_id, context.peer(),
                 extra=logs.fields(agent=issued.who.agent_id, outcome="joined"))
        return mesh_pb2.JoinResponse(
            certificate_pem=issued.certificate_pem.decode(), ca_pem=self.state.enrollment.ca_pem
            .decode(), agent_id=issued.who.agent_id, not_after=issued.not_after)

    def Renew(self, request, context):
        who = self.state.agent_auth.identity(context)
        try:
            issued = self.state.enrollment.renew(who, request.csr_der)
        except enrollment.Refused as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"renewal not recorded: {exc}")
        link = self.state.links.get(who.agent_id)
        if link is not None:  # the link stays up on the renewed certificate
            link.expires_at = max(link.expires_at, issued.not_after)
        return mesh_pb2.RenewResponse(certificate_pem=issued.certificate_pem.decode(),
                                      not_after=issued.not_after)

    def _out_of_scope(self, who: identity.AgentIdentity, services, host_node: str) -> str:
        """'' when every service is within the agent's identity, else the first reason."""
        if who.kind == "host" and host_node and \
                self.state.registry.get_agent(f"node-{host_node}") is not None:
            return (f"host agent {who.agent_id} may not claim node {host_node[:80]!r}: "
                    "a Kubernetes node agent holds it")
        if who.kind == "node" and host_node not in ("", who.node):
            return f"node agent {who.agent_id} may not register as node {host_node[:80]!r}"
        for svc in services:
            reason = identity.scope_violation(
                who, node_name=svc.node_name, namespace=svc.namespace, pod=svc.pod_name,
                host_node=host_node)
            if reason:
                return reason
        return ""

    def _refused(self, context, what: str, agent_id: str, reason: str) -> None:
        """Log (escaped, clipped) and count one refused agent call from this peer."""
        shown = validate.clip(validate.printable(agent_id), 80)
        log.warning("%s of agent '%s' from %s refused: %s", what, shown,
                    validate.printable(context.peer()), validate.printable(reason),
                    extra=logs.fields(agent=shown, outcome="refused"))
        self.state.agent_peers.failed(context.peer(), what=what,
                                      reason=f"agent '{shown}': {reason}")

    def _checked(self, agent_id: str, services: list) -> tuple[list, list[str]]:
        """Services with acceptable names; the others are skipped and logged (escaped)."""
        services, skipped = guard.split_services(services)
        if skipped:
            log.warning("agent %s: %d services skipped: %s", agent_id, len(skipped),
                        validate.clip("; ".join(skipped), 1000))
        return services, [validate.clip(s) for s in skipped[:10]]

    def _refuse_scope(self, who: identity.AgentIdentity, verb: str, reason: str) -> None:
        log.warning("%s of agent %s refused: %s", verb, who.agent_id, validate.printable(reason),
                    extra=logs.fields(agent=who.agent_id, outcome="refused"))
        self.state.audit.refused(requester=f"agent:{who.agent_id}", verb=verb,
                                 target=self.state.colony_id, command="",
                                 reason=validate.clip(reason, 500), rule="agent-scope")

    def Register(self, request, context):
        who = self.state.agent_auth.identity(context)
        node_name = request.node_name or (who.node if who.kind == "node" else "")
        reason = guard.registration_problem(
            agent_id=who.agent_id, node_name=node_name, labels=request.labels,
            node_labels=request.node_labels)
        if reason:
            self._refused(context, "registration", who.agent_id, reason)
            return mesh_pb2.RegisterResponse(accepted=False, reason=reason)
        services, skipped = self._checked(who.agent_id,
                                          list(request.services) or _legacy_service(request))
        reason = self._out_of_scope(who, services, node_name)
        with _storage_errors(context):
            if reason:
                self._refuse_scope(who, "register", reason)
                return mesh_pb2.RegisterResponse(accepted=False, reason=reason)
            reply = self._register(who.agent_id, request, services, node_name, who.kind)
        reply.reason = "; ".join(skipped)
        return reply

    def _register(self, agent_id: str, request, services, node_name: str, kind: str):
        now = time.time()
        # One registry transaction (agent row, services, pods; only differences written),
        # then the discovery records of what changed. Only a node agent lists pods (a
        # sidecar's own pod is in its services).
        _, diff = self.state.registry.register(registry.AgentRow(
            agent_id=agent_id, version=request.version, runtime=request.runtime,
            node_name=node_name, node_labels=dict(request.node_labels),
            labels=dict(request.labels), registered_at=now, last_seen=now,
        ), services, pods=guard.split_pods(request.pods) if kind == "node" else [])
        self._audit_diff(agent_id, diff, services=services, runtime=request.runtime)
        log.info("agent %s registered (%d services)", agent_id, len(services),
                 extra=logs.fields(agent=agent_id, outcome="registered"))
        return mesh_pb2.RegisterResponse(
            accepted=True, agent_id=agent_id, colony_id=self.state.colony_id,
            heartbeat_interval_seconds=self.state.heartbeat_interval,
        )

    def Heartbeat(self, request, context):
        who = self.state.agent_auth.identity(context)
        with _storage_errors(context):
            agent = self.state.registry.get_agent(who.agent_id)
            if agent is None or not self.state.registry.touch(who.agent_id):
                return mesh_pb2.HeartbeatResponse(ok=False, reregister=True,
                                                  reason="agent not registered")
            if request.services_changed:
                services, _ = self._checked(who.agent_id, list(request.services))
                reason = self._out_of_scope(who, services, agent.node_name)
                if reason:
                    self._refuse_scope(who, "heartbeat", reason)
                    return mesh_pb2.HeartbeatResponse(ok=False, reason=reason)
                self._store_services(who.agent_id, services, runtime=agent.runtime)
            if request.pods_changed and who.kind == "node":
                self.state.registry.replace_pods(who.agent_id, guard.split_pods(request.pods))
            if request.health:
                self.state.registry.set_health(who.agent_id, guard.split_health(request.health))
        return mesh_pb2.HeartbeatResponse(ok=True)

    def Deregister(self, request, context):
        """The agent is stopping for good (SIGTERM of a DaemonSet or sidecar pod): it and
        its services leave the registry, with an `agent` audit record."""
        who = self.state.agent_auth.identity(context)
        with _storage_errors(context):
            count = lifecycle.remove(
                registry=self.state.registry, audit=self.state.audit, links=self.state.links,
                agent_id=who.agent_id, event="deregistered", by=f"agent:{who.agent_id}",
                detail={"reason": validate.clip(validate.printable(request.reason), 200)})
        return mesh_pb2.DeregisterResponse(removed=count is not None, services=count or 0)

    def _store_services(self, agent_id: str, services: list[mesh_pb2.ServiceInfo], *,
                        runtime: agent_pb2.RuntimeContext) -> None:
        """Store the set; audit what was added, removed, and changed (overridden, or any
        other field change of a service that stays registered), with the agent's runtime:
        one record for the whole change (colony.discovery_record), none when unchanged."""
        self._audit_diff(agent_id, self.state.registry.replace_services(agent_id, services),
                         services=services, runtime=runtime)

    def _audit_diff(self, agent_id: str, diff: registry.ServiceDiff, *,
                    services: list[mesh_pb2.ServiceInfo],
                    runtime: agent_pb2.RuntimeContext) -> None:
        fields = discovery_record.fields(
            agent_id=agent_id, added=diff.added, removed=diff.removed, changed=diff.changed,
            now=services, runtime=agent_pb2.RuntimeMode.Name(runtime.mode))
        if fields is not None:
            self.state.audit.discovery(fields)

    def Link(self, request_iterator, context):
        # Identity from the verified metadata: nothing of the stream is read before this.
        who, not_after = self.state.agent_auth.caller(context)
        try:
            link = self.state.links.attach(who.agent_id, expires_at=not_after)
        except links.AlreadyLinked as exc:
            log.warning("second link for agent %s from %s refused", who.agent_id,
                        validate.printable(context.peer()))
            with contextlib.suppress(audit_mod.AuditError):
                self.state.audit.refused(
                    requester=f"agent:{who.agent_id}", verb="link", target=self.state.colony_id,
                    command="", reason=f"{exc} (from {validate.clip(context.peer(), 100)})",
                    rule="agent-link")
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        log.info("agent %s linked from %s", link.agent_id, validate.printable(context.peer()),
                 extra=logs.fields(agent=link.agent_id, outcome="linked"))
        reader = threading.Thread(target=_pump, args=(request_iterator, link), daemon=True,
                                  name=f"link-{link.agent_id}")
        reader.start()
        context.add_callback(link.close)
        context.send_initial_metadata(())  # tells the agent its link is up (its /readyz)
        try:
            yield from link.outgoing()
        finally:
            self.state.links.detach(link)
            log.info("agent %s link closed", link.agent_id,
                     extra=logs.fields(agent=link.agent_id, outcome="closed"))


@contextlib.contextmanager
def _storage_errors(context):
    """A registry or audit write that failed (disk full, read-only) answers UNAVAILABLE with
    the cause; the agent retries later and the colony keeps serving."""
    try:
        yield
    except (registry.RegistryError, audit_mod.AuditError) as exc:
        log.error("%s", exc)
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))


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
        self.gate = state.gate
        replica = state.replication
        self.fanout = operations.FanOut(registry=state.registry, audit=state.audit,
                                        links=state.links,
                                        forward=replica.forward if replica else None,
                                        replica=replica.name if replica else "")
        self.streams = tap_relay.Relay(registry=state.registry, audit=state.audit,
                                       links=state.links, gate=state.gate,
                                       forward=replica.forward.open if replica else None,
                                       replica=replica.name if replica else "")

    def _who(self, context) -> auth.Identity:
        return auth.operator(context, self.state.tokens, self.state.peers)

    def _reader(self, context, what: str, rpc: str) -> auth.Identity:
        """The caller, when the policy grants the RPC's colony-wide verb (read, or admin for
        agent administration); else abort PERMISSION_DENIED."""
        who = self._who(context)
        try:
            self.gate.check_read(who, what, verb=verbs.colony(rpc))
        except policy.Refused as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"refused: {exc}")
        return who

    def WhoAmI(self, request, context):
        who = self._who(context)
        return colony_pb2.WhoAmIResponse(identity=who.name, groups=list(who.groups))

    def ListAgents(self, request, context):
        self._reader(context, "agents", "ListAgents")
        now, counts = time.time(), self.state.registry.service_counts()
        connected = self.state.links.connected()
        if self.state.replication is not None:  # links other replicas hold
            connected |= self.state.replication.membership.linked_anywhere()
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
        self._reader(context, "services", "ListServices")
        flt = registry.ServiceFilter(
            name=request.name, labels=dict(request.labels), provenance=request.provenance,
            agent=request.agent, node=request.node, namespace=request.namespace,
        )
        try:
            limit = paging.page_limit(request.page_size)
            after = paging.decode(request.page_token)
        except paging.BadPage as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        rows = self.state.registry.service_rows(flt, after=after, limit=limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        if more and not request.page_size:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, paging.too_many(len(rows)))
        keys = [(agent_id, key) for agent_id, key, _ in rows]
        return service_page.response(rows, self.state.registry.health_of(keys),
                                     paging.encode(*keys[-1]) if more else "")

    def _resolve(self, targeting, context, who: auth.Identity) -> list[colony_pb2.Target]:
        """The targets; when there are none, only a caller who may list the registry is
        told the close matches (others could enumerate other tenants' pods with them)."""
        _check_request(context, guard.targeting_problem(targeting))
        agents = [routing.AgentView(
            a.agent_id, a.node_name, a.labels, a.node_labels,
            lists_pods=a.runtime.mode == agent_pb2.RUNTIME_MODE_K8S_DAEMONSET)
            for a in self.state.registry.agents()]
        try:
            return routing.resolve(targeting, agents=agents,
                                   services=self.state.registry.services()
                                   if routing.needs_services(targeting) else [],
                                   pods=self.state.registry.pods())
        except routing.NoTargets as exc:
            may_list = self.gate.grants(who, verbs.colony("ListServices"))
            departed = lifecycle.departed_message(
                targeting.agent, self.state.registry.departed(targeting.agent)
                if targeting.agent and may_list else None)
            context.abort(grpc.StatusCode.NOT_FOUND,
                          departed or (str(exc) if may_list else exc.message))
            raise

    def ResolveTargets(self, request, context):
        who = self._reader(context, "targets", "ResolveTargets")
        return colony_pb2.ResolveResponse(targets=self._resolve(request, context, who))

    def _admit(self, context, wrap, **request):
        """Run the gate; pending approvals go out through `wrap`; refusals abort the RPC."""
        try:
            return (yield from _translated(
                self.gate.admit(is_active=context.is_active, **request), wrap))
        except policy.Refused as exc:
            _abort(context, exc)
        except approvals_mod.ApprovalError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), f"not run: {exc}")
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"not run: {exc}")

    def _fixed(self, context, who: auth.Identity, rpc: str, *, command: str,
               requested_verb: str = "", raw: tuple[str, agent_pb2.ExecTarget] | None = None
               ) -> str:
        """The verb of `rpc`, from the one table in verbs.py. A request that names another
        verb, or a raw container id, is refused (INVALID_ARGUMENT naming the field) and
        audited; see colony/verbs.py and colony/targets.py."""
        verb = verbs.colony(rpc)
        reason = verbs.check_request_verb(f"/{verbs.COLONY_SERVICE}/{rpc}", requested_verb)
        rule = "verb-fixed-by-rpc"
        if not reason and raw is not None:
            reason, rule = targets_mod.raw_container_id(*raw), targets_mod.RAW_TARGET_RULE
        if reason:
            with contextlib.suppress(audit_mod.AuditError):
                self.state.audit.refused(requester=who.name, verb=verb, target="",
                                         command=command, reason=reason, rule=rule)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)
        return verb

    def Operate(self, request, context):
        who = self._who(context)
        if not request.exec.argv:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exec.argv is empty: give a command")
        _check_request(context, guard.exec_problem(request.exec, self.state.limits),
                       request.approval_id)
        request.exec.max_output_bytes = guard.capped_output(request.exec.max_output_bytes,
                                                            self.state.limits)
        command = shlex.join(request.exec.argv)
        verb = self._fixed(context, who, "Operate", command=command,
                           requested_verb=request.verb, raw=("exec.target", request.exec.target))
        targets = self._resolve(request.targeting, context, who)
        admission = yield from self._admit(
            context, lambda p: colony_pb2.OperateEvent(pending=p), identity=who,
            verb=verb, targets=targets, command=command,
            approval_id=request.approval_id, no_wait=True)  # the client waits, not a thread
        if admission is not None:
            yield from self.fanout.run(identity=who, request=request, targets=targets,
                                       admission=admission, is_active=context.is_active)

    def Shell(self, request_iterator, context):
        who = self._who(context)
        try:
            first = next(request_iterator)
        except StopIteration:
            return
        if first.input.WhichOneof("input") != "start":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first shell frame must start it")
        _check_request(context, guard.size_problem(first, "the shell start", self.state.limits))
        command = shlex.join(first.input.start.argv) or "/bin/sh"
        verb = self._fixed(context, who, "Shell", command=command,
                           raw=("input.start.target", first.input.start.target))
        targets = self._resolve(first.targeting, context, who)
        if len(targets) != 1:
            names = ", ".join(f"{t.agent_id}:{t.pod or '-'}/{t.container or '-'}" for t in targets)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"a shell needs exactly one target; {len(targets)} matched: {names}")
        target = targets[0]
        admission = yield from self._admit(
            context, _pending_text, identity=who, verb=verb, targets=targets, command=command)
        op = links.open_for(self.state.links, target.agent_id, forward=self.streams.forward)
        if op is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"agent {target.agent_id} is not connected")
        agent = self.state.registry.get_agent(target.agent_id)
        yield from shell_mod.relay(
            identity=who, target=target, first=first, op=op, replica=self.streams.replica,
            frames=_bounded_frames(request_iterator, self.state.limits),
            audit=self.state.audit, rule=admission.allowed[0][1], is_active=context.is_active,
            approval_id=admission.approval_id,
            runtime=agent_pb2.RuntimeMode.Name(agent.runtime.mode) if agent else "unknown",
            verb=verb, provenance=targets_mod.provenance(self.state.registry, target),
        )

    def Tap(self, request, context):
        who = self._who(context)
        _check_request(context, guard.size_problem(request.tap, "the tap request",
                                                   self.state.limits), request.approval_id)
        verb = self._fixed(context, who, "Tap", command=tap_relay.tap_command(request.tap),
                           raw=("tap.target", request.tap.target))
        targets = self._resolve(request.targeting, context, who)
        admission = yield from self._admit(
            context, lambda p: colony_pb2.TapOperateEvent(pending=p), identity=who, verb=verb,
            targets=targets, command=tap_relay.tap_command(request.tap),
            approval_id=request.approval_id, no_wait=True)
        if admission is not None:
            yield from self.streams.tap(identity=who, request=request, targets=targets,
                                        admission=admission, is_active=context.is_active)

    def Trace(self, request, context):
        who = self._who(context)
        _check_request(context, guard.size_problem(request.trace, "the trace request",
                                                   self.state.limits), request.approval_id)
        verb = self._fixed(context, who, "Trace", command=tap_relay.trace_command(request.trace),
                           raw=("trace.target", request.trace.target))
        targets = self._resolve(request.targeting, context, who)
        admission = yield from self._admit(
            context, lambda p: colony_pb2.TraceOperateEvent(pending=p), identity=who,
            verb=verb, targets=targets, command=tap_relay.trace_command(request.trace),
            approval_id=request.approval_id, no_wait=True)
        if admission is not None:
            yield from self.streams.trace(identity=who, request=request, targets=targets,
                                          admission=admission, is_active=context.is_active)

    def ListAudit(self, request, context):
        self._reader(context, "audit", "ListAudit")
        try:
            rows = self.state.audit.list(
                kind=request.kind or None, requester=request.requester or None,
                agent_id=request.agent_id or None, op_id=request.op_id or None,
                since=request.since or None, limit=request.limit or 1000,
                after_id=request.after_id or None, tail=request.tail,
            )
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return colony_pb2.ListAuditResponse(records=[_audit_record(r) for r in rows])

    def VerifyAudit(self, request, context):
        self._reader(context, "audit", "VerifyAudit")
        try:
            result = self.state.audit.verify()
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return colony_pb2.VerifyAuditResponse(
            ok=result.ok, checked=result.checked, first_bad_id=result.first_bad_id or 0,
            reason=result.reason,
        )

    def Decide(self, request, context):
        who = self._who(context)
        _check_request(context, "", request.approval_id, required=True)
        try:
            record = self.gate.decide_approval(who, request.approval_id, approve=request.approve,
                                               verb=verbs.colony("Decide"))
        except policy.Refused as exc:
            _abort(context, exc)
        except approvals_mod.ApprovalError as exc:
            _abort_approval(context, exc)
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"decision not recorded: {exc}")
        return policy.approval_record(record)

    def GetApproval(self, request, context):
        """Readers see any approval; a requester sees their own (clients poll it)."""
        who = self._who(context)
        _check_request(context, "", request.approval_id, required=True)
        try:
            record = self.state.approvals.get(request.approval_id)
        except approvals_mod.ApprovalError as exc:
            _abort_approval(context, exc)
        if record.requester != who.name:
            self._reader(context, "approvals", "GetApproval")
        return policy.approval_record(record)

    def ListApprovals(self, request, context):
        self._reader(context, "approvals", "ListApprovals")
        return colony_pb2.ListApprovalsResponse(
            approvals=[policy.approval_record(a) for a in self.state.approvals.pending()])

    def RevokeAgent(self, request, context):
        who = self._reader(context, f"revoke {request.agent_id[:100]}", "RevokeAgent")
        try:
            when = self.state.enrollment.revoke(request.agent_id, by=who.name)
        except identity.IdentityError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except enrollment.Refused as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"revocation not recorded: {exc}")
        link = self.state.links.get(request.agent_id)
        if link is not None:
            link.close()  # its Link RPC ends; every later call is refused by AgentAuth
        log.warning("agent %s revoked by %s", request.agent_id, who.name)
        return colony_pb2.RevokeAgentResponse(agent_id=request.agent_id, revoked_at=when,
                                              link_closed=link is not None)

    def CreateJoinToken(self, request, context):
        who = self._reader(context, f"join-token {request.agent_id[:100]}", "CreateJoinToken")
        try:
            token, expires_at = self.state.enrollment.create_token(
                request.agent_id, ttl=request.ttl_seconds or enrollment.DEFAULT_TOKEN_TTL,
                created_by=who.name)
        except ValueError as exc:  # IdentityError included
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except enrollment.Refused as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except audit_mod.AuditError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"join token not recorded: {exc}")
        logs.known(token)
        return colony_pb2.CreateJoinTokenResponse(token=token, agent_id=request.agent_id,
                                                  expires_at=expires_at)

    def PruneAgents(self, request, context):
        """Admin: remove agents without a link last seen longer ago than the request's
        older_than_seconds (default agentExpiry), each with an `agent` audit record."""
        older_than = request.older_than_seconds or self.state.agent_expiry
        who = self._reader(context, f"prune agents older than {older_than:g}s", "PruneAgents")
        if older_than < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"older_than_seconds {older_than:g}: expected a duration above zero")
        ids = lifecycle.stale(self.state.registry.agents(), now=time.time(),
                              older_than=older_than, connected=self.state.links.connected())
        if not request.dry_run:
            with _storage_errors(context):
                ids = [i for i in ids if lifecycle.remove(
                    registry=self.state.registry, audit=self.state.audit,
                    links=self.state.links, agent_id=i, event="pruned", by=who.name,
                    detail={"older_than": older_than}) is not None]
        return colony_pb2.PruneAgentsResponse(agent_ids=ids)


def _check_request(context, problem: str, approval_id: str = "", *,
                   required: bool = False) -> None:
    """Abort INVALID_ARGUMENT (before anything is audited) for an oversized request or a
    malformed approval id."""
    if not problem:
        try:
            validate.check_name("approval id", approval_id, field="approval_id",
                                required=required)
        except validate.InvalidName as exc:
            problem = str(exc)
    if problem:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


def _bounded_frames(frames, limits: guard.Limits):
    """Shell input frames up to limits.requestBytes each; a larger one ends the input
    (forwarding it would exceed the agent link's message size and drop the link)."""
    for frame in frames:
        problem = guard.size_problem(frame, "a shell input frame", limits)
        if problem:
            log.warning("shell input stopped: %s", problem)
            return
        yield frame


def _translated(gen, wrap):
    """Re-yield a generator's items through `wrap` and return its return value."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        yield wrap(item)


def _pending_text(pending: colony_pb2.PendingApproval) -> agent_pb2.ShellOutput:
    text = (f"coral: waiting for approval {pending.approval_id} "
            f"(coral approve {pending.approval_id})\r\n")
    return agent_pb2.ShellOutput(data=text.encode())


def _abort(context, exc: policy.Refused) -> None:
    if exc.retry_after:
        context.set_trailing_metadata((("retry-after", f"{exc.retry_after:.1f}"),))
    context.abort(getattr(grpc.StatusCode, exc.code), str(exc))


def _abort_approval(context, exc: approvals_mod.ApprovalError) -> None:
    context.abort(getattr(grpc.StatusCode, exc.code), str(exc))

_AUDIT_META = ("id", "ts", "kind", "prev_hash", "hash")


def _audit_record(row: dict) -> colony_pb2.AuditRecord:
    fields = {k: v for k, v in row.items() if k not in _AUDIT_META}
    return colony_pb2.AuditRecord(
        id=row["id"], ts=row["ts"], kind=row["kind"], prev_hash=row["prev_hash"],
        hash=row["hash"], fields_json=json.dumps(fields, sort_keys=True, default=str),
    )


# A registry listing of 100,000 services is ~12 MB; gRPC's default cap is 4 MB. What the
# colony receives is capped much lower (guard.Limits.receive_bytes), before it is parsed.
MAX_SEND = 256 << 20


class ColonyServer:
    """A running colony: start() binds and serves in background threads; stop() ends it."""

    def __init__(self, state: ColonyState, *, listen: str, max_workers: int = 0,
                 mtls_listen: str = "") -> None:
        """listen: TLS for agents and token operators. mtls_listen: a second port that
        requires a client certificate signed by the colony CA (identity = its CN); gRPC
        Python cannot ask for an optional client certificate on one port.
        max_workers: threads serving RPCs; by default one per RPC the colony admits
        (limits.concurrentRpcs), since every agent's Link holds a thread for as long as it
        is open: a smaller pool would queue heartbeats and operator calls forever behind
        links once more agents link than it has threads (created on demand, not upfront)."""
        self.state, self.listen = state, listen
        limits = state.limits
        self._stopping, self._started = threading.Event(), False
        self._server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers or limits.concurrent_rpcs,
                                                  thread_name_prefix="grpc"),
            interceptors=[instrument.Interceptor(state.metrics), state.agent_auth,
                          guard.StreamCap(limits)],
            maximum_concurrent_rpcs=limits.concurrent_rpcs,
            options=[("grpc.max_send_message_length", MAX_SEND),
                     ("grpc.max_receive_message_length", limits.receive_bytes),
                     ("grpc.keepalive_time_ms", 20000),
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
        self.mtls_port = 0
        if mtls_listen:
            mtls = grpc.ssl_server_credentials(
                [(state.files.server_key.read_bytes(), state.files.server_cert.read_bytes())],
                root_certificates=state.files.ca_cert.read_bytes(), require_client_auth=True)
            self.mtls_port = self._server.add_secure_port(mtls_listen, mtls)
            if not self.mtls_port:
                raise OSError(f"cannot listen on {mtls_listen}: address in use or not available")

    @property
    def serving(self) -> bool:
        return self._started and not self._stopping.is_set()

    def start(self) -> ColonyServer:
        self._server.start()
        self._started = True
        threading.Thread(target=self._expire_links, name="link-expiry", daemon=True).start()
        threading.Thread(target=self._expire_agents, name="agent-expiry", daemon=True).start()
        log.info("colony %s listening on %s (TLS)", self.state.colony_id, self.listen)
        return self

    def _expire_links(self) -> None:
        """A link lives as long as its agent's certificate, renewals included."""
        while not self._stopping.wait(2.0):
            for agent_id in self.state.links.close_expired(time.time()):
                log.warning("agent %s link closed: its certificate expired unrenewed", agent_id)

    def _expire_agents(self) -> None:
        """Agents unhealthy (no heartbeat, no link) longer than agentExpiry are expired."""
        expiry = self.state.agent_expiry
        while not self._stopping.wait(min(30.0, max(1.0, expiry / 10))):
            try:
                for agent_id in lifecycle.stale(
                        self.state.registry.agents(), now=time.time(), older_than=expiry,
                        connected=self.state.links.connected()):
                    lifecycle.remove(registry=self.state.registry, audit=self.state.audit,
                                     links=self.state.links, agent_id=agent_id,
                                     event="expired", by="colony",
                                     detail={"agent_expiry": expiry})
            except (registry.RegistryError, audit_mod.AuditError) as exc:
                log.error("agent expiry skipped: %s", exc)

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float = 2.0) -> None:
        self._stopping.set()
        self.state.links.close_all()
        self._server.stop(grace).wait()
        self.state.close()
