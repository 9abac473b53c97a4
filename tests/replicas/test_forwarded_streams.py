"""Issue 11, replicas: "An operation for an agent linked to another replica is forwarded to
that replica" — for the streamed operations too: `coral shell`, `coral tap` and `coral
trace` called on a replica that does not hold the agent's link are authenticated,
authorized, approved and audited there, then relayed over the replica port (mutual TLS,
replica certificates only) to the replica holding it.

Real `coral colony start --database` processes on a real PostgreSQL, a real host agent
that dials r1 only (so everything called on r0 is forwarded), real processes, packets and
BPF events on this machine (the tests run as root, as a host agent does).
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest

from coral_lib import client
from coral_lib._proto.coral.agent.v1 import agent_pb2
from coral_lib._proto.coral.colony.v1 import colony_pb2, colony_pb2_grpc
from coral_lib._proto.coral.mesh.v1 import mesh_pb2
from coral_lib.colony import pki, replica_link, replica_stream
from coral_lib.ops import trace
from tests.replicas.conftest import new_replica_set, start_agents
from tests.support import coral_procs

AGENT = "on-r1"


def _linked_somewhere(replica: coral_procs.Colony, agent_id: str) -> bool:
    try:
        with replica.client() as c:
            return any(a["agent_id"] == agent_id and a["connected"] for a in c.list_agents())
    except client.CoralError:
        return False


@pytest.fixture(scope="module")
def pair(tmp_path_factory, postgres_server):
    """(replica set r0 + r1, the agent): the agent's link is on r1, never on r0."""
    root = tmp_path_factory.mktemp("forwarded")
    replicas = new_replica_set(root, postgres_server).start(2)
    (agent,) = start_agents(root / "agents", [replicas.view(1)], [AGENT])
    try:
        coral_procs.wait_for(lambda: _linked_somewhere(replicas.replicas[0], AGENT),
                             timeout=40, what=f"{AGENT} linked to r1, seen from r0")
        yield replicas, agent
    finally:
        agent.stop()
        replicas.stop()


def _holder(replicas) -> str | None:
    import psycopg

    with psycopg.connect(replicas.dsn_file.read_text().strip()) as conn:
        row = conn.execute("SELECT replica FROM colony_links WHERE agent_id = %s",
                           (AGENT,)).fetchone()
    return row[0] if row else None


@pytest.fixture
def forwarded(pair):
    """`pair`, once the agent's link is up on r1 (a real agent re-links by itself if a
    loaded machine dropped it between two tests)."""
    replicas, _ = pair
    coral_procs.wait_for(lambda: _holder(replicas) == "r1", timeout=40,
                         what=f"{AGENT}'s link held by r1")
    return pair


class _Terminal:
    """An operator's interactive shell through `replica`: type lines, read what comes back."""

    def __init__(self, replica: coral_procs.Colony, *, argv: list[str] | None = None) -> None:
        self.typed: queue.Queue = queue.Queue()
        self.seen, self.code, self.errors = b"", None, []
        self._client = replica.client()
        self._outputs = self._client.shell(client.Targeting(agent=AGENT), argv=argv,
                                           inputs=iter(self.typed.get, None))

    def type(self, item: agent_pb2.ShellInput) -> None:
        self.typed.put(item)

    def until(self, done) -> None:
        """Read output until done(self) or the stream ends."""
        for out in self._outputs:
            kind = out.WhichOneof("output")
            if kind == "data":
                self.seen += out.data
            elif kind == "exit_code":
                self.code = out.exit_code
            elif kind == "error":
                self.errors.append(out.error)
            if done(self):
                return

    def read_in_background(self) -> None:
        """Read until the stream ends; an error that ends the call (its replica died) too."""
        def read() -> None:
            try:
                self.until(lambda t: False)
            except client.CoralError as exc:
                self.errors.append(str(exc))
        threading.Thread(target=read, daemon=True).start()

    def close(self) -> None:
        self.typed.put(None)
        self._client.close()


