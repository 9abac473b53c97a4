"""The domain record every discovery source produces and the colony stores: one service."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping


class Provenance(enum.IntEnum):
    """Where a service's metadata came from (numbers match mesh.proto ServiceProvenance)."""

    UNKNOWN = 0
    EXPLICIT = 1
    DISCOVERED = 2
    OVERRIDDEN = 3


@dataclasses.dataclass(frozen=True)
class ServiceInfo:
    """One service of one agent. Field names follow mesh.proto ServiceInfo.

    `namespace`, `pod_name`, `container_name`, `pid` and `process_name` say where the
    service runs; `sources` maps each overridden field to the source that won
    (e.g. {"health_endpoint": "annotation"}), for logs and the audit trail.
    """

    component_name: str
    port: int = 0
    health_endpoint: str = ""
    service_type: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    provenance: Provenance = Provenance.DISCOVERED
    node_name: str = ""
    node_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    namespace: str = ""
    pod_name: str = ""
    container_name: str = ""
    pid: int = 0
    process_name: str = ""
    health_interval_seconds: float = 0.0
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        """Identity of a service within one agent: where it runs and on which port."""
        return (self.namespace, self.pod_name, self.container_name, self.component_name, self.port)
