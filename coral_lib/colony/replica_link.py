"""Replica-to-replica calls over mutual TLS: run an exec, shell, tap or trace on an agent
linked to another colony replica.

Each replica gets a certificate from the colony CA at start (`issue_replica_cert`): URI
SAN `spiffe://<colony>/replica/<name>`, server and client auth, its advertised host as DNS
or IP SAN. The replica port (`ReplicaServer`) requires a client certificate from the colony
CA and then that URI: an agent certificate (…/host/…, …/node/…, …/ns/…) or an operator's
client certificate is refused (PERMISSION_DENIED). Two calls exist, both for the agent
named in the `coral-agent-id` metadata:

* `/coral.colony.v1.Replica/Exec`: an `agent.v1.ExecRequest`, answered with its `ExecResult`;
* `/coral.colony.v1.Replica/Stream`: a shell, tap or trace, one link operation carried both
  ways (replica_stream.py).

The calling replica has already authenticated, authorized, approved and audited the
operation; the holder only relays it down its link, and stops the command or capture when
the caller goes away (cancellation).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import ipaddress
import logging
import threading
import time
from collections.abc import Callable

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import links as links_mod
from coral_lib.colony import pki, replica_stream

log = logging.getLogger(__name__)

METHOD = "/coral.colony.v1.Replica/Exec"
AGENT_KEY = replica_stream.AGENT_KEY
CUT_OFF = "coral-cut-off"  # trailing metadata: the command was cut off (link dropped)


def replica_uri(colony_id: str, name: str) -> str:
    return f"spiffe://{colony_id}/replica/{name}"


def issue_replica_cert(files: pki.ColonyFiles, *, colony_id: str, name: str,
                       host: str, days: int = 30) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) for replica `name` reachable at `host`, signed by the colony CA."""
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(replica_uri(colony_id, name))]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Coral"),
                                     x509.NameAttribute(NameOID.COMMON_NAME,
                                                        f"replica {name}"[:64])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def peer_replica(context: grpc.ServicerContext, colony_id: str) -> str:
    """The calling replica's name from its verified certificate; '' when it is not one."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return ""
    cert = x509.load_pem_x509_certificate(pems[0])
    try:
        uris = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        return ""
    prefix = replica_uri(colony_id, "")
    return next((u[len(prefix):] for u in uris if u.startswith(prefix) and
                 len(u) > len(prefix)), "")


class ReplicaServer:
    """The replica port: mutual TLS, replica certificates only, the Exec and Stream relays."""

    def __init__(self, *, links: links_mod.Links, colony_id: str, files: pki.ColonyFiles,
                 cert: tuple[bytes, bytes], listen: str) -> None:
        self.links, self.colony_id = links, colony_id
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(
            256, thread_name_prefix="replica"), options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 256 << 20)])
        handler = grpc.unary_unary_rpc_method_handler(
            self._exec, request_deserializer=agent_pb2.ExecRequest.FromString,
            response_serializer=agent_pb2.ExecResult.SerializeToString)
        stream = grpc.stream_stream_rpc_method_handler(
            self._stream, request_deserializer=mesh_pb2.ColonyMessage.FromString,
            response_serializer=mesh_pb2.AgentMessage.SerializeToString)
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "coral.colony.v1.Replica", {"Exec": handler, "Stream": stream}),))
        creds = grpc.ssl_server_credentials([(cert[1], cert[0])],
                                            root_certificates=files.ca_cert.read_bytes(),
                                            require_client_auth=True)
        self.port = self._server.add_secure_port(listen, creds)
        if not self.port:
            raise OSError(f"cannot listen on {listen} (replica port): address in use or "
                          "not available")

    def start(self) -> ReplicaServer:
        self._server.start()
        return self

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait()

    def _caller_and_link(self, context) -> tuple[str, links_mod.AgentLink]:
        """The calling replica and the link it asks for; abort when either is missing."""
        caller = peer_replica(context, self.colony_id)
        if not caller:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          "the replica port accepts colony replica certificates only")
        agent_id = dict(context.invocation_metadata()).get(AGENT_KEY, "")
        link = self.links.get(agent_id)
        if link is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"agent {agent_id[:100]!r} is not "
                          "linked to this replica")
        return caller, link

    def _stream(self, request_iterator, context):
        caller, link = self._caller_and_link(context)
        yield from replica_stream.serve(link, request_iterator, context, caller=caller)

    def _exec(self, request: agent_pb2.ExecRequest, context) -> agent_pb2.ExecResult:
        _, link = self._caller_and_link(context)
        timeout = max(1.0, (context.time_remaining() or 60.0) - 0.5)
        started = time.monotonic()
        try:
            return link.exec(request, timeout=timeout, cancelled=lambda: not context.is_active())
        except (links_mod.LinkClosed, links_mod.Cancelled) as exc:
            context.set_trailing_metadata(((CUT_OFF, "1"),))
            return agent_pb2.ExecResult(exit_code=-1, error=str(exc),
                                        duration_seconds=time.monotonic() - started)
        except TimeoutError as exc:
            return agent_pb2.ExecResult(exit_code=-1, error=str(exc),
                                        duration_seconds=time.monotonic() - started)


class Forwarder:
    """Runs an exec on the replica holding an agent's link (FanOut's `forward`)."""

    def __init__(self, *, holder: Callable[[str], object], ca_pem: bytes,
                 cert: tuple[bytes, bytes]) -> None:
        self._holder, self._ca, self._cert = holder, ca_pem, cert
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def _channel(self, address: str) -> grpc.Channel:
        with self._lock:
            if address not in self._channels:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=self._ca, private_key=self._cert[1],
                    certificate_chain=self._cert[0])
                self._channels[address] = grpc.secure_channel(address, creds, options=[
                    ("grpc.max_receive_message_length", 256 << 20)])
            return self._channels[address]

    def __call__(self, request: agent_pb2.ExecRequest, agent_id: str, *, timeout: float,
                 cancelled: Callable[[], bool]) -> tuple[agent_pb2.ExecResult, bool] | None:
        """(result, cut off) from the holding replica; None when no live replica holds it."""
        replica = self._holder(agent_id)
        if replica is None:
            return None
        started = time.monotonic()
        future = self._channel(replica.address).unary_unary(
            METHOD, request_serializer=agent_pb2.ExecRequest.SerializeToString,
            response_deserializer=agent_pb2.ExecResult.FromString,
        ).future(request, timeout=timeout, metadata=((AGENT_KEY, agent_id),))
        while not future.done():
            if cancelled():
                future.cancel()
                return agent_pb2.ExecResult(exit_code=-1, error=f"cancelled on agent {agent_id}",
                                            duration_seconds=time.monotonic() - started), True
            try:
                future.result(timeout=0.5)
            except grpc.FutureTimeoutError:
                continue
            except grpc.RpcError:
                break
        try:
            result = future.result()
        except grpc.RpcError as exc:
            code = exc.code()
            cut_off = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            return agent_pb2.ExecResult(
                exit_code=-1, duration_seconds=time.monotonic() - started,
                error=f"replica {replica.name} holding agent {agent_id}'s link: "
                      f"{code.name}: {exc.details()}"), cut_off
        trailing = dict(future.trailing_metadata() or ())
        return result, trailing.get(CUT_OFF) == "1"

    def open(self, agent_id: str) -> replica_stream.RemoteOperation | None:
        """A shell/tap/trace operation relayed to the replica holding `agent_id`'s link;
        None when no live replica holds it (links.open_for's `forward`)."""
        replica = self._holder(agent_id)
        if replica is None:
            return None
        return replica_stream.open_remote(self._channel(replica.address), agent_id=agent_id,
                                          replica=replica.name)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