def _shell_records(replica: coral_procs.Colony) -> tuple[dict, dict | None]:
    """The last shell's started record and its end record (None while it runs)."""
    with replica.client() as c:
        started = [r for r in c.audit(kind="started") if r["verb"] == "shell"][-1]
        ends = c.audit(kind="finished", op_id=started["op_id"])
    return started, (ends[0] if ends else None)


def test_shell_through_a_replica_not_holding_the_link_round_trips(forwarded):
    """"An operation for an agent linked to another replica is forwarded to that replica":
    an interactive shell called on r0 for an agent linked to r1 — a resize, bytes typed and
    read back, the remote exit code — audited by r0 (the replica the operator called)."""
    replicas, _ = forwarded
    r0, r1 = replicas.replicas
    term = _Terminal(r0)
    try:
        term.type(agent_pb2.ShellInput(resize=agent_pb2.Resize(rows=33, cols=101)))
        term.type(agent_pb2.ShellInput(stdin=b"stty size; echo marker-$((6*7))\n"))
        term.until(lambda t: b"marker-42" in t.seen)
        term.type(agent_pb2.ShellInput(stdin=b"exit 7\n"))
        term.until(lambda t: False)
    finally:
        term.close()
    assert not term.errors, term.errors
    assert b"33 101" in term.seen and b"marker-42" in term.seen and term.code == 7
    started, end = _shell_records(r0)
    assert (started["agent_id"], started["replica"], started["command"]) == (
        AGENT, "r0", "/bin/sh")
    assert (end["status"], end["exit_code"]) == ("failed", 7)
    assert f"agent {AGENT} linked" not in r0.log_path.read_text()  # r0 never held the link
    assert f"relaying an operation on agent {AGENT} for replica r0" in r1.log_path.read_text()


UDP_SENDER = r"""
import socket, sys, time
port, until = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while time.time() < until:
    s.sendto(b"coral-forwarded-tap" + b"x" * 200, ("127.0.0.1", port))
    time.sleep(0.05)
"""


