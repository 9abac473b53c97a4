"""Scrape annotations, probes and ServiceMonitors for Coral's workloads (pure data), used
by the manifest renderers and the webhook's injected sidecar.

One plain-HTTP port per Coral process serves /metrics, /healthz and /readyz
(`--metrics-listen` / `--health-listen`, coral_lib/endpoint.py), reached by kubelet probes
and Prometheus at the pod IP; it serves counts and health only, never registry or audit
contents. The DaemonSet agent binds its pod IP (`$(POD_IP)` from the downward API), so a
hostNetwork variant listens on the node's address only, not on every interface of it.

Probes: the DaemonSet agent is ready when linked, registered and its pods listed, so a
rollout whose new agents cannot reach the colony stops at maxUnavailable. The sidecar
gets a liveness probe only: a native sidecar's readiness counts in its pod's Ready
condition, and a colony outage must never take an application out of its Service.
"""

from __future__ import annotations

from typing import Any

AGENT_PORT = 9465  # not 9464: the OpenTelemetry Prometheus exporter's port, common in apps
COLONY_PORT = 9466
PORT_NAME = "coral-metrics"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1"


def listen_args(port: int, *, metrics: bool = True, health: bool = True,
                host: str = "0.0.0.0") -> list[str]:
    address = f"{host}:{port}"
    return [*(["--metrics-listen", address] if metrics else []),
            *(["--health-listen", address] if health else [])]


def scrape_annotations(port: int | str, *, path: str = "/metrics",
                       scheme: str = "http") -> dict[str, str]:
    """The prometheus.io/* annotations Prometheus' kubernetes_sd relabelling reads."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
            "prometheus.io/path": path, "prometheus.io/scheme": scheme}


def container_port(port: int) -> dict[str, Any]:
    return {"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}


def probe(path: str, port: int | str, *, scheme: str = "HTTP", period: int = 10,
          failures: int = 3, initial_delay: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = {
        "httpGet": {"path": path, "port": port, "scheme": scheme},
        "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures}
    if initial_delay:
        found["initialDelaySeconds"] = initial_delay
    return found


def agent_probes(port: int | str = PORT_NAME, *, readiness: bool = True) -> dict[str, Any]:
    """livenessProbe (and readinessProbe) of an agent container; a startupProbe gives a
    first start (join, first pod list) a minute before liveness counts."""
    probes: dict[str, Any] = {
        "startupProbe": probe("/healthz", port, period=2, failures=30),
        "livenessProbe": probe("/healthz", port, period=10, failures=3),
    }
    if readiness:
        probes["readinessProbe"] = probe("/readyz", port, period=5, failures=2)
    return probes


def colony_probes(port: int | str = PORT_NAME) -> dict[str, Any]:
    """For a colony container started with --metrics-listen 0.0.0.0:<port>."""
    return {"livenessProbe": probe("/healthz", port, period=10, failures=3, initial_delay=5),
            "readinessProbe": probe("/readyz", port, period=5, failures=2)}


def metrics_service(name: str, namespace: str, *, selector: dict[str, str],
                    port: int) -> dict[str, Any]:
    """A headless Service over the pods' metrics port, for a ServiceMonitor to select."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "coral"}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"clusterIP": "None", "selector": selector,
                     "ports": [{"name": PORT_NAME, "port": port, "targetPort": PORT_NAME,
                                "protocol": "TCP"}]}}


def service_monitor(name: str, namespace: str, *, selector: dict[str, str], port: str,
                    scheme: str = "http", tls_config: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """A prometheus-operator ServiceMonitor scraping /metrics of the Services `selector`
    matches in `namespace`."""
    endpoint: dict[str, Any] = {"port": port, "path": "/metrics", "scheme": scheme,
                                "interval": "30s"}
    if tls_config:
        endpoint["tlsConfig"] = tls_config
    return {"apiVersion": SERVICE_MONITOR_API, "kind": "ServiceMonitor",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": name,
                                    "app.kubernetes.io/part-of": "coral"}},
            "spec": {"selector": {"matchLabels": selector},
                     "namespaceSelector": {"matchNames": [namespace]},
                     "endpoints": [endpoint]}}
