"""Fixtures for the webhook tests: golden cases, settings, schema validation, HTTPS servers."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import kubernetes_validate
import pytest
import yaml

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
