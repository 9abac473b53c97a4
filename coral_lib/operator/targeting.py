"""The one targeting builder for every front end. It accepts exactly what the colony's
router accepts (coral_lib.colony.routing): at least one of service, agent, selector, pod,
node or all, combined freely to narrow; namespace and container only narrow. Names are
checked by the colony's own rule, so a bad one is refused here with the same message."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from coral_lib import errors
from coral_lib.client import Targeting
from coral_lib.colony import routing

FIELDS = ("service", "agent", "selector", "all", "pod", "namespace", "container", "node")


def build(*, service: str | None = None, agent: str | None = None,
          selector: Mapping[str, object] | None = None, all: bool = False,  # noqa: A002
          pod: str | None = None, namespace: str | None = None,
          container: str | None = None, node: str | None = None) -> Targeting:
    """A Targeting the colony will accept. Else the error the colony would answer with:
    errors.NoTargets when nothing selects, errors.InvalidRequest naming a bad name.
    Empty values count as not given; selector values are taken as text."""
    labels = {str(k): "" if v is None else str(v) for k, v in (selector or {}).items()}
    targeting = Targeting(service=service or None, agent=agent or None,
                          selector=labels or None, all=bool(all), pod=pod or None,
                          namespace=namespace or None, container=container or None,
                          node=node or None)
    problem = routing.targeting_problem(targeting)
    if problem:
        raise errors.InvalidRequest(problem)
    if not routing.chosen(targeting):
        raise errors.NoTargets(routing.NO_TARGETING)
    return targeting


def from_mapping(values: Mapping[str, object]) -> Targeting:
    """build() from a mapping such as Ansible module params; keys other than FIELDS are
    ignored, missing ones are not given."""
    return build(**{key: values.get(key) for key in FIELDS if values.get(key) is not None})


def parse_labels(values: Iterable[str], *, flag: str) -> dict[str, str]:
    """{key: value} from K=V strings (e.g. repeated --selector flags)."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise errors.InvalidRequest(f"{flag} {value!r}: expected key=value")
        out[key.strip()] = val.strip()
    return out
