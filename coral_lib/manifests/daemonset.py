"""Daemonset mode: one agent pod per node with hostPID, seeing every pod on its node.

The full variant is privileged with NET_ADMIN, SYS_PTRACE and BPF and mounts the CRI
socket (exec through CRI ExecSync); the observe-only variant has none of those: no
ptrace, no NET_ADMIN, no runtime socket (it can discover and watch, not exec).
Both keep the agent's state on the node (hostPath `state_host_path`): a restarted agent
container re-registers its last set and keeps its certificate instead of dropping and
re-adding the node's services.
Pod Security Standard: the full variant needs `privileged`; observe-only still uses
hostPID, so it needs `privileged` as well (baseline forbids host namespaces).
"""

from __future__ import annotations

from typing import Any

from coral_lib import monitoring
from coral_lib.manifests import colony, objects
from coral_lib.manifests import settings as settings_mod
from coral_lib.webhook import inject

NAME = "coral-agent"
SOCKET_VOLUME = "cri-socket"
STATE_VOLUME = "agent-state"
STATE_DIR = "/var/lib/coral/agent"  # runner.default_state_dir() for root
# The agent's discovery filters, overrides and labels (role agent_daemonset writes it; it
# is optional: without it the agent runs on defaults and its environment).
CONFIG_MAP = "coral-agent-config"
CONFIG_VOLUME = "agent-config"
CONFIG_DIR = "/etc/coral/agent"
# Python's -OO for the agent (issue 15, a leaner agent): docstrings are not kept in memory,
# about 1.5 MB less heap (bench pod_memory). Nothing the agent runs reads a docstring or
# relies on an assert; the image carries the optimization-2 bytecode (Containerfile).
OPTIMIZE_ENV = {"name": "PYTHONOPTIMIZE", "value": "2"}


def render(settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    ns = settings.namespace
    return [
        objects.namespace(ns, **{"pod-security.kubernetes.io/enforce": "privileged"}),
        objects.service_account(NAME, ns),
        objects.cluster_role(NAME, [
            {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
        ]),
        objects.cluster_role_binding(NAME, ns),
        *colony.rbac(settings),
        daemon_set(settings),
    ]


def daemon_set(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": NAME}
    pod_spec: dict[str, Any] = {
        "serviceAccountName": NAME,
        "hostPID": True,
        "tolerations": [{"operator": "Exists"}],  # every node, tainted or not
        "priorityClassName": "system-node-critical",
        "containers": [_container(settings)],
    }
    # The agent's identity: its pod's token for audience `coral`, which the colony checks
    # with TokenReview (agent id node-<node>); no shared secret in the namespace.
    pod_spec["volumes"] = [inject.token_volume()]
    if not settings.observe_only:
        pod_spec["volumes"].append({"name": SOCKET_VOLUME, "hostPath": {
            "path": settings.cri_socket, "type": "Socket"}})
    pod_spec["volumes"].append({"name": CONFIG_VOLUME, "configMap": {
        "name": CONFIG_MAP, "optional": True}})
    pod_spec["volumes"].append({"name": STATE_VOLUME, "hostPath": {
        "path": settings.state_host_path, "type": "DirectoryOrCreate"}})
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": objects.meta(NAME, settings.namespace),
        "spec": {
            "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {
                "labels": objects.labels(NAME),
                "annotations": monitoring.scrape_annotations(monitoring.AGENT_PORT)},
                "spec": pod_spec},
        },
    }


def monitors(settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    """On request (--service-monitor): a headless Service over the agents' metrics port
    and a ServiceMonitor for it."""
    name = f"{NAME}-metrics"
    return [monitoring.metrics_service(name, settings.namespace,
                                       selector={"app.kubernetes.io/name": NAME},
                                       port=monitoring.AGENT_PORT),
            monitoring.service_monitor(name, settings.namespace,
                                       selector={"app.kubernetes.io/name": name},
                                       port=monitoring.PORT_NAME)]


def _container(settings: settings_mod.ManifestSettings) -> dict[str, Any]:
    env = [
        {"name": "CORAL_AGENT_MODE", "value": "daemonset"},
        objects.field_env("NODE_NAME", "spec.nodeName"),
        # one stable id per node, so a restarted agent pod takes over its predecessor's set;
        # the colony derives the same id from the reviewed token's node (never from here)
        {"name": "CORAL_AGENT_ID", "value": "node-$(NODE_NAME)"},
        objects.field_env("POD_NAME", "metadata.name"),
        objects.field_env("POD_NAMESPACE", "metadata.namespace"),
        objects.field_env("POD_IP", "status.podIP"),
        *inject.colony_env(settings.colony_config_map),
        inject.token_file_env(),
        {"name": "CORAL_OBSERVE_ONLY", "value": "true" if settings.observe_only else "false"},
        inject.allocator_env(),
        OPTIMIZE_ENV,
        {"name": "CORAL_AGENT_CONFIG", "value": f"{CONFIG_DIR}/agent.yaml"},
    ]
    config_mount = {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}
    container: dict[str, Any] = {
        "name": NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["coral", "agent", "node"],
        # /metrics, /healthz and /readyz (linked, registered, pods listed) on one port
        "args": monitoring.listen_args(monitoring.AGENT_PORT, host="$(POD_IP)"),
        "ports": [monitoring.container_port(monitoring.AGENT_PORT)],
        **monitoring.agent_probes(),
        "env": env,
        "volumeMounts": [inject.token_mount()],
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
        },
    }
    state_mount = {"name": STATE_VOLUME, "mountPath": STATE_DIR}
    if settings.observe_only:
        container["securityContext"] = {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["BPF", "PERFMON"]},
        }
        container["volumeMounts"] += [config_mount, state_mount]
        return container
    env.append({"name": "CORAL_CRI_SOCKET", "value": settings.cri_socket})
    container["securityContext"] = {
        "privileged": True,
        "capabilities": {"add": ["NET_ADMIN", "SYS_PTRACE", "BPF"]},
    }
    container["volumeMounts"] += [{"name": SOCKET_VOLUME, "mountPath": settings.cri_socket},
                                  config_mount, state_mount]
    return container
