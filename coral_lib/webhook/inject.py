"""inject(pod, namespace_labels, settings) -> JSON Patch (RFC 6902). Pure: data in, data out.

The server decodes an AdmissionReview, calls inject() and encodes the answer; the
manifest renderer applies the same patch to a template pod, so there is one source of
truth for what the sidecar looks like.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from coral_lib.webhook import policy
from coral_lib.webhook import settings as settings_mod

COMMAND = ["coral", "agent", "start", "--monitor-all"]
_FIELD_REFS = (
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("POD_UID", "metadata.uid"),
    ("NODE_NAME", "spec.nodeName"),
)
# env name -> (key in the colony ConfigMap, optional). Nothing in it is secret: the agent
# proves who it is with its pod's own projected token, not with a shared colony secret.
_CONFIG_KEYS = (
    ("CORAL_COLONY_ADDRESS", "address", False),
    ("CORAL_COLONY_ID", "colony-id", True),
    ("CORAL_COLONY_CA", "ca.crt", False),
)
# The pod's own service account token, projected for the colony only (audience `coral`,
# bound to this pod, rotated by kubelet): the colony checks it with TokenReview.
TOKEN_VOLUME = "coral-agent-token"
TOKEN_DIR = "/var/run/secrets/coral.io/serviceaccount"
TOKEN_AUDIENCE = "coral"
TOKEN_EXPIRATION_SECONDS = 3600
TOKEN_FILE_ENV = "CORAL_SERVICE_ACCOUNT_TOKEN_FILE"  # agent config colony.serviceAccountTokenFile
POD_LABELS_FILE = f"{TOKEN_DIR}/labels"  # downward API: the pod's labels, for its services
POD_LABELS_ENV = "CORAL_POD_LABELS_FILE"
CONTAINER_NAME_ENV = "CORAL_CONTAINER_NAME"  # tells the sidecar's /proc scan each app's name


class InvalidPod(ValueError):
    """The object is not shaped like a Pod, so no patch can be built; the message says why."""


def inject(
    pod: Mapping[str, Any],
    namespace_labels: Mapping[str, str],
    settings: settings_mod.InjectSettings,
    *,
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Return the JSON Patch that adds the Coral sidecar, or [] when the policy says no.

    `namespace` defaults to the pod's metadata.namespace (an AdmissionReview carries it
    in request.namespace instead, since pods being created often lack it).
    """
    if not isinstance(pod, Mapping):
        raise InvalidPod(f"expected a Pod object (a mapping), got {type(pod).__name__}")
    metadata = _optional_mapping(pod, "metadata", "metadata")
    if namespace is None:
        namespace = str(metadata.get("namespace") or "default")
    decision = policy.should_inject(pod, namespace, namespace_labels, settings)
    if not decision.inject:
        return []
    spec = _checked_spec(pod)
    annotations = _optional_mapping(metadata, "annotations", "metadata.annotations")
    app_names = [c["name"] for c in spec["containers"]]
    observe_only = annotations.get(policy.OBSERVE_ONLY) == "true"
    ptrace = annotations.get(policy.SIDECAR_PTRACE) == "true" and not observe_only
    image = _agent_image(annotations, settings)
    spn = _share_process_namespace(spec)
    status = {
        "version": settings.agent_version,
        "image": image,
        "nativeSidecar": settings.native_sidecar,
        ("initContainers" if settings.native_sidecar else "containers"): [policy.AGENT_NAME],
        "shareProcessNamespace": spn,
        "observeOnly": observe_only,
    }
    new_annotations = {
        policy.INJECTED: "true",
        policy.STATUS: json.dumps(status, sort_keys=True, separators=(",", ":")),
    }
    if not annotations.get(policy.DEFAULT_CONTAINER):
        new_annotations[policy.DEFAULT_CONTAINER] = app_names[0]
    agent = agent_container(
        image=image, app_names=app_names, observe_only=observe_only, settings=settings,
        ptrace=ptrace,
        default_container=str(annotations.get(policy.DEFAULT_CONTAINER) or app_names[0]),
    )
    return [
        *_annotation_ops(pod, new_annotations),
        *([] if spn == "unchanged" else [_add("/spec/shareProcessNamespace", True)]),
        *_container_name_ops(spec),
        _volume_op(spec),
        _agent_op(spec, agent, native=settings.native_sidecar),
    ]


def token_volume() -> dict[str, Any]:
    """The projected service account token volume (one definition for sidecar and
    DaemonSet)."""
    return {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
        "audience": TOKEN_AUDIENCE, "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
        "path": "token"}}]}}


