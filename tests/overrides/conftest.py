"""Fixtures for override/provenance tests: candidate records and config objects."""

from __future__ import annotations

import pytest

from coral_lib import config, service


def pod_candidate(**changes: object) -> service.ServiceInfo:
    base = dict(component_name="payments-api-7d9f", port=8080, health_endpoint="/ready",
                service_type="tcp", labels={"app": "payments-api"}, namespace="payments",
                pod_name="payments-api-7d9f-x2", container_name="api", node_name="n1")
    base.update(changes)
    return service.ServiceInfo(**base)  # type: ignore[arg-type]


def host_candidate(**changes: object) -> service.ServiceInfo:
    base = dict(component_name="python3", port=8080, process_name="python3", pid=4242)
    base.update(changes)
    return service.ServiceInfo(**base)  # type: ignore[arg-type]


def rule(selector: dict, service_fields: dict) -> config.OverrideRule:
    return config.OverrideRule.model_validate({"selector": selector, "service": service_fields})


def explicit(**fields: object) -> config.ExplicitService:
    return config.ExplicitService.model_validate(fields)


@pytest.fixture
def pod() -> service.ServiceInfo:
    return pod_candidate()


@pytest.fixture
def host() -> service.ServiceInfo:
    return host_candidate()
