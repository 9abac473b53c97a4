"""The agent's main loop: discover, reconcile with what the colony has, heartbeat, reconnect."""

from __future__ import annotations

import logging
import os
import pathlib
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from coral_lib import addresses, convert, identity, overrides, pagecache, service
from coral_lib._proto.coral.mesh.v1 import mesh_pb2, mesh_pb2_grpc
from coral_lib.agent import credentials, health, local_server, observe
from coral_lib.agent import handlers as handlers_mod
from coral_lib.agent import session as session_mod
from coral_lib.agent import state as state_mod
from coral_lib.config import view

if TYPE_CHECKING:  # at run time cfg is a view.Section: the agent never loads pydantic
    from coral_lib import config as config_mod

log = logging.getLogger(__name__)

Discover = Callable[[], list[service.ServiceInfo]]
STOP_JOIN_TIMEOUT = 5.0  # seconds for the agent's threads to end, together, once it stops


def desired_services(candidates: list[service.ServiceInfo], cfg: config_mod.AgentConfig, *,
                     node_name: str) -> list[mesh_pb2.ServiceInfo]:
    """Candidates + config overrides + explicit services -> the set the colony should hold."""
    final = overrides.apply(candidates, rules=cfg.overrides, explicit=cfg.services,
                            node_name=node_name)
    for record in final:
        if record.provenance == service.Provenance.OVERRIDDEN:
            log.info("service %s", overrides.explain(record))
    return [convert.service_to_proto(r) for r in final]


def changed(previous: list[mesh_pb2.ServiceInfo] | None,
            current: list[mesh_pb2.ServiceInfo]) -> bool:
    """Whether the set differs from what was last sent (order does not matter)."""
    if previous is None:
        return True
    key = convert.service_key
    return sorted(previous, key=key) != sorted(current, key=key)


