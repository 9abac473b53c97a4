"""CLI: `python -m tests.support.kubeapi serve --state-dir DIR [--port N] [--node NAME]...`

Writes DIR/kubeconfig (and DIR/ca.crt) and serves until killed (SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.support.kubeapi import server as server_


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.kubeapi")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server fixture until killed")
    serve.add_argument("--state-dir", required=True, help="where kubeconfig and certs go")
    serve.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    serve.add_argument("--node", action="append", dest="nodes",
                       help="a node to create (repeatable; default: node-1)")
    serve.add_argument("--history-size", type=int, default=10_000)
    serve.add_argument("--context", default="kubeapi-fixture")
    args = parser.parse_args(argv)
    srv = server_.KubeAPIServer(args.state_dir, port=args.port,
                                nodes=args.nodes or ["node-1"],
                                history_size=args.history_size, context=args.context)
    srv.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"kubeapi fixture serving {srv.url} kubeconfig={srv.kubeconfig_path}", flush=True)
    stop.wait()
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
