"""Override rule selectors, annotation parsing and the per-service explain log line."""

from __future__ import annotations

import pytest

from coral_lib import config, overrides, service

WHERE = dict(pod_labels={"app": "payments-api", "tier": "web"}, namespace="payments",
             pod_name="payments-api-7d9f-x2", process_name="java", port=8080)

RULE_CASES = [
    ({"podLabel": "app=payments-api"}, True),
    ({"podLabel": "app=other"}, False),
    ({"podLabel": "missing=x"}, False),
    ({"podLabel": "app = payments-api"}, True),
    ({"namespace": "payments"}, True),
    ({"namespace": "pay*"}, True),
    ({"namespace": "checkout"}, False),
    ({"podName": "payments-api-*"}, True),
    ({"podName": "payments-api"}, False),
    ({"process": "java"}, True),
    ({"process": "python*"}, False),
    ({"port": 8080}, True),
    ({"port": 9090}, False),
    ({"podLabel": "app=payments-api", "namespace": "payments", "port": 8080}, True),
    ({"podLabel": "app=payments-api", "namespace": "checkout"}, False),
]


@pytest.mark.parametrize(("selector", "expected"), RULE_CASES)
def test_rule_matches_every_given_criterion(selector, expected):
    sel = config.OverrideSelector.model_validate(selector)
    assert overrides.rule_matches(sel, **WHERE) is expected


def test_annotation_layer_reads_all_coral_annotations():
    layer = overrides.annotation_layer({
        "coral.io/service-name": "pay", "coral.io/health-endpoint": "/hz",
        "coral.io/health-interval": "15s", "coral.io/service-type": "grpc", "coral.io/port": "9000",
        "unrelated": "x",
    })
    assert layer.source == "annotation" and layer.problems == ()
    assert layer.fields == {"component_name": "pay", "health_endpoint": "/hz",
                            "health_interval_seconds": 15.0, "service_type": "grpc", "port": 9000}


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("coral.io/port", "http", "expected a port number 1-65535"),
    ("coral.io/port", "70000", "expected a port number 1-65535"),
    ("coral.io/health-interval", "soon", "invalid duration 'soon'"),
    ("coral.io/health-endpoint", "healthz", "expected a path like /healthz"),
])
def test_annotation_layer_bad_values_are_skipped_and_named(name, value, problem):
    layer = overrides.annotation_layer({name: value, "coral.io/service-type": "http"})
    assert layer.fields == {"service_type": "http"}
    (message,) = layer.problems
    assert message.startswith(f"annotation {name}={value!r} ignored: ") and problem in message


def test_annotation_layer_empty_values_are_ignored():
    assert overrides.annotation_layer({"coral.io/service-name": "  "}).fields == {}


def test_explain_one_line_per_service_names_winning_source_per_field():
    record = service.ServiceInfo(
        component_name="pay", port=8080, namespace="payments", pod_name="p-1", node_name="n1",
        provenance=service.Provenance.OVERRIDDEN,
        sources={"service_type": "annotation", "component_name": "overrides[0]"})
    assert overrides.explain(record) == (
        "service=pay port=8080 namespace=payments pod_name=p-1 node_name=n1 "
        "provenance=OVERRIDDEN won.component_name=overrides[0] won.service_type=annotation")


def test_explain_quotes_values_with_spaces_and_shows_discovered():
    record = service.ServiceInfo(component_name="my svc", port=1)
    assert overrides.explain(record) == 'service="my svc" port=1 provenance=DISCOVERED'
