"""Fixtures for the webhook tests: golden cases, settings, schema validation, HTTPS servers."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import pathlib
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from coral_lib.webhook import certs, server
from coral_lib.webhook import settings as settings_mod

TESTDATA = pathlib.Path(__file__).parent / "testdata"
GOLDEN_SUFFIX = ".injected.yaml"
# kubernetes-validate 1.37 ships schemas 1.25 .. 1.37; 1.30 is the oldest with native
# sidecars on by default that our settings default to.
SCHEMA_VERSION = "1.30"
UPDATE_GOLDENS = os.environ.get("CORAL_UPDATE_GOLDENS") == "1"
DEFAULT_LABELS = {"coral.io/inject": "true"}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    pod: dict[str, Any]
    namespace: str
    namespace_labels: dict[str, str]
    settings: settings_mod.InjectSettings

    @property
    def golden(self) -> pathlib.Path:
        return TESTDATA / f"{self.name}{GOLDEN_SUFFIX}"


def case_names() -> list[str]:
    """Every <case>.yaml input under testdata/ (new inputs are picked up automatically)."""
    return sorted(
        p.name[: -len(".yaml")]
        for p in TESTDATA.glob("*.yaml")
        if not p.name.endswith(GOLDEN_SUFFIX)
    )


def load_case(name: str) -> Case:
    """A case file is a Pod, optionally followed by a document with namespace,
    namespace_labels (default coral.io/inject=true) and settings overrides."""
    docs = list(yaml.safe_load_all((TESTDATA / f"{name}.yaml").read_text()))
    pod, extra = docs[0], (docs[1] if len(docs) > 1 else {}) or {}
    namespace = extra.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "default"
    return Case(
        name=name,
        pod=pod,
        namespace=namespace,
        namespace_labels=extra.get("namespace_labels", DEFAULT_LABELS),
        settings=settings_mod.from_mapping(extra.get("settings", {}), source=name),
    )


def validate_schema(obj: dict[str, Any]) -> None:
    """Strict OpenAPI validation (unknown fields are errors) against SCHEMA_VERSION."""
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise AssertionError(f"{obj.get('kind')} invalid at {path}: {exc.message}") from None


@pytest.fixture(params=case_names())
def case(request: pytest.FixtureRequest) -> Case:
    return load_case(request.param)


@dataclasses.dataclass
class Webhook:
    """A running HTTPS webhook on loopback and a way to talk to it."""

    server: Any
    port: int
    ca_file: str
    labels: dict[str, dict[str, str]]

    def connection(self) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cafile=self.ca_file)
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=10)

    def post(self, body: bytes | dict, *, conn: http.client.HTTPSConnection | None = None,
             path: str = "/mutate") -> tuple[int, bytes]:
        own = conn is None
        conn = conn or self.connection()
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        if own:
            conn.close()
        return response.status, payload

    def get(self, path: str) -> tuple[int, str]:
        conn = self.connection()
        conn.request("GET", path)
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
        return response.status, text


def admission_review(pod: dict, *, namespace: str, uid: str = "0000-uid") -> dict:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": False,
        },
    }


WebhookFactory = Callable[[settings_mod.InjectSettings], Webhook]


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tls = certs.generate(service="coral-webhook", namespace="coral-system", ips=["127.0.0.1"])
    folder = tmp_path_factory.mktemp("tls")
    files = {"ca": folder / "ca.crt", "cert": folder / "tls.crt", "key": folder / "tls.key"}
    files["ca"].write_bytes(tls.ca_pem)
    files["cert"].write_bytes(tls.cert_pem)
    files["key"].write_bytes(tls.key_pem)
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(scope="session")
def webhooks(tls_files: dict[str, str]) -> Iterator[WebhookFactory]:
    """One HTTPS server per distinct settings, shared by the session; the labels dict is
    the namespace-labels source (tests set an entry before posting)."""
    running: dict[settings_mod.InjectSettings, Webhook] = {}

    def get(settings: settings_mod.InjectSettings) -> Webhook:
        if settings not in running:
            labels: dict[str, dict[str, str]] = {}
            srv, port = server.start_in_thread(
                cert_file=tls_files["cert"], key_file=tls_files["key"], settings=settings,
                namespace_labels=labels,
            )
            running[settings] = Webhook(srv, port, tls_files["ca"], labels)
        return running[settings]

    yield get
    for hook in running.values():
        hook.server.shutdown()
        hook.server.server_close()


@pytest.fixture
def webhook(webhooks: WebhookFactory) -> Webhook:
    return webhooks(settings_mod.InjectSettings())
