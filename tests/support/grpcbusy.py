"""A test process busy in gRPC: an echo server on loopback and threads calling it.

grpcio's wheel has fork support on: its fork handlers abort, crash or hang a child forked
(not vfork'd) while other threads are in gRPC. Code that starts processes from a process
that serves gRPC (the agent's exec, the pod harness) is tested inside this context."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc


def _call_until(port: int, stop: threading.Event) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary("/grpcbusy.Echo/Echo")
        while not stop.is_set():
            try:
                echo(b"x" * 64, timeout=2)
            except grpc.RpcError:
                pass


@contextlib.contextmanager
def busy(callers: int = 8) -> Iterator[None]:
    """Within the block, `callers` threads keep calling an echo server of this process."""
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "grpcbusy.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, _ctx: req)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    threads = [threading.Thread(target=_call_until, args=(port, stop), daemon=True,
                                name=f"grpcbusy-{i}") for i in range(callers)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        server.stop(0)
