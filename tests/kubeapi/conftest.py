"""Fixtures for the API server fixture's conformance suite: one server per module."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
import uuid

import pytest
from kubernetes import client, config

from tests.support import tools
from tests.support.kubeapi import KubeAPIServer

KUBECTL = tools.kubectl()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with KubeAPIServer(tmp_path_factory.mktemp("kubeapi"), nodes=["node-a", "node-b"],
                       bookmark_interval=0.2) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_client(server):
    api = config.new_client_from_config(config_file=server.kubeconfig_path)
    yield api
    api.close()


@pytest.fixture(scope="module")
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def apps(api_client):
    return client.AppsV1Api(api_client)


@pytest.fixture
def ns(server):
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def pod(name: str, *, labels: dict | None = None, node: str | None = None) -> dict:
    spec = {"containers": [{"name": "app", "image": "busybox",
                            "ports": [{"containerPort": 8080, "name": "http"}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


@pytest.fixture
def raw(server):
    """raw(method, path, body=None, content_type=...) -> (status, parsed JSON) over HTTPS."""
    ctx = ssl.create_default_context(cafile=server.ca_path)

    def call(method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json", token: str | None = None):
        req = urllib.request.Request(server.url + path, data=body, method=method, headers={
            "Authorization": f"Bearer {token if token is not None else server.token}",
            "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    return call


@pytest.fixture
def kubectl(server):
    def run(*args: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, "--kubeconfig", server.kubeconfig_path, *args],
                              capture_output=True, text=True, timeout=timeout, check=check)

    return run
