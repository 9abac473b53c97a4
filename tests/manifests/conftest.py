"""Fixtures for the manifest tests: one set of TLS material, the modes and variants."""

from __future__ import annotations

import pytest

from coral_lib import manifests
from coral_lib.webhook import certs

# (id, mode, settings overrides): every variant the renderers have.
VARIANTS = [
    ("daemonset", "daemonset", {}),
    ("daemonset-observe-only", "daemonset", {"observe_only": True}),
    ("webhook", "webhook", {}),
    ("webhook-fail-closed", "webhook", {"failure_policy": "Fail", "webhook_replicas": 3}),
    ("webhook-cert-manager", "webhook", {"cert_mode": "cert-manager"}),
    ("sidecar", "sidecar", {}),
    ("sidecar-old-cluster-bpf", "sidecar", {"kubernetes_version": "1.28", "enable_bpf": True}),
    ("colony", "colony", {}),
    ("colony-5-replicas", "colony", {"colony_replicas": 5}),
]


@pytest.fixture(scope="session")
def tls() -> certs.TLSMaterial:
    return certs.generate(service="coral-webhook", namespace="coral-system")


@pytest.fixture(params=VARIANTS, ids=[v[0] for v in VARIANTS])
def rendered(request: pytest.FixtureRequest, tls: certs.TLSMaterial) -> tuple[str, list[dict]]:
    _, mode, overrides = request.param
    settings = manifests.ManifestSettings(tls=tls, **overrides)
    return mode, manifests.render(mode, settings)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]