def sidecar_volume() -> dict[str, Any]:
    """The token volume plus the pod's labels (downward API, kept current by the kubelet):
    the sidecar's services carry them, so selectors and RBAC podSelector scopes match."""
    volume = token_volume()
    volume["projected"]["sources"].append({"downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}}]}})
    return volume


def token_mount() -> dict[str, Any]:
    return {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}


def allocator_env() -> dict[str, Any]:
    """glibc keeps at most two malloc arenas instead of one per thread (up to 8 x cores):
    the agent's op threads otherwise each grow their own after a burst of operations
    (bench/bench_agent_levers.py records what it buys). Every agent gets it: sidecar,
    DaemonSet, and the host agent's systemd unit / supervisor."""
    return {"name": "MALLOC_ARENA_MAX", "value": "2"}


def token_file_env() -> dict[str, Any]:
    return {"name": TOKEN_FILE_ENV, "value": f"{TOKEN_DIR}/token"}


def colony_env(config_map: str) -> list[dict[str, Any]]:
    """Colony address, id and CA from the (non-secret) colony ConfigMap."""
    env = []
    for name, key, optional in _CONFIG_KEYS:
        ref: dict[str, Any] = {"name": config_map, "key": key}
        if optional:
            ref["optional"] = True
        env.append({"name": name, "valueFrom": {"configMapKeyRef": ref}})
    return env


def _volume_op(spec: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec.get("volumes"), list):
        return _add("/spec/volumes/-", sidecar_volume())
    return _add("/spec/volumes", [sidecar_volume()])


def _container_name_ops(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Give each app container its own name in its environment (no downward API field
    carries a container's name), unless it already has one."""
    ops = []
    for index, container in enumerate(spec["containers"]):
        entry = {"name": CONTAINER_NAME_ENV, "value": container["name"]}
        env = container.get("env")
        if not isinstance(env, list):
            ops.append(_add(f"/spec/containers/{index}/env", [entry]))
        elif not any(isinstance(e, Mapping) and e.get("name") == CONTAINER_NAME_ENV for e in env):
            ops.append(_add(f"/spec/containers/{index}/env/-", entry))
    return ops


def agent_container(
    *, image: str, app_names: list[str], observe_only: bool,
    settings: settings_mod.InjectSettings, default_container: str = "", ptrace: bool = False,
) -> dict[str, Any]:
    """The agent container as data (native sidecar form when the cluster supports it).

    No added capability by default: the sidecar enters app containers with chroot through
    /proc/<pid>/root as the app's own user (SETUID, SETGID, SYS_CHROOT: the runtime's
    default set), so the pod stays within Pod Security baseline. `ptrace` (annotation
    coral.io/sidecar-ptrace) adds SYS_PTRACE for apps with added capabilities."""
    caps = ["SYS_PTRACE"] if ptrace else []
    caps += ["BPF"] if settings.enable_bpf else []
    container: dict[str, Any] = {
        "name": policy.AGENT_NAME,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(COMMAND),
        "env": _env(app_names, observe_only=observe_only, settings=settings,
                    default_container=default_container or app_names[0]),
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
        },
        "securityContext": {"capabilities": {"add": caps}} if caps else {},
        "volumeMounts": [token_mount()],
    }
    if settings.native_sidecar:
        container["restartPolicy"] = "Always"
    return container


def _env(
    app_names: list[str], *, observe_only: bool, settings: settings_mod.InjectSettings,
    default_container: str,
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "CORAL_AGENT_MODE", "value": "sidecar"}]
    env += [
        {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
        for name, path in _FIELD_REFS
    ]
    env += colony_env(settings.colony_config_map)
    env.append(token_file_env())
    env.append({"name": POD_LABELS_ENV, "value": POD_LABELS_FILE})
    env.append({"name": "CORAL_CONTAINER_NAMES", "value": ",".join(app_names)})
    env.append({"name": "CORAL_DEFAULT_CONTAINER", "value": default_container})
    env.append({"name": "CORAL_OBSERVE_ONLY", "value": "true" if observe_only else "false"})
    env.append(allocator_env())
    return env


def escape(key: str) -> str:
    """A map key as one JSON Pointer segment (RFC 6901): ~ -> ~0, then / -> ~1."""
    return key.replace("~", "~0").replace("/", "~1")


def apply_patch(document: Mapping[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the add/replace/remove operations inject() produces to a copy of document."""
    result = copy.deepcopy(dict(document))
    for op in patch:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            index = len(target) if last == "-" else int(last)
            if op["op"] == "add":
                target.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "remove":
                del target[index]
            else:
                target[index] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del target[last]
        else:
            target[last] = copy.deepcopy(op["value"])
    return result


def _annotation_ops(pod: Mapping[str, Any], new: dict[str, str]) -> list[dict[str, Any]]:
    # A missing (or null) map must be added whole: JSON Patch cannot create parents.
    if not isinstance(pod.get("metadata"), Mapping):
        return [_add("/metadata", {"annotations": new})]
    if not isinstance(pod["metadata"].get("annotations"), Mapping):
        return [_add("/metadata/annotations", new)]
    return [_add(f"/metadata/annotations/{escape(k)}", v) for k, v in new.items()]


def _agent_op(spec: Mapping[str, Any], agent: dict[str, Any], *, native: bool) -> dict[str, Any]:
    if not native:
        return _add("/spec/containers/-", agent)
    if isinstance(spec.get("initContainers"), list) and spec["initContainers"]:
        return _add("/spec/initContainers/0", agent)
    return _add("/spec/initContainers", [agent])


def _share_process_namespace(spec: Mapping[str, Any]) -> str:
    value = spec.get("shareProcessNamespace")
    if value is True:
        return "unchanged"
    return "overridden" if value is False else "set"


def _agent_image(annotations: Mapping[str, Any], settings: settings_mod.InjectSettings) -> str:
    wanted = annotations.get(policy.AGENT_IMAGE)
    # An unusable override falls back to the configured image rather than breaking the pod.
    if isinstance(wanted, str) and len(wanted) < 512 and wanted.split() == [wanted]:
        return wanted
    return settings.image


def _checked_spec(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidPod("pod has no spec object")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise InvalidPod("pod spec.containers must be a non-empty list")
    for key in ("containers", "initContainers"):
        items = spec.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("name"), str) and c["name"]
            for c in items
        ):
            raise InvalidPod(f"pod spec.{key} must be a list of containers with names")
    return spec


def _optional_mapping(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidPod(f"pod {where} must be an object, got {type(value).__name__}")
    return value


def _add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}
