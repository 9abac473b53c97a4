"""Conformance with the real `kubernetes` client: label and field selectors, list paging,
watch with bookmarks and timeouts, replay from a resourceVersion, 410 Gone on a compacted
resourceVersion, and the fault injection hooks (forced 410, dropped watches, 500s)."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException

from tests.kubeapi.conftest import pod


@pytest.fixture
def labelled(core, ns):
    specs = [("a1", {"app": "a", "tier": "web"}, "node-a"), ("a2", {"app": "a"}, "node-b"),
             ("b1", {"app": "b", "tier": "db"}, "node-a"), ("c1", {}, "node-b")]
    for name, labels, node in specs:
        core.create_namespaced_pod(ns, pod(name, labels=labels, node=node))
    core.patch_namespaced_pod_status("c1", ns, {"status": {"phase": "Succeeded"}})
    return ns


@pytest.mark.parametrize("selector, expected", [
    ("app=a", ["a1", "a2"]), ("app==a", ["a1", "a2"]), ("app!=a", ["b1", "c1"]),
    ("app in (a,b)", ["a1", "a2", "b1"]), ("app notin (a)", ["b1", "c1"]),
    ("tier", ["a1", "b1"]), ("!tier", ["a2", "c1"]), ("app=a,tier", ["a1"]),
    ("app in (a, b),!tier", ["a2"]),
])
def test_label_selectors(core, labelled, selector, expected):
    items = core.list_namespaced_pod(labelled, label_selector=selector).items
    assert sorted(p.metadata.name for p in items) == expected


@pytest.mark.parametrize("selector, expected", [
    ("spec.nodeName=node-a", ["a1", "b1"]), ("spec.nodeName!=node-a", ["a2", "c1"]),
    ("status.phase=Succeeded", ["c1"]), ("status.phase!=Succeeded", ["a1", "a2", "b1"]),
    ("metadata.name=a2", ["a2"]), ("spec.nodeName=node-b,status.phase=Running", ["a2"]),
])
def test_field_selectors(core, labelled, selector, expected):
    items = core.list_namespaced_pod(labelled, field_selector=selector).items
    assert sorted(p.metadata.name for p in items) == expected


def test_field_selector_metadata_namespace_across_namespaces(core, labelled):
    items = core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={labelled}")
    assert len(items.items) == 4


def test_list_paging_and_too_old_continue_is_410(core, labelled, server):
    first = core.list_namespaced_pod(labelled, limit=3)
    assert len(first.items) == 3 and first.metadata._continue
    core.create_namespaced_pod(labelled, pod("z9"))  # the store moves on
    rest = core.list_namespaced_pod(labelled, limit=3, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["c1", "z9"]
    assert not rest.metadata._continue
    server.compact()
    with pytest.raises(ApiException) as err:
        core.list_namespaced_pod(labelled, limit=3, _continue=first.metadata._continue)
    assert err.value.status == 410


def _collect(func, *args, count: int, **kwargs) -> list:
    w = watch.Watch()
    out = []
    for ev in w.stream(func, *args, **kwargs):
        out.append(ev)
        if len(out) >= count:
            w.stop()
    return out


def test_watch_from_list_rv_sees_changes_and_bookmarks(core, ns):
    rv = core.list_namespaced_pod(ns).metadata.resource_version

    def later():
        time.sleep(0.1)
        core.create_namespaced_pod(ns, pod("w1", labels={"app": "w"}))
        core.patch_namespaced_pod("w1", ns, {"metadata": {"labels": {"x": "1"}}})
        core.delete_namespaced_pod("w1", ns)

    threading.Thread(target=later).start()
    events = _collect(core.list_namespaced_pod, ns, resource_version=rv, count=4,
                      allow_watch_bookmarks=True, timeout_seconds=10)
    kinds = [e["type"] for e in events]
    assert [k for k in kinds if k != "BOOKMARK"][:3] == ["ADDED", "MODIFIED", "DELETED"]
    if "BOOKMARK" not in kinds:
        events = _collect(core.list_namespaced_pod, ns, resource_version=rv, count=4,
                          allow_watch_bookmarks=True, timeout_seconds=10)
        assert events[-1]["type"] == "BOOKMARK"
    bookmark = [e for e in events if e["type"] == "BOOKMARK"][-1]
    # the client hands bookmarks over undecoded (they carry only metadata.resourceVersion)
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_watch_bookmark_carries_current_rv(core, ns, server):
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    ev = _collect(core.list_namespaced_pod, ns, resource_version=rv, count=1,
                  allow_watch_bookmarks=True, timeout_seconds=5)[0]
    assert ev["type"] == "BOOKMARK"
    assert int(ev["object"]["metadata"]["resourceVersion"]) == server.store.rv


def test_watch_without_rv_starts_with_added_for_existing(core, labelled):
    events = _collect(core.list_namespaced_pod, labelled, count=4, timeout_seconds=5)
    assert {e["type"] for e in events} == {"ADDED"}
    assert sorted(e["object"].metadata.name for e in events) == ["a1", "a2", "b1", "c1"]


def test_watch_replays_history_from_rv_with_selector_transitions(core, ns):
    core.create_namespaced_pod(ns, pod("r1", labels={"app": "x"}))
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    core.patch_namespaced_pod("r1", ns, {"metadata": {"labels": {"app": "y"}}})  # leaves
    core.patch_namespaced_pod("r1", ns, {"metadata": {"labels": {"app": "x"}}})  # returns
    events = _collect(core.list_namespaced_pod, ns, resource_version=rv, count=2,
                      label_selector="app=x", timeout_seconds=5)
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]


def test_watch_field_selector_node_name(core, ns):
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    core.create_namespaced_pod(ns, pod("on-b", node="node-b"))
    core.create_namespaced_pod(ns, pod("on-a", node="node-a"))
    events = _collect(core.list_namespaced_pod, ns, resource_version=rv, count=1,
                      field_selector="spec.nodeName=node-a", timeout_seconds=5)
    assert events[0]["object"].metadata.name == "on-a"


def test_watch_timeout_seconds_ends_the_stream(core, ns):
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    start = time.monotonic()
    events = list(watch.Watch().stream(core.list_namespaced_pod, ns, resource_version=rv,
                                       timeout_seconds=1))
    assert events == [] and 0.8 < time.monotonic() - start < 5


def test_watch_from_compacted_rv_is_410(core, ns, server):
    old_rv = core.list_namespaced_pod(ns).metadata.resource_version
    core.create_namespaced_pod(ns, pod("after"))
    server.compact()
    with pytest.raises(ApiException) as err:
        _collect(core.list_namespaced_pod, ns, resource_version=old_rv, count=1,
                 timeout_seconds=5)
    assert err.value.status == 410


def test_history_window_compacts_by_size(tmp_path, ns):
    from tests.support.kubeapi import store

    st = store.Store(history_size=5)
    rv = st.rv
    for i in range(10):
        st.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
    assert st.compacted_rv > rv
    with pytest.raises(Exception) as err:
        st.open_watch(st._rt_for_body({"apiVersion": "v1", "kind": "ConfigMap"}),
                      namespace=None, pred=None, resource_version=str(rv))
    assert getattr(err.value, "code", None) == 410


def test_forced_410_fault(core, ns, server):
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    server.faults.force_gone(1)
    with pytest.raises(ApiException) as err:
        _collect(core.list_namespaced_pod, ns, resource_version=rv, count=1, timeout_seconds=5)
    assert err.value.status == 410
    # the next watch is fine again
    core.create_namespaced_pod(ns, pod("ok"))
    assert _collect(core.list_namespaced_pod, ns, resource_version=rv, count=1,
                    timeout_seconds=5)[0]["type"] == "ADDED"


def _raw_watch(server, path: str):
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=server.ca_path)
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port)),
                           server_hostname="127.0.0.1")
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  f"{server.token}\r\n\r\n").encode())
    sock.settimeout(10)
    return sock


def test_drop_watches_cuts_open_streams(core, ns, server):
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    sock = _raw_watch(server, f"/api/v1/namespaces/{ns}/pods?watch=true&resourceVersion={rv}")
    buf = b""
    while b"\r\n\r\n" not in buf:  # headers are sent once the watch is registered
        buf += sock.recv(65536)
    assert server.faults.drop_watches() >= 1
    while chunk := sock.recv(65536):
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 200")
    assert not buf.endswith(b"0\r\n\r\n")  # cut: no final chunk, as a crashed server


def test_watch_client_sees_dropped_connection_as_an_error(core, ns, server):
    """A cut stream reaches the real client as a protocol error, as a crashed API server's
    would; the caller must re-watch."""
    import urllib3

    rv = core.list_namespaced_pod(ns).metadata.resource_version
    outcome = {}

    def run():
        try:
            for ev in watch.Watch().stream(core.list_namespaced_pod, ns, resource_version=rv,
                                           timeout_seconds=20):
                outcome.setdefault("events", []).append(ev["object"].metadata.name)
        except Exception as exc:
            outcome["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    core.create_namespaced_pod(ns, pod("before"))
    deadline = time.monotonic() + 5
    while not outcome.get("events") and time.monotonic() < deadline:
        time.sleep(0.02)
    server.faults.drop_watches()
    t.join(10)
    assert not t.is_alive() and outcome["events"] == ["before"]
    assert isinstance(outcome["error"], urllib3.exceptions.ProtocolError)


def test_injected_500s_then_recovery(core, ns, server):
    server.faults.fail(2, code=500, method="GET", path=rf"/namespaces/{ns}/pods$")
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            core.list_namespaced_pod(ns)
        assert err.value.status == 500
    assert core.list_namespaced_pod(ns).items == []


def test_injected_delay(core, ns, server):
    server.faults.delay(0.3, path=rf"/namespaces/{ns}/configmaps", count=1)
    start = time.monotonic()
    core.list_namespaced_config_map(ns)
    assert time.monotonic() - start >= 0.3


def test_many_concurrent_watches(server, ns):
    """Hundreds of open watches are served at once; each sees the event."""
    import json
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=server.ca_path)
    rv = server.store.rv
    socks = []
    for _ in range(200):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port)),
                            server_hostname="127.0.0.1")
        s.sendall((f"GET /api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}"
                   f"&timeoutSeconds=20 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                   f"{server.token}\r\n\r\n").encode())
        socks.append(s)
    deadline = time.monotonic() + 10
    while server.store.watcher_count() < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.store.watcher_count() >= 200
    server.store.create({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "fanout", "namespace": ns}})
    seen = 0
    for s in socks:
        s.settimeout(10)
        buf = b""
        while b'"fanout"' not in buf:
            buf += s.recv(65536)
        seen += 1
        s.close()
    assert seen == 200
    line = buf[buf.index(b'{"type"'):].split(b"\n")[0]
    assert json.loads(line)["type"] == "ADDED"
