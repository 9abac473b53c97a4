"""`--mode colony`: the colony itself in the cluster, as N replicas sharing PostgreSQL.

Objects: the Namespace, the colony's ServiceAccount with its TokenReview permission
(manifests.colony.rbac), a Secret holding the database DSN, a Deployment of
`colony_replicas` pods, a Service agents and operators dial (one name; a dead replica's
connections move to the others), a headless Service for replica-to-replica calls, and a
PodDisruptionBudget that keeps all but one replica up during voluntary disruptions.

The colony's identity (CA, server certificate, colony id, audit key, checkpoint key pair,
admin token) is the Secret `colony_data_secret`, made once from a data directory:

    coral colony init --data-dir ./colony --hostname coral-colony.coral-system.svc
    kubectl -n coral-system create secret generic coral-colony-data --from-file=./colony

Every replica copies it into its own writable data directory at start (an init
container), so all replicas share one CA, one audit key and one checkpoint key (a replica
never makes its own: a restarted pod signs with the same key, one public key verifies
all). The DSN Secret is rendered with `colony_database_dsn`; its default names no
password: set one, or replace the Secret.
"""

from __future__ import annotations

from typing import Any

from coral_lib import monitoring
from coral_lib.manifests import colony, objects
from coral_lib.manifests import settings as settings_mod

NAME = "coral-colony"
PORT, REPLICA_PORT = 9443, 9543
DATA, SEED = "/var/lib/coral/colony", "/etc/coral/colony-data"
UID = 65532  # the image's `coral` user
SELECTOR = {"app.kubernetes.io/name": NAME}


def render(settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    ns = settings.namespace
    return [objects.namespace(ns), *colony.rbac(settings), _dsn_secret(settings),
            _deployment(settings), _service(ns), _replica_service(ns), _pdb(settings)]


def _dsn_secret(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": objects.meta(settings.colony_database_secret, settings.namespace),
            "stringData": {"dsn": settings.colony_database_dsn}}


def _args() -> list[str]:
    return ["colony", "start", "--data-dir", DATA, "--listen", f"0.0.0.0:{PORT}",
            "--database", "env:CORAL_DATABASE", "--replica-name", "$(POD_NAME)",
            "--replica-listen", f"0.0.0.0:{REPLICA_PORT}",
            "--replica-advertise", f"$(POD_IP):{REPLICA_PORT}", "--token-review-in-cluster",
            *monitoring.listen_args(monitoring.COLONY_PORT, health=False)]


def _container(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    return {
        "name": "colony", "image": settings.image, "imagePullPolicy": settings.image_pull_policy,
        "command": ["coral"], "args": _args(),
        "env": [objects.field_env("POD_NAME", "metadata.name"),
                objects.field_env("POD_IP", "status.podIP"),
                {"name": "CORAL_DATABASE", "valueFrom": {"secretKeyRef": {
                    "name": settings.colony_database_secret, "key": "dsn"}}}],
        "ports": [{"name": "grpc", "containerPort": PORT},
                  {"name": "replica", "containerPort": REPLICA_PORT},
                  {"name": monitoring.PORT_NAME, "containerPort": monitoring.COLONY_PORT}],
        # /readyz: storage and audit sink writable and the gRPC port listening
        **monitoring.colony_probes(),
        # checkpoints in an emptyDir last as long as the pod: set checkpointSyslog to a
        # collector (or checkpointDir to a persistent volume) to keep them
        "volumeMounts": [{"name": "data", "mountPath": DATA},
                         {"name": "checkpoints", "mountPath": f"{DATA}-checkpoints"},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": _restricted(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"memory": "512Mi"}},
    }


def _restricted() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "runAsUser": UID, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _seed(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    """Copies the shared identity into the replica's own data directory (0600 files)."""
    return {"name": "seed", "image": settings.image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": ["cp", "-rL", "--no-preserve=ownership", f"{SEED}/.", DATA],
            "volumeMounts": [{"name": "data", "mountPath": DATA},
                             {"name": "seed", "mountPath": SEED, "readOnly": True}],
            "securityContext": _restricted()}


def _deployment(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    pod = {
        "serviceAccountName": settings.colony_service_account,
        "securityContext": {"fsGroup": UID},
        "initContainers": [_seed(settings)], "containers": [_container(settings)],
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "checkpoints", "emptyDir": {}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "seed", "secret": {"secretName": settings.colony_data_secret,
                                                "defaultMode": 0o400}}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                "labelSelector": {"matchLabels": SELECTOR}}}]}},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": objects.meta(NAME, settings.namespace),
            "spec": {"replicas": settings.colony_replicas,
                     "selector": {"matchLabels": SELECTOR},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
                     "template": {"metadata": {
                         "labels": objects.labels(NAME),
                         "annotations": monitoring.scrape_annotations(monitoring.COLONY_PORT)},
                                  "spec": pod}}}


def _service(ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": objects.meta(NAME, ns),
            "spec": {"selector": SELECTOR, "ports": [
                {"name": "grpc", "port": PORT, "targetPort": "grpc"}]}}


def _replica_service(ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": objects.meta(f"{NAME}-replicas", ns),
            "spec": {"clusterIP": "None", "selector": SELECTOR,
                     "publishNotReadyAddresses": True, "ports": [
                         {"name": "replica", "port": REPLICA_PORT, "targetPort": "replica"}]}}


def _pdb(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": objects.meta(NAME, settings.namespace),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}}
