"""Fixtures: a colony with a short agentExpiry, the API server fixture, DaemonSet agents.

COMPONENT TEST (issue 14): the DaemonSet and sidecar agents here are plain processes (named
shortcuts, tests/daemonset/conftest.py and tests/sidecar_agent/conftest.py), so they can be
signalled and expired at will; the image-run agents are tests/kube_e2e."""

from __future__ import annotations

import pytest

from tests.daemonset.conftest import kubeapi, node_agents  # noqa: F401
from tests.support import kube_identity

EXPIRY = "4s"


@pytest.fixture
def colony_args(tmp_path, kubeapi):  # noqa: F811
    """TokenReview on the API server fixture (node agents) and agentExpiry of EXPIRY (the
    shortcut: the documented default is 15 minutes)."""
    settings = tmp_path / "colony.yaml"
    settings.write_text(f"agentExpiry: {EXPIRY}\nheartbeatInterval: 1s\n"
                        "degradedAfter: 2s\nunhealthyAfter: 3s\n")
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, tmp_path / "colony-kubeconfig")
    return ("--config", str(settings), "--token-review-kubeconfig", kubeconfig)
