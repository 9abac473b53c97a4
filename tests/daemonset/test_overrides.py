"""Override precedence for DaemonSet discovery, case by case (issue 4 "Overrides"):
explicit config > override file (config overrides[] then --override-file) > annotations >
discovered; override file errors name the entry."""

from __future__ import annotations

import pytest

from coral_lib import config, overrides, service
from coral_lib.agent import node
from coral_lib.discovery import pods
from tests.daemonset.conftest import pod

ANNOTATED = {"coral.io/service-type": "grpc", "coral.io/health-endpoint": "/annot"}
RULE = config.OverrideRule.model_validate(
    {"selector": {"podLabel": "app=web"}, "service": {"type": "rule-type",
                                                      "labels": {"team": "pay"}}})
FILE_RULE = config.OverrideRule.model_validate(
    {"selector": {"namespace": "shop", "podName": "web*"}, "service": {"type": "file-type"}})
EXPLICIT = config.ExplicitService.model_validate(
    {"name": "web", "port": 8080, "type": "explicit-type", "health": {"endpoint": "/x"}})

# (annotations, rules, explicit) -> (service_type, health_endpoint, provenance, sources)
CASES = {
    "discovered only": (
        {}, (), (), ("http", "", service.Provenance.DISCOVERED, {})),
    "annotations beat discovered": (
        ANNOTATED, (), (),
        ("grpc", "/annot", service.Provenance.OVERRIDDEN,
         {"service_type": "annotation", "health_endpoint": "annotation"})),
    "config overrides beat annotations, per field": (
        ANNOTATED, (RULE,), (),
        ("rule-type", "/annot", service.Provenance.OVERRIDDEN,
         {"service_type": "overrides[0]", "health_endpoint": "annotation",
          "labels": "overrides[0]"})),
    "override file (after config rules) beats config rules and annotations": (
        ANNOTATED, (RULE, FILE_RULE), (),
        ("file-type", "/annot", service.Provenance.OVERRIDDEN,
         {"service_type": "overrides[1]", "health_endpoint": "annotation",
          "labels": "overrides[0]"})),
    "explicit config beats everything": (
        ANNOTATED, (RULE, FILE_RULE), (EXPLICIT,),
        ("explicit-type", "/x", service.Provenance.EXPLICIT, {})),
    "an override equal to the discovered value is no override": (
        {"coral.io/service-type": "http"}, (), (),
        ("http", "", service.Provenance.DISCOVERED, {})),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_override_precedence_table(case):
    annotations, rules, explicit, expected = CASES[case]
    body = pod("web", labels={"app": "web"}, annotations=annotations)
    (final,) = node.final_services(
        pods.candidates(body), annotations={"shop/web": annotations}, rules=rules,
        explicit=explicit, node_name="node-a")
    assert (final.service_type, final.health_endpoint, final.provenance,
            dict(final.sources)) == expected
    if final.provenance == service.Provenance.EXPLICIT:
        assert final.pod_name == "" and final.node_name == "node-a"
    else:
        assert (final.namespace, final.pod_name, final.container_name) == ("shop", "web", "app")


def test_service_name_annotation_renames_and_says_so():
    body = pod("web-1", labels={"app": "web"}, annotations={"coral.io/service-name": "shop-api"})
    (final,) = node.final_services(pods.candidates(body), annotations={
        "shop/web-1": body["metadata"]["annotations"]}, rules=(), explicit=(), node_name="n")
    assert final.component_name == "shop-api" and final.sources == {"component_name":
                                                                     "annotation"}
    line = overrides.explain(final)
    assert "service=shop-api" in line and "won.component_name=annotation" in line
    assert "provenance=OVERRIDDEN" in line and "pod_name=web-1" in line


def _cfg():
    return config.AgentConfig.model_validate({"agent": {"id": "x"}})


@pytest.mark.parametrize(("text", "key"), [
    ("- selector: {podLabel: app=a}\n  service: {type: t}\n"
     "- selector: {podLabel: nope}\n  service: {type: t}\n", "overrides[1].selector.podLabel"),
    ("overrides:\n  - selector: {}\n    service: {type: t}\n", "overrides[0].selector"),
    ("overrides:\n  - selector: {namespace: a}\n    service: {health: {endpoint: x}}\n",
     "overrides[0].service.health.endpoint"),
])
def test_override_file_errors_name_the_entry(tmp_path, text, key):
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    opts = node.NodeOptions(node_name="node-a", override_file=str(path))
    with pytest.raises(config.ConfigError) as caught:
        node.build(_cfg(), opts, api=object())
    assert f"config file {path}: key {key}" in str(caught.value)


def test_missing_node_name_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(config.ConfigError, match="--node-name.*NODE_NAME"):
        node.build(_cfg(), node.NodeOptions(), api=object())
