"""`pods/exec` over WebSocket, subprotocols v4.channel.k8s.io and v5.channel.k8s.io.

Channels: 0 stdin, 1 stdout, 2 stderr, 3 status (a metav1.Status JSON), 4 resize; v5 adds
the close message [255, channel]. The command runs for real through `exec_handler(pod,
container, argv)` (default: a local subprocess). One thread owns the TLS socket; pipe
readers hand output to it through a queue and a wake-up pipe.
"""

from __future__ import annotations

import json
import os
import queue
import select
import ssl
import subprocess
import threading

from tests.support.kubeapi import errors, ws

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def local_exec(pod: dict, container: str, argv: list[str]) -> subprocess.Popen:
    """Default handler: run argv as a local process (the 'container' is this machine)."""
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def exit_status(rc: int, argv: list[str]) -> dict:
    if rc == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"{argv}, exit code {rc}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]}}


def _flag(query: dict, name: str) -> bool:
    return query.get(name, "") in ("1", "true", "True")


def _pick_container(pod: dict, wanted: str | None) -> str:
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if not wanted:
        return names[0]
    if wanted not in names:
        raise errors.bad_request(f"container {wanted} is not valid for pod "
                                 f"{pod['metadata']['name']}; containers: {names}")
    return wanted


def serve(handler, *, pod: dict, app) -> None:
    """Validate, upgrade the connection, run the command and stream it."""
    argv = handler.query_all.get("command") or []
    if not argv:
        raise errors.bad_request("you must specify at least 1 command")
    container = _pick_container(pod, handler.query.get("container"))
    if handler.headers.get("Upgrade", "").lower() != "websocket":
        raise errors.bad_request("Upgrade request required: pods/exec is served over "
                                 f"WebSocket with subprotocols {', '.join(PROTOCOLS)}")
    offered = [p.strip() for p in handler.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    proto = next((p for p in offered if p in PROTOCOLS), None)
    key = handler.headers.get("Sec-WebSocket-Key")
    if proto is None or not key:
        raise errors.bad_request(f"unsupported exec subprotocols {offered}; "
                                 f"accepted: {', '.join(PROTOCOLS)}")
    handler.send_response(101)
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", ws.accept_key(key))
    handler.send_header("Sec-WebSocket-Protocol", proto)
    handler.end_headers()
    handler.wfile.flush()
    handler.close_connection = True
    q = handler.query
    Session(handler.connection, proto=proto, stdin=_flag(q, "stdin"),
            tty=_flag(q, "tty")).run(app.exec_handler, pod, container, argv)


class Session:
    def __init__(self, sock, *, proto: str, stdin: bool, tty: bool):
        self.sock = sock
        self.v5 = proto.startswith("v5")
        self.stdin = stdin
        self.tty = tty
        self.decoder = ws.Decoder()
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        self.client_gone = False

    def send(self, channel: int, data: bytes) -> None:
        self.sock.sendall(ws.encode(ws.OP_BINARY, bytes([channel]) + data))

    def run(self, exec_handler, pod: dict, container: str, argv: list[str]) -> None:
        try:
            self.send(STDOUT, b"")  # kubectl's v4/v5 clients expect each stream opened
            self.send(STDERR, b"")
            try:
                proc = exec_handler(pod, container, argv)
            except Exception as exc:  # noqa: BLE001 - any harness failure becomes exit 126
                self._fail_start(argv, exc)
                return
            self._pump(proc, argv)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _fail_start(self, argv: list[str], exc: Exception) -> None:
        reason = getattr(exc, "strerror", None) or exc
        msg = (f"OCI runtime exec failed: exec failed: unable to start container process: "
               f"exec: {argv[0]!r}: {reason}: unknown\r\n")
        self.send(STDERR, msg.encode())
        self._finish(exit_status(126, argv))

    def _pump(self, proc, argv: list[str]) -> None:
        readers = [threading.Thread(target=self._reader, args=(ch, f), daemon=True)
                   for ch, f in ((STDOUT, proc.stdout), (STDERR, proc.stderr)) if f is not None]
        for t in readers:
            t.start()
        if not self.stdin and proc.stdin is not None:
            proc.stdin.close()
        open_streams = len(readers)
        while open_streams and not self.client_gone:
            open_streams -= self._drain()
            if open_streams:
                self._wait_io(proc)
        if self.client_gone:
            proc.kill()
            proc.wait()
            return
        rc = proc.wait()
        self._finish(exit_status(rc if rc >= 0 else 128 - rc, argv))

    def _reader(self, channel: int, f) -> None:
        read = getattr(f, "read1", f.read)
        try:
            while True:
                data = read(65536)
                if not data:
                    break
                self.out.put((channel, data))
                os.write(self.wake_w, b"x")
        except (OSError, ValueError):
            pass
        self.out.put((channel, None))
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def _drain(self) -> int:
        """Send queued output; return how many streams reached EOF."""
        ended = 0
        while True:
            try:
                channel, data = self.out.get_nowait()
            except queue.Empty:
                return ended
            if data is None:
                ended += 1
            else:
                self.send(STDOUT if self.tty else channel, data)

    def _wait_io(self, proc) -> None:
        pending = getattr(self.sock, "pending", lambda: 0)()
        readable = [] if pending else select.select([self.sock, self.wake_r], [], [], 1.0)[0]
        if self.wake_r in readable:
            os.read(self.wake_r, 4096)
        if pending or self.sock in readable:
            self._read_client(proc)

    def _read_client(self, proc) -> None:
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        finally:
            self.sock.setblocking(True)
        if not data:
            self.client_gone = True
            return
        for opcode, payload in self.decoder.feed(data):
            self._on_message(opcode, payload, proc)

    def _on_message(self, opcode: int, payload: bytes, proc) -> None:
        if opcode == ws.OP_PING:
            self.sock.sendall(ws.encode(ws.OP_PONG, payload))
        elif opcode == ws.OP_CLOSE:
            self.client_gone = True
        elif opcode in (ws.OP_BINARY, ws.OP_TEXT) and payload:
            self._on_channel(payload[0], payload[1:], proc)

    def _on_channel(self, channel: int, data: bytes, proc) -> None:
        if channel == STDIN and proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
        elif channel == CLOSE and self.v5 and data[:1] == bytes([STDIN]):
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.close()
        elif channel == RESIZE and hasattr(proc, "resize"):
            try:
                size = json.loads(data)
                proc.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
            except (ValueError, AttributeError, TypeError):
                pass

    def _finish(self, status: dict) -> None:
        self.send(STATUS, json.dumps(status).encode())
        self.sock.sendall(ws.encode(ws.OP_CLOSE, b"\x03\xe8"))
