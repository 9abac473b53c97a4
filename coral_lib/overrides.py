"""Overrides and provenance: a pure merge of partial service fields over discovered ones.

Precedence, highest first:

| rank | source                                   | provenance of the result |
|------|------------------------------------------|--------------------------|
| 1    | explicit config (`services[]`)           | EXPLICIT (replaces)      |
| 2    | override rules (`overrides[i]`, file)    | OVERRIDDEN               |
| 3    | pod annotations (`coral.io/...`)         | OVERRIDDEN               |
| 4    | discovered defaults                      | DISCOVERED               |

Layers are given in ascending precedence; the last layer that sets a field wins. A record
is OVERRIDDEN when its final value differs from the discovered one in any field, and
`sources` maps each such field to the layer that won. Among several matching override
rules, later rules win. Labels merge key by key.

Explicit services replace every candidate on the same port that has the same name or
runs on the host itself (no pod: on a host one port has one listener); otherwise they are
added. Layer field names are ServiceInfo's: component_name, port, health_endpoint,
health_interval_seconds, service_type, labels.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import typing
from collections.abc import Callable, Mapping, Sequence

from coral_lib import durations, service

if typing.TYPE_CHECKING:  # models only: this module stays free of the config loader's I/O
    from coral_lib.config import models as config

ANNOTATION = "annotation"
EXPLICIT = "explicit"
FIELDS = ("component_name", "port", "health_endpoint", "health_interval_seconds",
          "service_type", "labels")
ANNOTATIONS = {
    "coral.io/service-name": "component_name",
    "coral.io/health-endpoint": "health_endpoint",
    "coral.io/health-interval": "health_interval_seconds",
    "coral.io/service-type": "service_type",
    "coral.io/port": "port",
}


@dataclasses.dataclass(frozen=True)
class Layer:
    """Partial ServiceInfo fields from one source; `problems` lists inputs that were ignored."""

    source: str
    fields: Mapping[str, object]
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fields) - set(FIELDS))
        if unknown:
            raise ValueError(f"layer {self.source}: unknown field(s) {', '.join(unknown)}; "
                             f"accepted: {', '.join(FIELDS)}")


def merge(discovered: service.ServiceInfo, *, layers: Sequence[Layer]) -> service.ServiceInfo:
    """Apply layers (ascending precedence) to a discovered record; set provenance and sources."""
    values: dict[str, object] = {}
    winners: dict[str, str] = {}
    labels = dict(discovered.labels)
    for layer in layers:
        for field, value in layer.fields.items():
            if field == "labels":
                labels.update(value)  # type: ignore[call-overload]
            else:
                values[field] = value
            winners[field] = layer.source
    changed = {f: v for f, v in values.items() if getattr(discovered, f) != v}
    if labels != dict(discovered.labels):
        changed["labels"] = labels
    if not changed:
        return dataclasses.replace(discovered, provenance=service.Provenance.DISCOVERED)
    sources = {**discovered.sources, **{f: winners[f] for f in changed}}
    return dataclasses.replace(discovered, **changed, sources=sources,
                               provenance=service.Provenance.OVERRIDDEN)


def explicit_service(spec: config.ExplicitService, *, node_name: str = "") -> service.ServiceInfo:
    """A service declared in config: provenance EXPLICIT."""
    return service.ServiceInfo(
        component_name=spec.name, port=spec.port, health_endpoint=spec.health.endpoint,
        health_interval_seconds=spec.health.interval or 0.0, service_type=spec.type,
        labels=dict(spec.labels), provenance=service.Provenance.EXPLICIT, node_name=node_name,
    )


def rule_matches(
    selector: config.OverrideSelector, *, pod_labels: Mapping[str, str], namespace: str,
    pod_name: str, process_name: str, port: int,
) -> bool:
    """Every criterion the selector gives must match; namespace, podName and process accept
    shell wildcards (`payments-*`)."""
    pair = selector.pod_label_pair
    checks = (
        pair is None or pod_labels.get(pair[0]) == pair[1],
        selector.namespace is None or fnmatch.fnmatchcase(namespace, selector.namespace),
        selector.pod_name is None or fnmatch.fnmatchcase(pod_name, selector.pod_name),
        selector.process is None or fnmatch.fnmatchcase(process_name, selector.process),
        selector.port is None or selector.port == port,
    )
    return all(checks)


def rule_layer(fields: config.ServiceFields, *, source: str) -> Layer:
    """Map config names to ServiceInfo fields (name->component_name, health.endpoint->...)."""
    out: dict[str, object] = {}
    for key, value in (("component_name", fields.name), ("port", fields.port),
                       ("service_type", fields.type)):
        if value is not None:
            out[key] = value
    if fields.health is not None and fields.health.endpoint:
        out["health_endpoint"] = fields.health.endpoint
    if fields.health is not None and fields.health.interval is not None:
        out["health_interval_seconds"] = fields.health.interval
    if fields.labels:
        out["labels"] = dict(fields.labels)
    return Layer(source, out)


def annotation_layer(annotations: Mapping[str, str]) -> Layer:
    """Read the coral.io/* override annotations; bad values are skipped and listed in
    `problems` (never raised: a pod's annotations must not stop discovery)."""
    fields: dict[str, object] = {}
    problems: list[str] = []
    for name, field in ANNOTATIONS.items():
        raw = annotations.get(name)
        if raw is None or not str(raw).strip():
            continue
        try:
            fields[field] = _annotation_value(field, str(raw).strip())
        except ValueError as exc:
            problems.append(f"annotation {name}={raw!r} ignored: {exc}")
    return Layer(ANNOTATION, fields, tuple(problems))


def _annotation_value(field: str, raw: str) -> object:
    if field == "port":
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise ValueError("expected a port number 1-65535")
        return int(raw)
    if field == "health_interval_seconds":
        seconds = durations.parse_duration(raw)
        if seconds <= 0:
            raise ValueError("expected a duration above zero, e.g. 10s")
        return seconds
    if field == "health_endpoint" and not raw.startswith("/"):
        raise ValueError("expected a path like /healthz")
    return raw


def apply(
    candidates: Sequence[service.ServiceInfo], *, rules: Sequence[config.OverrideRule],
    explicit: Sequence[config.ExplicitService],
    annotation_layers: Callable[[service.ServiceInfo], Layer | None] | None = None,
    node_name: str = "",
) -> list[service.ServiceInfo]:
    """Candidates -> final set: annotations, then rules, then explicit services; sorted by key,
    one record per key."""
    merged = [_override(c, rules=rules, annotation_layers=annotation_layers) for c in candidates]
    for spec in explicit:
        replaced = [s for s in merged if _replaced_by(s, spec)]
        record = explicit_service(spec, node_name=node_name)
        if replaced:  # keep where it runs, so operations can still reach the process
            record = dataclasses.replace(record, pid=replaced[0].pid,
                                         process_name=replaced[0].process_name,
                                         node_name=node_name or replaced[0].node_name)
        merged = [s for s in merged if not _replaced_by(s, spec)] + [record]
    unique: dict[tuple[str, str, str, str, int], service.ServiceInfo] = {}
    for record in sorted(merged, key=_order):
        unique.setdefault(record.key, record)
    return list(unique.values())


def _override(
    candidate: service.ServiceInfo, *, rules: Sequence[config.OverrideRule],
    annotation_layers: Callable[[service.ServiceInfo], Layer | None] | None,
) -> service.ServiceInfo:
    layers = []
    annotated = annotation_layers(candidate) if annotation_layers else None
    if annotated is not None:
        layers.append(annotated)
    for index, rule in enumerate(rules):
        if rule_matches(rule.selector, pod_labels=candidate.labels,
                        namespace=candidate.namespace, pod_name=candidate.pod_name,
                        process_name=candidate.process_name, port=candidate.port):
            layers.append(rule_layer(rule.service, source=f"overrides[{index}]"))
    return merge(candidate, layers=layers)


def _replaced_by(record: service.ServiceInfo, spec: config.ExplicitService) -> bool:
    if record.provenance == service.Provenance.EXPLICIT or record.port != spec.port:
        return False
    return record.component_name == spec.name or not record.pod_name


def _order(record: service.ServiceInfo) -> tuple[object, ...]:
    return (*record.key, int(record.provenance) != service.Provenance.EXPLICIT)


def explain(record: service.ServiceInfo) -> str:
    """One logfmt line: where the service runs, its provenance, and which source won each
    overridden field, e.g. `service=api port=80 provenance=OVERRIDDEN won.service_type=annotation`.
    """
    parts = [("service", record.component_name), ("port", record.port)]
    parts += [(k, getattr(record, k)) for k in ("namespace", "pod_name", "node_name")
              if getattr(record, k)]
    parts.append(("provenance", record.provenance.name))
    parts += [(f"won.{field}", source) for field, source in sorted(record.sources.items())]
    return " ".join(f"{key}={_logfmt(value)}" for key, value in parts)


def _logfmt(value: object) -> str:
    text = str(value)
    plain = text and not any(c in text for c in ' ="\\') and text.isprintable()
    return text if plain else json.dumps(text)
