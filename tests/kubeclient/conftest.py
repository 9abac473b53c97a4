"""Fixtures: the API server fixture (token auth) and a variant that requires client
certificates, plus kubeconfig writers for the credentials under test."""

from __future__ import annotations

import base64
import pathlib
import ssl

import pytest
import yaml

from tests.support.kubeapi import KubeAPIServer, tls

NODES = ("node-a", "node-b")


def pod(name: str, *, node: str = "node-a", namespace: str = "shop") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]}}


def write_kubeconfig(path: pathlib.Path, *, server: str, cluster: dict | None = None,
                     user: dict | None = None, context: str = "test") -> str:
    """A kubeconfig with one context `context`; cluster/user fields as given."""
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
           "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
           "users": [{"name": "u", "user": user or {}}],
           "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}]}
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def kubeapi(tmp_path):
    """The API server fixture: token auth, two nodes, quick bookmarks, namespace "shop"."""
    with KubeAPIServer(tmp_path / "kubeapi", nodes=NODES, bookmark_interval=0.2) as server:
        server.store.create({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": "shop"}})
        yield server


class ClientCerts:
    """A client CA the server trusts and one client certificate it issued."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.ca_pem, ca_key = tls.make_ca("kubeclient-test-client-ca")
        self.cert_pem, self.key_pem = tls.issue_cert(
            self.ca_pem, ca_key, common_name="system:node:node-a", dns_names=[], client=True)
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_path, self.key_path = directory / "client.crt", directory / "client.key"
        self.cert_path.write_bytes(self.cert_pem)
        self.key_path.write_bytes(self.key_pem)


@pytest.fixture
def cert_kubeapi(kubeapi, tmp_path):
    """The same server, switched to client-certificate auth: TLS demands a certificate
    signed by the client CA, and bearer tokens no longer matter (token unset)."""
    certs = ClientCerts(tmp_path / "client")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(kubeapi.state_dir / "server.crt", kubeapi.state_dir / "server.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=certs.ca_pem.decode())
    # The fixture reads ssl_context on every accepted connection; it has no client-cert
    # option of its own, so the test swaps the context on the running server.
    kubeapi._httpd.ssl_context = ctx
    kubeapi.token = ""
    yield kubeapi, certs
