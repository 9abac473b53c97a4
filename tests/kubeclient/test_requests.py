"""List / watch / get against the API server fixture with the agent's own client
(issue 4 "Discovery engine": fieldSelector, resourceVersion, bookmarks, watch timeouts,
410 Gone; errors carry the HTTP status)."""

from __future__ import annotations

import threading
import time

import pytest

from coral_lib.discovery import kubeclient
from tests.kubeclient.conftest import pod


@pytest.fixture
def api(kubeapi):
    return kubeclient.Client(kubeclient.from_kubeconfig(kubeapi.kubeconfig_path))


def _collect(stream: kubeclient.Watch, *, until, limit: float = 10.0) -> list[dict]:
    """Events until `until(events)` is true; the stream is closed from a timer if stuck."""
    timer = threading.Timer(limit, stream.close)
    timer.start()
    events: list[dict] = []
    try:
        for event in stream:
            events.append(event)
            if until(events):
                break
    finally:
        timer.cancel()
        stream.close()
    return events


def test_list_with_field_selector_and_resource_version(kubeapi, api):
    kubeapi.store.create(pod("here"))
    kubeapi.store.create(pod("there", node="node-b"))
    listed = api.list_pods(field_selector="spec.nodeName=node-a")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["here"]
    assert int(listed["metadata"]["resourceVersion"]) > 0
    in_ns = api.list_pods(namespace="shop", label_selector="app=there")
    assert [p["metadata"]["name"] for p in in_ns["items"]] == ["there"]


def test_watch_from_resource_version_streams_events_and_bookmarks(kubeapi, api):
    rv = api.list_pods(field_selector="spec.nodeName=node-a")["metadata"]["resourceVersion"]
    stream = api.watch_pods(field_selector="spec.nodeName=node-a", resource_version=rv,
                            timeout_seconds=30)
    kubeapi.store.create(pod("elsewhere", node="node-b"))  # filtered out: bookmarks only
    kubeapi.store.create(pod("mine"))
    events = _collect(stream, until=lambda ev: any(e["type"] == "ADDED" for e in ev)
                      and any(e["type"] == "BOOKMARK" for e in ev))
    added = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert added == ["mine"]
    bookmark = next(e for e in events if e["type"] == "BOOKMARK")
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_watch_without_bookmarks_gets_none(kubeapi, api):
    rv = api.list_pods()["metadata"]["resourceVersion"]
    stream = api.watch_pods(resource_version=rv, timeout_seconds=1, allow_bookmarks=False)
    assert _collect(stream, until=lambda ev: False) == []


def test_watch_ends_at_timeout_seconds(api):
    """The server ends the stream after timeoutSeconds; iteration just stops."""
    rv = api.list_pods()["metadata"]["resourceVersion"]
    started = time.monotonic()
    list(api.watch_pods(resource_version=rv, timeout_seconds=1))
    assert 0.9 <= time.monotonic() - started < 5


def test_watch_from_a_compacted_resource_version_says_410(kubeapi, api):
    """A compacted resourceVersion: an ERROR event whose Status has code 410."""
    rv = api.list_pods()["metadata"]["resourceVersion"]
    for i in range(3):
        kubeapi.store.create(pod(f"p{i}"))
    kubeapi.compact()
    events = _collect(api.watch_pods(resource_version=rv, timeout_seconds=5),
                      until=lambda ev: True)
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_http_410_is_an_api_error_with_status(kubeapi, api):
    kubeapi.faults.fail(1, code=410, path=r"/pods", watch=True)
    with pytest.raises(kubeclient.ApiError) as err:
        api.watch_pods(resource_version="1", timeout_seconds=5)
    assert err.value.status == 410


@pytest.mark.parametrize(("code", "reason"), [(500, "InternalError"), (503, "")])
def test_server_errors_carry_status(kubeapi, api, code, reason):
    kubeapi.faults.fail(1, code=code, path=r"/pods")
    with pytest.raises(kubeclient.ApiError) as err:
        api.list_pods()
    assert err.value.status == code and "injected fault" in str(err.value)


def test_missing_node_is_404_with_the_servers_message(api):
    with pytest.raises(kubeclient.ApiError) as err:
        api.read_node("no-such-node")
    assert err.value.status == 404 and "no-such-node" in err.value.message


def test_wrong_token_is_401(kubeapi, tmp_path):
    creds = kubeclient.from_kubeconfig(kubeapi.kubeconfig_path)
    api = kubeclient.Client(kubeclient.Credentials(server=creds.server, ca_pem=creds.ca_pem,
                                                   token="wrong"))
    with pytest.raises(kubeclient.ApiError) as err:
        api.list_pods()
    assert err.value.status == 401


def test_token_file_is_read_again_after_rotation(kubeapi, tmp_path, monkeypatch):
    """Bound service account tokens rotate: the file is read again (every 60 s; 0 here)."""
    monkeypatch.setattr(kubeclient, "TOKEN_REREAD_SECONDS", 0.0)
    token_file = tmp_path / "token"
    token_file.write_text("stale")
    creds = kubeclient.from_kubeconfig(kubeapi.kubeconfig_path)
    api = kubeclient.Client(kubeclient.Credentials(server=creds.server, ca_pem=creds.ca_pem,
                                                   token_file=str(token_file)))
    with pytest.raises(kubeclient.ApiError):
        api.list_pods()
    token_file.write_text(kubeapi.token)
    assert api.list_pods()["kind"] == "PodList"