def colony_ca(cfg: config_mod.AgentConfig) -> bytes:
    """The colony CA certificate from colony.ca (PEM) or the file colony.caFile names."""
    if cfg.colony.ca.strip():
        return cfg.colony.ca.encode()
    if not cfg.colony.ca_file:
        raise view.ConfigError(cfg._source, "colony.caFile",
                                     "the colony CA certificate is required: set caFile, ca, "
                                     "CORAL_COLONY_CA_FILE or CORAL_COLONY_CA")
    try:
        with open(cfg.colony.ca_file, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise view.ConfigError(cfg._source, "colony.caFile",
                                     f"cannot read {cfg.colony.ca_file}: {exc.strerror}") from None


def default_state_dir() -> pathlib.Path:
    base = "/var/lib/coral" if os.geteuid() == 0 else str(pathlib.Path.home() / ".coral")
    return pathlib.Path(base) / "agent"


class Agent:
    def __init__(self, cfg: config_mod.AgentConfig, *, discover: Discover,
                 handlers: handlers_mod.Handlers, node_name: str = "",
                 state_dir: pathlib.Path | None = None) -> None:
        self.cfg, self.discover, self.handlers = cfg, discover, handlers
        self.node_name = node_name or socket.gethostname()
        self.stop = threading.Event()
        self.wake = threading.Event()  # a discovery source saw a change: send it now
        self.registered = threading.Event()
        self.state_dir = state_dir or default_state_dir()
        self.state_path = self.state_dir / f"{cfg.agent.id}.json"
        self.socket_path: pathlib.Path | None = None  # serve the local Agent API when set
        self._last_sent: list[mesh_pb2.ServiceInfo] | None = None
        self._pods_sent: list[mesh_pb2.PodRef] | None = None
        # A sidecar leaves the registry when stopped (SIGTERM: its pod is going away); a
        # DaemonSet agent when its node is (NodeAgent.leaving). A host agent stays
        # registered through restarts; agentExpiry removes one that never comes back.
        self.deregister_on_stop = False
        self.recorder: observe.Recorder = observe.NULL  # metrics, with --metrics-listen
        self.readiness = observe.Health(
            registered=self.registered, stopping=self.stop,
            fresh_for=max(observe.MIN_FRESH, 3 * cfg.discovery.host.poll_interval))
        self.prober = health.Prober(lambda: list(self._last_sent or []),
                                    netns_of=self.service_netns)

    def service_netns(self, svc: mesh_pb2.ServiceInfo) -> str:
        """Where a health probe of `svc` runs: its process's network namespace when known
        (a sidecar's pod), else the agent's own (host mode)."""
        return health.pid_netns(svc)

    def pods(self) -> list[mesh_pb2.PodRef] | None:
        """The pods this agent sees (a DaemonSet agent's node); None: it lists none."""
        return None

    def node_labels(self) -> dict[str, str]:
        """The labels of the node the agent runs on, when it can read them."""
        return {}

    def poll_interval(self) -> float:
        """How often discovery runs between heartbeats (discovery.host.pollInterval)."""
        return self.cfg.discovery.host.poll_interval

    def leaving(self) -> bool:
        """Asked when the agent stops: whether it leaves the colony's registry for good."""
        return self.deregister_on_stop

    def current(self) -> list[mesh_pb2.ServiceInfo]:
        return desired_services(self.discover(), self.cfg, node_name=self.node_name)

    def discovery_complete(self) -> bool:
        """Whether current() reflects a real discovery (a node agent: its pods listed)."""
        return True

    def _discover_now(self) -> list[mesh_pb2.ServiceInfo]:
        """current(), timed and counted for /metrics and /readyz."""
        started = time.monotonic()
        services = self.current()
        if self.discovery_complete():
            self.readiness.discovered_at = time.monotonic()
            self.recorder.discovered(self.readiness.discovered_at - started,
                                     observe.provenances(services))
        return services

    def run(self) -> None:
        ca_pem = colony_ca(self.cfg)
        holder = credentials.Holder(self.state_dir, self.cfg.agent.id, ca_pem=ca_pem)
        chan = credentials.channel(self.cfg.colony.address, ca_pem=ca_pem, holder=holder)
        stub = mesh_pb2_grpc.MeshStub(chan)
        enroller = credentials.Enroller(
            stub, holder, name=self.cfg.agent.id,
            join_token=lambda: view.join_token(self.cfg),
            service_account_token=lambda: view.service_account_token(self.cfg))
        local = local_server.serve(self.handlers, self.socket_path) if self.socket_path else None
        threads: list[threading.Thread] = []
        try:
            held = self._enroll(enroller)
            if held is None:
                return
            sess = session_mod.Session(stub=stub, agent_id=held.agent_id,
                                       node_name=self.node_name,
                                       labels=dict(self.cfg.agent.labels), stop=self.stop)
            link = session_mod.LinkWorker(
                sess, self.handlers, stop=self.stop, recorder=self.recorder,
                retry_cap=(session_mod.FAILOVER_LINK_RETRY_CAP
                           if addresses.several(self.cfg.colony.address)
                           else session_mod.LINK_RETRY_CAP))
            self.readiness.link = link.connected
            threads = [threading.Thread(target=link.run_forever, name="link", daemon=True),
                       threading.Thread(target=enroller.renew_forever, args=(self.stop,),
                                        name="renew", daemon=True)]
            if self.cfg.agent.mode == "active":
                threads.append(threading.Thread(target=self.prober.run_forever,
                                                args=(self.stop,), name="health", daemon=True))
            for thread in threads:
                thread.start()
            self._loop(sess, enroller)
            if self.registered.is_set() and self.leaving():
                sess.deregister("agent stopped")
        finally:
            self.stop.set()
            # one deadline for all: each thread watches `stop`; a stuck one must not hold up
            # the exit past systemd's TimeoutStopSec (15 s), which would end the unit failed
            deadline = time.monotonic() + STOP_JOIN_TIMEOUT
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            chan.close()
            if local is not None:
                local.stop(1)

    def _enroll(self, enroller: credentials.Enroller) -> credentials.Held | None:
        """The agent's certificate (stored, or joined now); None when stopped first."""
        attempt, waiting = 0, False
        while not self.stop.is_set():
            try:
                return enroller.ensure()
            except credentials.CredentialRefused as exc:
                if not waiting:
                    log.warning("%s", exc)
                waiting = True
                self.stop.wait(2.0)  # look for a new credential without calling the colony
                continue
            except identity.IdentityError as exc:
                raise view.ConfigError(self.cfg._source, "colony.joinToken", str(exc)) \
                    from None
            except grpc.RpcError as exc:
                error = exc.details() if hasattr(exc, "details") else exc
            except ValueError as exc:
                error = exc
            delay = session_mod.backoff(attempt, cap=30.0)
            log.error("cannot join colony at %s: %s; retrying in %.1fs",
                      self.cfg.colony.address, error, delay)
            self.stop.wait(delay)
            attempt += 1
        return None

    def _loop(self, sess: session_mod.Session, enroller: credentials.Enroller) -> None:
        attempt = 0
        cached = state_mod.load(self.state_path)
        while not self.stop.is_set():
            try:
                services = self._discover_now() if self._last_sent is not None or not cached \
                    else cached
                self._remember(services)
                sess.node_labels = self.node_labels()
                pods = self.pods()
                interval = sess.register(services=services, runtime=self.handlers.runtime,
                                         pods=pods)
                self._last_sent, self._pods_sent = services, pods
                self.registered.set()
                log.info("registered with colony %s at %s as %s (%d services)",
                         self.cfg.colony.id, self.cfg.colony.address, sess.agent_id, len(services))
                pagecache.release_started()  # start-up is over (issue 15, a leaner agent)
                attempt = 0
                if self._heartbeat_until_lost(sess, interval):
                    return  # stopping while registered: `registered` stays set
            except session_mod.Stopped:
                return
            except session_mod.Refused as exc:
                log.error("%s", exc)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                    # Only a revocation answers PERMISSION_DENIED to an agent: drop the
                    # certificate and join again (refused until an admin re-admits it).
                    log.error("colony refused this agent's certificate: %s", exc.details())
                    enroller.holder.discard()
                    if self._enroll(enroller) is None:
                        return
                else:
                    delay = session_mod.backoff(attempt)
                    log.warning("colony unreachable at %s: %s; retrying in %.1fs",
                                self.cfg.colony.address,
                                exc.details() if hasattr(exc, "details") else exc, delay)
                    self.registered.clear()
                    self.stop.wait(delay)
                    attempt += 1
                    continue
            self.registered.clear()
            self.stop.wait(session_mod.backoff(attempt))
            attempt += 1

    def _heartbeat_until_lost(self, sess: session_mod.Session, interval: float) -> bool:
        """Heartbeat until the colony asks to register again (False) or the agent stops
        (True)."""
        period = min(interval, self.poll_interval())
        while not self._sleep(period):
            services = self._discover_now()
            send = services if changed(self._last_sent, services) else None
            if send is not None:
                self._remember(send)
            pods = self.pods()
            send_pods = pods if pods is not None and pods != self._pods_sent else None
            reply = sess.heartbeat(services=send, pods=send_pods, health=self.prober.drain())
            if reply.reregister or not reply.ok:
                log.warning("colony asks to register again: %s", reply.reason)
                return False
            pagecache.release_settled()
            pagecache.release_surplus()  # what this period faulted in read ahead (issue 15)
            if send is not None:
                self._last_sent = send
                log.info("service set changed: sent %d services", len(send))
            if send_pods is not None:
                self._pods_sent = send_pods
        return True

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()

    def _sleep(self, period: float) -> bool:
        """Wait one period or until woken by a change; True when the agent is stopping."""
        self.wake.wait(period)
        self.wake.clear()
        return self.stop.is_set()

    def _remember(self, services: list[mesh_pb2.ServiceInfo]) -> None:
        """Write the set to disk before sending it: a restart then registers a set at least
        as new as the colony's, never an older one (which would drop and re-add services)."""
        try:
            state_mod.save(self.state_path, services)
        except OSError as exc:
            log.warning("cannot save agent state to %s: %s", self.state_path, exc)
