"""Issue 2/4 acceptance: provenance merge and the override precedence table, case by case.

Precedence: explicit config > override file (config overrides[]) > annotations > discovered.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral_lib import config, overrides, service
from tests.overrides import conftest

P = service.Provenance


def test_merge_without_layers_is_discovered(pod):
    merged = overrides.merge(pod, layers=[])
    assert merged == pod
    assert merged.provenance == P.DISCOVERED and merged.sources == {}


def test_merge_layer_with_same_value_keeps_discovered(pod):
    merged = overrides.merge(pod, layers=[overrides.Layer("annotation", {"port": 8080})])
    assert merged.provenance == P.DISCOVERED and merged.sources == {}


def test_merge_layer_changes_field_overridden_with_source(pod):
    merged = overrides.merge(pod, layers=[overrides.Layer("annotation",
                                                          {"health_endpoint": "/healthz"})])
    assert merged.health_endpoint == "/healthz"
    assert merged.provenance == P.OVERRIDDEN
    assert merged.sources == {"health_endpoint": "annotation"}
    assert (merged.namespace, merged.pod_name, merged.port) == (pod.namespace, pod.pod_name, 8080)


def test_merge_higher_layer_setting_back_the_discovered_value_wins(pod):
    layers = [overrides.Layer("annotation", {"service_type": "grpc"}),
              overrides.Layer("overrides[0]", {"service_type": "tcp"})]
    merged = overrides.merge(pod, layers=layers)
    assert merged.service_type == "tcp" and merged.provenance == P.DISCOVERED


def test_merge_labels_merge_key_by_key(pod):
    layers = [overrides.Layer("annotation", {"labels": {"team": "a", "tier": "web"}}),
              overrides.Layer("overrides[0]", {"labels": {"team": "b"}})]
    merged = overrides.merge(pod, layers=layers)
    assert merged.labels == {"app": "payments-api", "team": "b", "tier": "web"}
    assert merged.sources == {"labels": "overrides[0]"}


def test_merge_unknown_layer_field_is_rejected():
    with pytest.raises(ValueError, match="unknown field.*name.*accepted: component_name"):
        overrides.Layer("x", {"name": "a"})


# Precedence table, one field (component_name) and one per-field mix.
# (annotation value, override rule values in order, explicit?, expected name, provenance, source)
PRECEDENCE = [
    ("discovered only", None, [], False, "payments-api-7d9f", P.DISCOVERED, None),
    ("annotation beats discovered", "ann", [], False, "ann", P.OVERRIDDEN, "annotation"),
    ("override beats discovered", None, ["ovr"], False, "ovr", P.OVERRIDDEN, "overrides[0]"),
    ("override beats annotation", "ann", ["ovr"], False, "ovr", P.OVERRIDDEN, "overrides[0]"),
    ("later override rule wins", None, ["o0", "o1"], False, "o1", P.OVERRIDDEN, "overrides[1]"),
    ("later rule wins over annotation", "ann", ["o0", "o1"], False, "o1", P.OVERRIDDEN,
     "overrides[1]"),
    # explicit services replace the record with their port and (final) name
    ("explicit beats everything", "ann", ["explicit-name"], True, "explicit-name", P.EXPLICIT,
     None),
    ("explicit beats discovered", None, [], True, "payments-api-7d9f", P.EXPLICIT, None),
]


@pytest.mark.parametrize(("case", "annotation", "rule_names", "with_explicit", "name",
                          "provenance", "source"), PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_override_precedence_table(pod, case, annotation, rule_names, with_explicit, name,
                                   provenance, source):
    annotations = {"coral.io/service-name": annotation} if annotation else {}
    rules = [conftest.rule({"podLabel": "app=payments-api"}, {"name": n}) for n in rule_names]
    explicit = [conftest.explicit(name=name, port=8080)] if with_explicit else []
    (result,) = overrides.apply([pod], rules=rules, explicit=explicit,
                                annotation_layers=lambda s: overrides.annotation_layer(annotations))
    assert result.component_name == name
    assert result.provenance == provenance
    assert result.sources.get("component_name") == source
    if with_explicit:  # nothing of the discovered/annotated record leaks into an explicit one
        assert (result.health_endpoint, result.service_type, result.labels) == ("", "", {})


def test_override_precedence_per_field_each_source_wins_its_own_field(pod):
    annotations = {"coral.io/health-endpoint": "/ann-health", "coral.io/service-type": "grpc",
                   "coral.io/health-interval": "7s"}
    rules = [conftest.rule({"namespace": "payments"}, {"type": "http", "name": "payments"})]
    (result,) = overrides.apply([pod], rules=rules, explicit=[],
                                annotation_layers=lambda s: overrides.annotation_layer(annotations))
    assert result.sources == {"health_endpoint": "annotation", "health_interval_seconds":
                              "annotation", "service_type": "overrides[0]",
                              "component_name": "overrides[0]"}
    assert (result.health_endpoint, result.service_type, result.component_name) == (
        "/ann-health", "http", "payments")
    assert result.health_interval_seconds == 7.0


def test_override_rule_not_matching_leaves_candidate_discovered(pod):
    rules = [conftest.rule({"podLabel": "app=other"}, {"name": "x"})]
    (result,) = overrides.apply([pod], rules=rules, explicit=[])
    assert result.provenance == P.DISCOVERED and result.component_name == pod.component_name


def test_explicit_service_replaces_host_candidate_on_the_same_port(host):
    (result,) = overrides.apply([host], rules=[], explicit=[
        conftest.explicit(name="api", port=8080, health={"endpoint": "/health", "interval": "5s"},
                          type="http", labels={"tier": "web"})], node_name="vm1")
    assert result.provenance == P.EXPLICIT
    assert (result.component_name, result.port, result.health_endpoint,
            result.health_interval_seconds, result.service_type) == ("api", 8080, "/health",
                                                                     5.0, "http")
    assert result.labels == {"tier": "web"} and result.node_name == "vm1"
    assert (result.pid, result.process_name) == (4242, "python3")  # still reachable for exec


def test_explicit_service_without_candidate_is_added(host):
    result = overrides.apply([host], rules=[], explicit=[conftest.explicit(name="db", port=5432)])
    assert [(s.component_name, s.provenance) for s in result] == [
        ("db", P.EXPLICIT), ("python3", P.DISCOVERED)]


def test_explicit_service_replaces_pod_candidate_only_with_same_name_and_port(pod):
    other = conftest.pod_candidate(component_name="other", pod_name="other-1")
    result = overrides.apply([pod, other], rules=[],
                             explicit=[conftest.explicit(name="other", port=8080)])
    names = sorted((s.component_name, s.provenance, s.pod_name) for s in result)
    assert names == [("other", P.EXPLICIT, ""), ("payments-api-7d9f", P.DISCOVERED,
                                                 "payments-api-7d9f-x2")]


def test_explicit_service_record():
    spec = conftest.explicit(name="api", port=80, type="http")
    record = overrides.explicit_service(spec, node_name="n")
    assert record == service.ServiceInfo(component_name="api", port=80, service_type="http",
                                         provenance=P.EXPLICIT, node_name="n")


def test_apply_order_is_deterministic(pod, host):
    candidates = [host, pod, conftest.pod_candidate(pod_name="a-0"),
                  conftest.host_candidate(port=22, component_name="sshd")]
    rules = [conftest.rule({"port": 22}, {"name": "ssh"})]
    forward = overrides.apply(candidates, rules=rules, explicit=[])
    backward = overrides.apply(candidates[::-1], rules=rules, explicit=[])
    assert forward == backward
    assert forward == sorted(forward, key=lambda s: s.key)


def test_apply_collapses_records_that_end_up_with_the_same_key(pod):
    second_port = conftest.pod_candidate(port=9090)
    result = overrides.apply([pod, second_port], rules=[
        conftest.rule({"podName": "payments-*"}, {"port": 8080})], explicit=[])
    assert len(result) == 1


def test_rule_layer_maps_config_names_to_service_fields():
    fields = config.ServiceFields.model_validate(
        {"name": "n", "port": 81, "health": {"endpoint": "/h", "interval": "2s"}, "type": "grpc",
         "labels": {"a": "b"}})
    layer = overrides.rule_layer(fields, source="overrides[3]")
    assert layer.source == "overrides[3]"
    assert layer.fields == {"component_name": "n", "port": 81, "health_endpoint": "/h",
                            "health_interval_seconds": 2.0, "service_type": "grpc",
                            "labels": {"a": "b"}}
    assert overrides.rule_layer(config.ServiceFields(), source="x").fields == {}


def test_override_file_errors_name_the_entry(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("overrides:\n  - selector: {podLabel: a=b}\n    service: {name: x}\n"
                    "  - selector: {podLabel: a=b}\n    service: {health: {interval: soon}}\n")
    with pytest.raises(config.ConfigError, match=r"key overrides\[1\]\.service\.health\.interval"
                       r": invalid duration 'soon'"):
        config.load_agent_config(path, environ={})


FIELD_VALUES = {
    "component_name": st.sampled_from(["a", "b", "payments-api-7d9f"]),
    "port": st.sampled_from([80, 8080]),
    "health_endpoint": st.sampled_from(["/ready", "/h"]),
    "service_type": st.sampled_from(["tcp", "http"]),
    "health_interval_seconds": st.sampled_from([0.0, 5.0]),
    "labels": st.dictionaries(st.sampled_from(["app", "x"]), st.sampled_from(["payments-api", "y"]),
                              max_size=2),
}
layers_strategy = st.lists(st.builds(
    overrides.Layer, source=st.sampled_from(["annotation", "overrides[0]", "overrides[1]"]),
    fields=st.fixed_dictionaries({}, optional=FIELD_VALUES)), max_size=4)


@settings(max_examples=200, deadline=None, database=None)
@given(layers_strategy)
def test_merge_fuzz_provenance_matches_changed_fields(layers):
    pod = conftest.pod_candidate()
    merged = overrides.merge(pod, layers=layers)
    changed = {f for f in overrides.FIELDS if getattr(merged, f) != getattr(pod, f)}
    assert set(merged.sources) == changed
    assert merged.provenance == (P.OVERRIDDEN if changed else P.DISCOVERED)
    for field in changed - {"labels"}:  # the last layer that set the field won
        last = [layer for layer in layers if field in layer.fields][-1]
        assert getattr(merged, field) == last.fields[field]
        assert merged.sources[field] == last.source


def test_override_file_mapping_or_list_loads_rules(tmp_path):
    mapping = tmp_path / "a.yaml"
    mapping.write_text("overrides:\n  - selector: {podLabel: app=x}\n    service: {type: grpc}\n")
    bare = tmp_path / "b.yaml"
    bare.write_text("- selector: {podName: 'x-*'}\n  service: {name: '{{ SVC }}'}\n")
    (rule_a,) = config.load_override_file(mapping, environ={})
    (rule_b,) = config.load_override_file(bare, environ={"SVC": "x"})
    assert rule_a.service.type == "grpc" and rule_b.service.name == "x"
    assert config.load_override_file(_empty_file(tmp_path), environ={}) == ()


def _empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    return path


@pytest.mark.parametrize(("text", "key", "accepted"), [
    ("- selector: {podLabel: a=b}\n  service: {}\n- selector: {podLabel: ab}\n  service: {}\n",
     "overrides[1].selector.podLabel", "expected key=value"),
    ("overrides:\n  - selector: {podLabel: a=b}\n    service: {nmae: x}\n",
     "overrides[0].service.nmae", "accepted keys here: name, port, health, type, labels"),
    ("overrides:\n  - selector: {podLabel: a=b}\n    service: {port: 0}\n",
     "overrides[0].service.port", "greater than or equal to 1"),
    ("- {selector: {namespace: a}}\n", "overrides[0].service", "required key 'service'"),
])
def test_override_file_errors_name_the_entry_index(tmp_path, text, key, accepted):
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as caught:
        config.load_override_file(path, environ={})
    assert str(caught.value).startswith(f"config file {path}: key {key}: ")
    assert accepted in str(caught.value)


def test_override_file_top_level_scalar_is_a_clear_error(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("nope\n")
    with pytest.raises(config.ConfigError, match=r"top level must be a mapping with keys "
                       r"overrides \(or a list of overrides\); got a string"):
        config.load_override_file(path, environ={})
