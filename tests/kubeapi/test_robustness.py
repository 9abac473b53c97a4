"""Bad input never crashes the fixture: random bodies, paths, queries and content types get
a 2xx or a 4xx Status (never a 500 from a fixture bug), and the server keeps serving."""

from __future__ import annotations

import json
import socket
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kubeapi.conftest import pod
from tests.support.kubeapi import errors

PATHS = ["/api/v1/namespaces/default/pods", "/api/v1/namespaces/default/pods/x",
         "/api/v1/namespaces/default/pods/x/status", "/apis/apps/v1/namespaces/default/"
         "deployments/d", "/api/v1/nodes/n", "/api/v1/namespaces/x", "/apis/nope/v1/things",
         "/api/v1/namespaces/default/configmaps", "/apis/apps/v1", "/openapi/v3/api/v1"]
CTYPES = ["application/json", "application/merge-patch+json", "application/json-patch+json",
          "application/strategic-merge-patch+json", "application/apply-patch+yaml",
          "text/plain", ""]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["apiVersion", "kind", "metadata", "name", "spec", "labels",
                         "containers", "op", "path", "value", "x"]), inner, max_size=5),
    max_leaves=12)
bodies = st.one_of(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode()))
queries = st.sampled_from(["", "?watch=true&timeoutSeconds=0", "?labelSelector=a%20in%20(",
                           "?fieldSelector=x", "?limit=abc", "?continue=%%%",
                           "?resourceVersion=abc&watch=1", "?fieldManager=f&force=true",
                           "?dryRun=All", "?timeoutSeconds=x&watch=1"])


@pytest.fixture(scope="module")
def targets(server):
    """Objects the random requests can hit, recreated as the fuzz deletes them."""
    def ensure():
        for obj in (pod("x"), {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}},
                    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                     "spec": {"template": {"spec": {"containers": [{"name": "c",
                                                                     "image": "i"}]}}}}):
            try:
                server.store.create(obj, namespace="default")
            except errors.ApiError:
                pass
    return ensure


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
       path=st.sampled_from(PATHS), query=queries, ctype=st.sampled_from(CTYPES), body=bodies)
def test_random_requests_never_crash(server, targets, method, path, query, ctype, body):
    targets()
    ctx = ssl.create_default_context(cafile=server.ca_path)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                         server_hostname="127.0.0.1") as sock:
        head = (f"{method} {path}{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                f"{server.token}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    assert status < 500, data[:600]
    if status >= 400:
        doc = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert doc["kind"] == "Status" and doc["message"]


def test_server_still_serves_after_garbage(server, core):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01garbage-not-tls\r\n\r\n")
        sock.recv(100)
    assert core.list_namespace().items
