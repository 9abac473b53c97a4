"""Webhook mode: the injector Deployment, its Service and the MutatingWebhookConfiguration.

Two webhook entries, as Istio does, because selectors cannot read annotations:
* `namespace.inject.coral.io` — namespaces labelled coral.io/inject=true, except pods
  labelled coral.io/inject=false;
* `object.inject.coral.io` — pods labelled coral.io/inject=true in other namespaces
  (an opt-in by annotation only works in a labelled namespace).
Both skip Coral's own pods (objectSelector) and the system namespaces. The injector pods
meet the `restricted` Pod Security Standard.
"""

from __future__ import annotations

import hashlib
from typing import Any

from coral_lib import monitoring
from coral_lib.manifests import colony, objects
from coral_lib.manifests import settings as settings_mod
from coral_lib.webhook import certs
from coral_lib.webhook import settings as inject_settings

TLS_DIR = "/etc/coral/tls"
SETTINGS_DIR = "/etc/coral/settings"
OWN_PODS = {"key": "app.kubernetes.io/name", "operator": "NotIn",
            "values": ["coral-agent", "coral-webhook"]}


def render(settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    name, ns = settings.webhook_name, settings.namespace
    return [
        objects.namespace(ns),
        objects.service_account(name, ns),
        objects.cluster_role(name, [
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        ]),
        objects.cluster_role_binding(name, ns),
        *colony.rbac(settings),
        settings_config_map(settings),
        *tls_objects(settings),
        deployment(settings),
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": objects.meta(name, ns),
         "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector(name)}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": objects.meta(name, ns),
         "spec": {"selector": _selector(name),
                  "ports": [{"name": "https", "port": 443, "targetPort": "https",
                             "protocol": "TCP"}]}},
        mutating_webhook_configuration(settings),
    ]


def settings_config_map(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": objects.meta(f"{settings.webhook_name}-settings", settings.namespace),
            "data": {"settings.json": inject_settings.dumps(settings.inject_settings())}}


def tls_objects(settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    name, ns = settings.webhook_name, settings.namespace
    if settings.cert_mode == "cert-manager":
        return certs.cert_manager_objects(name=name, namespace=ns, service=name,
                                          secret_name=f"{name}-tls")
    return [certs.tls_secret(name=f"{name}-tls", namespace=ns, tls=_tls(settings))]


def deployment(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    name = settings.webhook_name
    probe = {"httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"},
             "periodSeconds": 10, "timeoutSeconds": 2}
    container = {
        "name": "webhook",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["coral", "webhook", "serve", "--listen", "0.0.0.0:8443",
                    "--cert", f"{TLS_DIR}/tls.crt", "--key", f"{TLS_DIR}/tls.key",
                    "--settings", f"{SETTINGS_DIR}/settings.json"],
        "ports": [{"name": "https", "containerPort": 8443, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 3, "initialDelaySeconds": 5},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                      "limits": {"cpu": "1", "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": 65532,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                         {"name": "settings", "mountPath": SETTINGS_DIR, "readOnly": True}],
    }
    template_labels = objects.labels(name)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": objects.meta(name, settings.namespace),
        "spec": {
            "replicas": settings.webhook_replicas,
            "selector": {"matchLabels": _selector(name)},
            "template": {
                # A settings change rolls the pods (the file is read at start).
                "metadata": {"labels": template_labels,
                             "annotations": {
                                 "coral.io/settings-hash": _settings_hash(settings),
                                 **monitoring.scrape_annotations(8443, scheme="https")}},
                "spec": {
                    "serviceAccountName": name,
                    "containers": [container],
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": _selector(name)}}],
                    "volumes": [
                        {"name": "tls", "secret": {"secretName": f"{name}-tls"}},
                        {"name": "settings", "configMap": {"name": f"{name}-settings"}},
                    ],
                },
            },
        },
    }


def monitors(settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    """On request (--service-monitor): a ServiceMonitor for the webhook's Service; it
    scrapes over HTTPS, checking the serving certificate against the webhook's CA."""
    name, ns = settings.webhook_name, settings.namespace
    tls = {"serverName": f"{name}.{ns}.svc",
           "ca": {"secret": {"name": f"{name}-tls", "key": "ca.crt"}}}
    return [monitoring.service_monitor(name, ns, selector={"app.kubernetes.io/name": name},
                                       port="https", scheme="https", tls_config=tls)]


def mutating_webhook_configuration(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    name, ns = settings.webhook_name, settings.namespace
    client_config: dict[str, Any] = {
        "service": {"name": name, "namespace": ns, "path": "/mutate", "port": 443}}
    metadata = objects.meta(name)
    if settings.cert_mode == "cert-manager":
        metadata["annotations"] = certs.inject_ca_from(namespace=ns, certificate=name)
    else:
        client_config["caBundle"] = certs.ca_bundle(_tls(settings).ca_pem)
    skip_ns = {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
               "values": list(settings.inject_settings().skipped_namespaces)}
    entries = [
        ("namespace.inject.coral.io",
         [{"key": "coral.io/inject", "operator": "In", "values": ["true"]}, skip_ns],
         [OWN_PODS, {"key": "coral.io/inject", "operator": "NotIn", "values": ["false"]}]),
        ("object.inject.coral.io",
         [{"key": "coral.io/inject", "operator": "NotIn", "values": ["true"]}, skip_ns],
         [OWN_PODS, {"key": "coral.io/inject", "operator": "In", "values": ["true"]}]),
    ]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": metadata,
        "webhooks": [_entry(settings, entry, client_config) for entry in entries],
    }


def _entry(settings: settings_mod.ManifestSettings, entry: tuple, client_config: dict) -> dict:
    name, namespace_expressions, object_expressions = entry
    return {
        "name": name,
        "clientConfig": client_config,
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                   "resources": ["pods"], "scope": "Namespaced"}],
        "namespaceSelector": {"matchExpressions": namespace_expressions},
        "objectSelector": {"matchExpressions": object_expressions},
        "failurePolicy": settings.failure_policy,
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": settings.timeout_seconds,
        "reinvocationPolicy": "IfNeeded",
        "admissionReviewVersions": ["v1"],
    }


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def _settings_hash(settings: settings_mod.ManifestSettings) -> str:
    text = inject_settings.dumps(settings.inject_settings())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tls(settings: settings_mod.ManifestSettings) -> certs.TLSMaterial:
    if settings.tls is None:
        raise settings_mod.ManifestError(
            "webhook mode with cert_mode=secret needs TLS material (settings.tls); "
            "`coral manifests render` generates it, or pass --tls-dir, or set "
            "cert_mode=cert-manager"
        )
    return settings.tls
