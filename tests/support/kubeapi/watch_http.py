"""Serving one watch over HTTP: chunked JSON lines, bookmarks, timeouts, 410 as an ERROR
event, and cutting the connection when faults drop watches."""

from __future__ import annotations

import queue
import select
import socket
import ssl
import time

from tests.support.kubeapi import errors, resources, routes, table
from tests.support.kubeapi import watch as watch_


def serve(h, route: routes.Route, pred) -> None:
    """`h` is the request handler (its app, query, headers, wfile, connection)."""
    app, q = h.app, h.query
    try:
        timeout = float(q.get("timeoutSeconds") or app.watch_timeout)
    except ValueError:
        raise errors.bad_request(
            f"invalid timeoutSeconds {q.get('timeoutSeconds')!r}: expected seconds") from None
    bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
    gone, w = None, None
    if app.faults.take_gone():
        gone = errors.gone("too old resource version: injected fault")
    else:
        try:
            w = app.store.open_watch(
                route.rt, namespace=route.namespace, pred=pred,
                resource_version=q.get("resourceVersion"),
                send_initial_events=q.get("sendInitialEvents") in ("true", "1"))
        except errors.ApiError as exc:
            if exc.code != 410:
                raise
            gone = exc
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Transfer-Encoding", "chunked")
    h.send_header("Cache-Control", "no-cache, private")
    h.end_headers()
    if gone is not None:
        _chunk(h, watch_.error_line(gone.status()))
        _chunk(h, b"")
        return
    try:
        _stream(h, w, route.rt, deadline=time.monotonic() + timeout, bookmarks=bookmarks)
    finally:
        app.store.close_watch(w)


def _chunk(h, data: bytes) -> None:
    h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    h.wfile.flush()


def _stream(h, w: watch_.Watcher, rt: resources.ResourceType, *, deadline: float,
            bookmarks: bool) -> None:
    interval = h.app.bookmark_interval
    as_table = table.wants_table(h.headers.get("Accept", ""))
    include = h.query.get("includeObject") or "Metadata"
    next_bm = time.monotonic() + interval
    while True:
        now = time.monotonic()
        if now >= deadline:
            _chunk(h, b"")  # clean end of the stream; the connection stays usable
            return
        wait = min(deadline, next_bm if bookmarks else now + 1.0) - now
        batch = _take(w, max(wait, 0.0))
        if batch is watch_.CLOSED:
            _abort(h)
            return
        if batch and as_table:
            batch = [table.watch_line(rt.plural, line, include=include) for line in batch]
        if batch:
            _chunk(h, b"".join(batch))
        elif _peer_closed(h.connection):
            h.close_connection = True
            return
        if bookmarks and time.monotonic() >= next_bm:
            rv = h.app.store.bookmark_rv(w)
            if rv is not None:
                _chunk(h, watch_.bookmark_line(api_version=rt.api_version, kind=rt.kind, rv=rv))
            next_bm = time.monotonic() + interval


def _take(w: watch_.Watcher, wait: float):
    """Up to 512 queued lines (waiting at most `wait` for the first), or CLOSED."""
    try:
        first = w.queue.get(timeout=wait) if wait > 0 else w.queue.get_nowait()
    except queue.Empty:
        return []
    batch = [first]
    while len(batch) < 512:
        try:
            batch.append(w.queue.get_nowait())
        except queue.Empty:
            break
    if any(item is watch_.CLOSED for item in batch):
        return watch_.CLOSED
    return batch


def _peer_closed(sock) -> bool:
    """An idle watch notices a client that went away (EOF) instead of lingering."""
    try:
        readable, _w, _x = select.select([sock], [], [], 0)
        if not readable:
            return False
        sock.setblocking(False)
        try:
            return sock.recv(1) == b""
        finally:
            sock.setblocking(True)
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ValueError):
        return True


def _abort(h) -> None:
    """Drop the connection mid-stream, with no final chunk."""
    h.close_connection = True
    try:
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
