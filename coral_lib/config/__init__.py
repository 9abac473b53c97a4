"""Agent and colony configuration: pydantic models, YAML loading, placeholders, CORAL_* env.

Agent config file (`.coral/agent-config.yaml`), keys exactly as written::

    agent: {mode: passive, id: "node-agent-{{ NODE_NAME }}", runtime: auto}
    colony: {address: 127.0.0.1:9443, caFile: ..., id: ...,
             joinToken: ... | joinTokenFile: ... | serviceAccountTokenFile: ...}
    discovery:
      kubernetes: {includeNamespaces: [], includeLabels: {}, excludeNamespaces: [],
                   excludeLabels: {}, pollInterval: 30s, resyncInterval: 5m}
      host: {pollInterval: 5s}
    overrides:
      - selector: {podLabel: app=payments-api, namespace: ns, podName: p, process: x, port: 80}
        service: {name: ..., port: ..., health: {endpoint: /healthz, interval: 5s}, type: http,
                  labels: {}}
    services:   # explicit services
      - {name: api, port: 8080, health: {endpoint: /health, interval: 10s}, type: http, labels: {}}

`agent.mode`: `passive` (default) registers services and answers operations; `active` also
runs the configured health checks. `agent.runtime`: `auto` (default, detect), `host`,
`daemonset` or `sidecar`.

There is no shared colony secret: an agent holds its own certificate, obtained once with a
one-time join token (hosts) or its projected service account token (Kubernetes) and kept
in its state directory; `colony.secret`/`secretFile` are rejected with that message.

Colony settings file (flat): id, listen (host:port), dataDir, heartbeatInterval,
degradedAfter, unhealthyAfter, tokensFile, observeOnly, agentCertTtl (default 24h),
agentServiceAccount (default coral-system/coral-agent: the DaemonSet's account, whose
tokens get node identities; any other account gets its own pod's identity),
tokenReviewKubeconfig / tokenReviewInCluster / tokenReviewAudience (how the colony checks
Kubernetes agents' projected tokens; neither set: Kubernetes bootstrap is refused); audit
integrity: auditKeyFile, checkpointKeyFile, checkpointDir, checkpointSyslog,
checkpointEvery, checkpointInterval, checkpointAppendOnly; and `limits` (defaults in
coral_lib/colony/guard.py Limits): receiveBytes (16 MiB), requestBytes (1 MiB: argv +
stdin + env of one exec), outputBytes (4 MiB per stream), concurrentRpcs (2048),
streamsPerPeer (64), loginFailures (10 per
loginWindow, 60s, per peer address before it is throttled).

Durations: see coral_lib.durations (`30s`, `5m`, `1h`, `500ms`, plain number = seconds).
Placeholders: `{{ NAME }}` in any string value (even unquoted, even inside `{...}` flow
mappings) is replaced by the environment variable NAME; a missing one is an error.

Environment overrides (a set, non-empty variable beats the file; lists are comma
separated, labels are `k=v,k2=v2`) — the whole table is AGENT_ENV / COLONY_ENV below:

| variable                     | agent config key                         |
|------------------------------|------------------------------------------|
| CORAL_AGENT_ID               | agent.id                                 |
| CORAL_AGENT_MODE             | agent.runtime (host, daemonset, sidecar) |
| CORAL_AGENT_HEALTH_MODE      | agent.mode (passive, active)             |
| CORAL_COLONY_ADDRESS         | colony.address                           |
| CORAL_COLONY_ID              | colony.id                                |
| CORAL_COLONY_JOIN_TOKEN      | colony.joinToken                         |
| CORAL_COLONY_JOIN_TOKEN_FILE | colony.joinTokenFile                     |
| CORAL_SERVICE_ACCOUNT_TOKEN_FILE | colony.serviceAccountTokenFile       |
| CORAL_COLONY_CA_FILE         | colony.caFile                            |
| CORAL_POLL_INTERVAL          | discovery.host.pollInterval              |
| CORAL_K8S_POLL_INTERVAL      | discovery.kubernetes.pollInterval        |
| CORAL_RESYNC_INTERVAL        | discovery.kubernetes.resyncInterval      |
| CORAL_INCLUDE_NAMESPACES     | discovery.kubernetes.includeNamespaces   |
| CORAL_EXCLUDE_NAMESPACES     | discovery.kubernetes.excludeNamespaces   |
| CORAL_INCLUDE_LABELS         | discovery.kubernetes.includeLabels       |
| CORAL_EXCLUDE_LABELS         | discovery.kubernetes.excludeLabels       |

| variable                     | colony settings key |
|------------------------------|---------------------|
| CORAL_COLONY_ID              | id                  |
| CORAL_AGENT_CERT_TTL         | agentCertTtl        |
| CORAL_TOKEN_REVIEW_KUBECONFIG | tokenReviewKubeconfig |
| CORAL_COLONY_LISTEN          | listen              |
| CORAL_COLONY_DATA_DIR        | dataDir             |
| CORAL_COLONY_TOKENS_FILE     | tokensFile          |
| CORAL_COLONY_OBSERVE_ONLY    | observeOnly         |
| CORAL_HEARTBEAT_INTERVAL     | heartbeatInterval   |
| CORAL_DEGRADED_AFTER         | degradedAfter       |
| CORAL_UNHEALTHY_AFTER        | unhealthyAfter      |
"""

# The names below load pydantic, the models and YAML on first use (PEP 562), so that
# `coral_lib.config.view` (what a running agent holds) imports none of them.
_LOADER = ("AGENT_ENV", "COLONY_ENV", "check_bootstrap", "format_path", "join_token",
           "load_agent_config", "load_colony_config", "load_override_file",
           "service_account_token")
_MODELS = ("Agent", "AgentConfig", "ColonyClient", "ColonyLimits", "ColonySettings",
           "ConfigError", "Discovery", "ExplicitService", "Health", "HostDiscovery",
           "KubernetesDiscovery", "OverrideRule", "OverrideSelector", "ServiceFields",
           "default_data_dir")

__all__ = sorted(_LOADER + _MODELS)


def __getattr__(name: str) -> object:
    import importlib

    if name in _LOADER:
        return getattr(importlib.import_module("coral_lib.config.loader"), name)
    if name in _MODELS:
        return getattr(importlib.import_module("coral_lib.config.models"), name)
    raise AttributeError(f"module 'coral_lib.config' has no attribute {name!r}")
