"""Fixtures: the API server fixture and TokenReview for the sidecar harness's agent."""

from __future__ import annotations

from tests.sidecar_agent.conftest import colony_args, kubeapi  # noqa: F401