def test_tap_through_a_replica_not_holding_the_link_writes_a_pcap(forwarded, tmp_path):
    """"An operation for an agent linked to another replica is forwarded to that replica":
    `coral tap` on r0 captures on the agent linked to r1 (the host's loopback carries UDP
    to a port chosen here) and writes a pcap `tcpdump -r` reads, with those packets."""
    replicas, _ = forwarded
    r0 = replicas.replicas[0]
    port, out = random.randint(40000, 49999), tmp_path / "forwarded.pcap"
    tap = subprocess.Popen([*coral_procs.CORAL, "tap", "--agent", AGENT, "--filter",
                            f"udp port {port}", "--duration", "4s", "-o", str(out)],
                           env={**os.environ, **r0.operator_env}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    # traffic for as long as the capture can last; the filter keeps only this port's
    sender = subprocess.Popen([sys.executable, "-c", UDP_SENDER, str(port),
                               str(time.time() + 60)])
    try:
        _, stderr = tap.communicate(timeout=90)
    finally:
        sender.kill()
        sender.wait()
    assert tap.returncode == 0, stderr
    assert f"{AGENT}:" in stderr and "(ended by duration)" in stderr
    run = subprocess.run(["tcpdump", "-nn", "-r", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) >= 10 and all(f".{port}: UDP" in line for line in lines), lines[:5]
    with r0.client() as c:
        started = [r for r in c.audit(kind="started") if r["verb"] == "tap"][-1]
        (end,) = c.audit(kind="finished", op_id=started["op_id"])
    assert (started["agent_id"], started["replica"]) == (AGENT, "r0")
    assert end["status"] == "ok" and end["bytes_out"] > 0


def test_trace_through_a_replica_not_holding_the_link_streams_events(forwarded, tmp_path):
    """"An operation for an agent linked to another replica is forwarded to that replica":
    `coral trace exec` on r0 streams the exec events of the agent linked to r1."""
    ok, reason = trace.available()
    if not ok:
        pytest.skip(f"{reason} (run tools/setup_bcc.sh once)")
    replicas, _ = forwarded
    r0 = replicas.replicas[0]
    probe = tmp_path / f"coral-probe-{random.randint(10**7, 10**8)}"
    probe.write_bytes(pathlib.Path("/bin/true").read_bytes())
    probe.chmod(0o755)
    stop = threading.Event()

    def keep_running() -> None:
        while not stop.wait(0.2):
            subprocess.run([str(probe)], check=False)
    threading.Thread(target=keep_running, daemon=True).start()
    try:
        run = coral_procs.coral("trace", "exec", "--agent", AGENT, "--duration", "3s",
                                env=r0.operator_env, timeout=240)
    finally:
        stop.set()
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert any(e.get("filename") == str(probe) and e["target"] == AGENT for e in events)
    with r0.client() as c:
        started = [r for r in c.audit(kind="started") if r["verb"] == "trace"][-1]
    assert (started["agent_id"], started["replica"]) == (AGENT, "r0")


def _sleeping(marker: str) -> list[int]:
    """Pids of `sleep <marker>` processes on this machine (the host agent runs them here)."""
    want, pids = b"sleep\0" + marker.encode() + b"\0", []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == want:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _marker() -> str:
    return f"{random.randint(1000, 9999)}.{random.randint(100, 999)}"


def test_operator_cancel_stops_the_remote_process(forwarded):
    """"An operation for an agent linked to another replica is forwarded to that replica",
    cancellation: the operator cancels a shell called on r0; the command running on the
    agent linked to r1 is killed and r0's audit closes the shell as interrupted."""
    replicas, _ = forwarded
    r0 = replicas.replicas[0]
    marker, hold = _marker(), threading.Event()

    def frames():
        yield colony_pb2.ShellFrame(
            targeting=client.Targeting(agent=AGENT).to_proto(),
            input=agent_pb2.ShellInput(start=agent_pb2.ShellStart(argv=["sleep", marker])))
        hold.wait(120)  # the operator types nothing: the input stays open
    token = (r0.data_dir / "admin.token").read_text().strip()
    creds = grpc.ssl_channel_credentials((r0.data_dir / "ca.crt").read_bytes())
    with grpc.secure_channel(r0.address, creds) as channel:
        call = colony_pb2_grpc.ColonyStub(channel).Shell(
            frames(), metadata=(("authorization", f"Bearer {token}"),))
        try:
            coral_procs.wait_for(lambda: _sleeping(marker), timeout=30,
                                 what=f"sleep {marker} running on the agent")
            call.cancel()
        finally:
            hold.set()
    coral_procs.wait_for(lambda: not _sleeping(marker), timeout=20,
                         what=f"sleep {marker} killed after the operator cancelled")
    coral_procs.wait_for(lambda: _shell_records(r0)[1] is not None, timeout=20,
                         what="the shell's end record")
    started, end = _shell_records(r0)
    assert started["command"] == f"sleep {marker}" and end["status"] == "interrupted"


def _relay_stream(address: str, ca: bytes, cert: tuple[bytes, bytes] | None, frames: list,
                  *, agent_id: str = AGENT, raw: bool = False) -> grpc.RpcError | list:
    """Call the replica port's Stream method as whoever holds `cert`; its error, or the
    replies when there was none."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca,
                                         private_key=cert[1] if cert else None,
                                         certificate_chain=cert[0] if cert else None)
    with grpc.secure_channel(address, creds) as channel:
        call = channel.stream_stream(
            replica_stream.METHOD,
            request_serializer=None if raw else mesh_pb2.ColonyMessage.SerializeToString,
            response_deserializer=mesh_pb2.AgentMessage.FromString)
        try:
            return list(call(iter(frames), timeout=20,
                             metadata=((replica_stream.AGENT_KEY, agent_id),)))
        except grpc.RpcError as exc:
            return exc


def _packet_sockets(pid: int) -> int:
    """How many AF_PACKET sockets (captures) process `pid` holds open right now."""
    with open("/proc/net/packet") as f:
        inodes = {line.split()[-1] for line in f.read().splitlines()[1:]}
    count = 0
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        count += link.startswith("socket:[") and link[8:-1] in inodes
    return count


def test_operator_cancel_stops_a_forwarded_capture(forwarded):
    """"An operation for an agent linked to another replica is forwarded to that replica",
    cancellation of a capture: a two-minute tap called on r0 for the agent linked to r1
    is cancelled by the operator; the agent closes its capture socket and r0's audit
    closes the tap as interrupted."""
    replicas, agent = forwarded
    r0 = replicas.replicas[0]
    coral_procs.wait_for(lambda: _packet_sockets(agent.proc.pid) == 0, timeout=15,
                         what="no capture running on the agent before this one")
    token = (r0.data_dir / "admin.token").read_text().strip()
    creds = grpc.ssl_channel_credentials((r0.data_dir / "ca.crt").read_bytes())
    request = colony_pb2.TapOperateRequest(
        targeting=client.Targeting(agent=AGENT).to_proto(), tap=agent_pb2.TapRequest(
            duration_seconds=120, max_packets=1000000, max_bytes=100 << 20))
    with grpc.secure_channel(r0.address, creds) as channel:
        call = colony_pb2_grpc.ColonyStub(channel).Tap(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=180)
        assert next(call).HasField("targets")
        coral_procs.wait_for(lambda: _packet_sockets(agent.proc.pid) > 0, timeout=30,
                             what="the agent capturing")
        call.cancel()
    coral_procs.wait_for(lambda: _packet_sockets(agent.proc.pid) == 0, timeout=20,
                         what="the agent's capture stopped after the operator cancelled")

    def ended() -> dict | None:
        with r0.client() as c:
            started = [r for r in c.audit(kind="started") if r["verb"] == "tap"][-1]
            ends = c.audit(kind="finished", op_id=started["op_id"])
        return ends[0] if ends else None
    coral_procs.wait_for(ended, timeout=20, what="the tap's end record")
    assert ended()["status"] == "interrupted"


def _relayed_shell_exit_code(address: str, ca: bytes, cert: tuple[bytes, bytes],
                             start: mesh_pb2.ColonyMessage) -> int | None:
    """Relay a shell as a replica does: input open until the exit code, then half-close."""
    ended = threading.Event()

    def frames():
        yield start
        ended.wait(20)
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=cert[1],
                                         certificate_chain=cert[0])
    with grpc.secure_channel(address, creds) as channel:
        call = channel.stream_stream(
            replica_stream.METHOD, request_serializer=mesh_pb2.ColonyMessage.SerializeToString,
            response_deserializer=mesh_pb2.AgentMessage.FromString,
        )(frames(), timeout=20, metadata=((replica_stream.AGENT_KEY, AGENT),))
        code = None
        for reply in call:
            if reply.shell.WhichOneof("output") == "exit_code":
                code = reply.shell.exit_code
                ended.set()
        ended.set()
    return code


def test_replica_port_stream_refuses_agents_operators_strangers_and_bad_frames(forwarded,
                                                                                tmp_path):
    """Attacker, "An operation for an agent linked to another replica is forwarded to that
    replica" over replica-to-replica mutual TLS only: on r1's replica port, the Stream
    relay refuses an enrolled agent's certificate and an operator's client certificate
    (PERMISSION_DENIED) and a replica certificate from another colony's CA (no
    handshake). With a replica certificate of this colony (issued here from its CA, as a
    replica issues its own), frames other than shell/tap/trace and cancel are refused
    before reaching the agent, unparseable bytes end only that call, and r1 keeps
    relaying."""
    replicas, agent = forwarded
    r0, r1 = replicas.replicas
    address = replicas.replicas_address(1)
    ca = (r1.data_dir / "ca.crt").read_bytes()
    files = pki.ColonyFiles(r1.data_dir)
    start = mesh_pb2.ColonyMessage(shell=agent_pb2.ShellInput(
        start=agent_pb2.ShellStart(argv=["id"])))
    agent_cert = (agent.cert_path.read_bytes(), (agent.state_dir / f"{AGENT}.key").read_bytes())
    for cert in (agent_cert, pki.issue_client_cert(files, identity="admin")):
        assert _relay_stream(address, ca, cert, [start]).code() == \
            grpc.StatusCode.PERMISSION_DENIED
    other = pki.ensure(tmp_path / "other-colony")
    foreign = replica_link.issue_replica_cert(other, colony_id=r1.colony_id, name="evil",
                                              host="127.0.0.1")
    assert _relay_stream(address, ca, foreign, [start]).code() == grpc.StatusCode.UNAVAILABLE
    assert _relay_stream(address, ca, None, [start]).code() == grpc.StatusCode.UNAVAILABLE

    replica = replica_link.issue_replica_cert(files, colony_id=r1.colony_id, name="r9",
                                              host="127.0.0.1")
    touched = tmp_path / "must-not-exist"
    bad = [
        [mesh_pb2.ColonyMessage()],  # empty
        [mesh_pb2.ColonyMessage(exec=agent_pb2.ExecRequest(argv=["touch", str(touched)]))],
        [mesh_pb2.ColonyMessage(runtime=agent_pb2.GetRuntimeContextRequest())],
        [mesh_pb2.ColonyMessage(tap=agent_pb2.TapRequest(duration_seconds=1)),
         mesh_pb2.ColonyMessage(shell=agent_pb2.ShellInput(stdin=b"id\n"))],
    ]
    for frames in bad:
        error = _relay_stream(address, ca, replica, frames)
        assert isinstance(error, grpc.RpcError) and \
            error.code() == grpc.StatusCode.INVALID_ARGUMENT, (frames, error)
    garbage = _relay_stream(address, ca, replica, [b"\xff\xfe not a protobuf"], raw=True)
    assert isinstance(garbage, grpc.RpcError), garbage
    unlinked = _relay_stream(address, ca, replica, [start], agent_id="nobody")
    assert unlinked.code() == grpc.StatusCode.NOT_FOUND
    assert not touched.exists()
    # r1 still serves: a shell relayed through its port runs to its exit code
    assert _relayed_shell_exit_code(address, ca, replica, start) == 0
    assert r1.proc.poll() is None
    with r0.client() as c:
        outcome = c.exec(client.Targeting(agent=AGENT), argv=["echo", "still"])
    assert [r["status"] for r in outcome.results] == ["ok"]


def _fresh_pair(replica_set, tmp_path):
    """(r0, r1, agent) of a new replica set whose one agent is linked to r1 (a test that
    kills a replica cannot share the module's pair)."""
    replica_set.start(2)
    r0, r1 = replica_set.replicas
    (agent,) = start_agents(tmp_path / "agents", [replica_set.view(1)], [AGENT])
    try:
        coral_procs.wait_for(lambda: _linked_somewhere(r0, AGENT), timeout=40,
                             what=f"{AGENT} linked to r1")
    except BaseException:
        agent.stop()
        raise
    return r0, r1, agent


def test_holder_replica_killed_mid_shell_ends_the_stream_and_audit_says_interrupted(
        replica_set, tmp_path):
    """"An operation for an agent linked to another replica is forwarded to that replica",
    failure: the replica holding the link is SIGKILLed during a shell called on r0. The
    operator's stream ends with an error naming that replica, r0's audit closes the shell
    as interrupted, and the command on the agent (whose link dropped) is gone."""
    r0, r1, agent = _fresh_pair(replica_set, tmp_path)
    marker = _marker()
    term = None
    try:
        term = _Terminal(r0)
        term.type(agent_pb2.ShellInput(stdin=f"echo up-$((1+1)); sleep {marker}\n".encode()))
        term.until(lambda t: b"up-2" in t.seen)
        coral_procs.wait_for(lambda: _sleeping(marker), timeout=15, what="sleep running")
        r1.stop(sig=signal.SIGKILL)
        term.until(lambda t: bool(t.errors))
        assert term.errors and "replica r1" in term.errors[0] and term.code is None
        coral_procs.wait_for(lambda: _shell_records(r0)[1] is not None, timeout=20,
                             what="the shell's end record")
        started, end = _shell_records(r0)
        assert started["replica"] == "r0" and end["status"] == "interrupted"
        assert "replica r1" in end["error"]
        coral_procs.wait_for(lambda: not _sleeping(marker), timeout=20,
                             what="the shell's command gone with its agent's link")
    finally:
        if term is not None:
            term.close()
        agent.stop()


def test_calling_replica_killed_mid_shell_the_holder_stops_the_command(replica_set, tmp_path):
    """"An operation for an agent linked to another replica is forwarded to that replica",
    cancellation from the other side: the replica the operator called (r0) is SIGKILLed
    during a shell relayed to r1; r1 cancels the command on the agent, and r1, seeing r0's
    heartbeat stop, closes r0's shell record as interrupted."""
    r0, r1, agent = _fresh_pair(replica_set, tmp_path)
    marker = _marker()
    term = None
    try:
        term = _Terminal(r0, argv=["sleep", marker])
        term.read_in_background()  # the call starts when its output is read
        coral_procs.wait_for(lambda: _sleeping(marker), timeout=15, what="sleep running")
        r0.stop(sig=signal.SIGKILL)
        coral_procs.wait_for(lambda: not _sleeping(marker), timeout=20,
                             what=f"sleep {marker} cancelled by r1 when r0 went away")
        coral_procs.wait_for(lambda: _shell_records(r1)[1] is not None, timeout=30,
                             what="r0's shell closed by the survivor")
        started, end = _shell_records(r1)
        assert started["replica"] == "r0" and end["status"] == "interrupted"
        assert "replica r0 stopped answering" in end["error"]
        assert agent.proc.poll() is None
    finally:
        if term is not None:
            term.close()
        agent.stop()


def test_frame_problem_table():
    """The replica port's check of relayed frames (pure): what may go down a link."""
    def frame(**body) -> mesh_pb2.ColonyMessage:
        return mesh_pb2.ColonyMessage(**body)
    start = frame(shell=agent_pb2.ShellInput(start=agent_pb2.ShellStart()))
    stdin = frame(shell=agent_pb2.ShellInput(stdin=b"x"))
    cases = [
        (start, None, True), (frame(tap=agent_pb2.TapRequest()), None, True),
        (frame(trace=agent_pb2.TraceRequest()), None, True), (stdin, None, False),
        (frame(cancel=True), None, False), (frame(), None, False),
        (frame(exec=agent_pb2.ExecRequest()), None, False),
        (stdin, "shell", True), (frame(cancel=True), "shell", True), (start, "shell", False),
        (frame(cancel=True), "tap", True), (stdin, "tap", False),
        (frame(tap=agent_pb2.TapRequest()), "tap", False), (frame(), "trace", False),
    ]
    for msg, first_kind, allowed in cases:
        problem = replica_stream.frame_problem(msg, first_kind=first_kind)
        assert (problem == "") == allowed, (msg, first_kind, problem)


def test_remote_operation_reports_an_unreachable_holder_as_not_connected():
    """A holder that is gone (nothing listens on its replica port) makes open_remote
    answer None, which the shell and tap paths report as "not connected"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        assert replica_stream.open_remote(channel, agent_id=AGENT, replica="gone",
                                          timeout=10) is None
    finally:
        channel.close()
