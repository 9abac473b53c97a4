"""Pure mapping from a Pod object to what kubelet sends over CRI (no I/O).

The pod runner (tests/support/podrunner.py) calls these; each follows kubelet's own rule,
named in the docstring, so table tests can hold the mapping to it without a runtime.
"""

from __future__ import annotations

import base64
import re

from coral_lib._proto.cri.runtime.v1 import api_pb2
from coral_lib.ops import cri

# kubelet's defaults for a non-privileged container (procMount: Default).
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class ConfigError(Exception):
    """kubelet's CreateContainerConfigError: the container cannot be created as specified."""


def pod_ref(pod: dict) -> str:
    """kubelet's format.Pod: name_namespace(uid)."""
    meta = pod["metadata"]
    return f"{meta['name']}_{meta.get('namespace', 'default')}({meta.get('uid', '')})"


def namespace_options(pod_spec: dict) -> api_pb2.NamespaceOption:
    """hostNetwork / hostPID / hostIPC -> NODE; shareProcessNamespace -> one PID ns per pod."""
    if pod_spec.get("hostPID"):
        pid = api_pb2.NODE
    elif pod_spec.get("shareProcessNamespace"):
        pid = api_pb2.POD
    else:
        pid = api_pb2.CONTAINER
    return api_pb2.NamespaceOption(
        network=api_pb2.NODE if pod_spec.get("hostNetwork") else api_pb2.POD,
        pid=pid, ipc=api_pb2.NODE if pod_spec.get("hostIPC") else api_pb2.POD)


def effective_security(pod_spec: dict, container: dict) -> dict:
    """securitycontext.DetermineEffectiveSecurityContext: container fields win over the pod's."""
    pod_sc = pod_spec.get("securityContext") or {}
    out = {k: pod_sc[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile",
                                  "supplementalGroups") if k in pod_sc}
    out.update(container.get("securityContext") or {})
    return out


def seccomp_profile(profile: dict | None, *, privileged: bool) -> api_pb2.SecurityProfile:
    """Unset means Unconfined (kubelet without SeccompDefault); privileged is unconfined."""
    kind = (profile or {}).get("type")
    if privileged or kind in (None, "Unconfined"):
        return api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Unconfined)
    if kind == "Localhost":
        return api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Localhost,
                                       localhost_ref=profile.get("localhostProfile", ""))
    return api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault)


def container_security(pod_spec: dict, container: dict) -> api_pb2.LinuxContainerSecurityContext:
    """kubelet's determineEffectiveSecurityContext + convertToRuntimeSecurityContext."""
    sc = effective_security(pod_spec, container)
    privileged = bool(sc.get("privileged"))
    caps = sc.get("capabilities") or {}
    out = api_pb2.LinuxContainerSecurityContext(
        privileged=privileged, namespace_options=namespace_options(pod_spec),
        readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        # AddNoNewPrivileges: only an explicit allowPrivilegeEscalation=false sets it.
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        supplemental_groups=[int(g) for g in sc.get("supplementalGroups") or []],
        seccomp=seccomp_profile(sc.get("seccompProfile"), privileged=privileged),
        capabilities=api_pb2.Capability(add_capabilities=list(caps.get("add") or []),
                                        drop_capabilities=list(caps.get("drop") or [])))
    if "runAsUser" in sc:
        out.run_as_user.value = int(sc["runAsUser"])
    if "runAsGroup" in sc:
        out.run_as_group.value = int(sc["runAsGroup"])
    if not privileged:
        out.masked_paths.extend(MASKED_PATHS)
        out.readonly_paths.extend(READONLY_PATHS)
    return out


def verify_run_as_non_root(pod: dict, container: dict, image_uid: int | None,
                           image_user: str) -> None:
    """kubelet's verifyRunAsNonRoot; an image naming no user runs as root."""
    sc = effective_security(pod.get("spec") or {}, container)
    if not sc.get("runAsNonRoot"):
        return
    ref, name = pod_ref(pod), container["name"]
    if "runAsUser" in sc:
        if int(sc["runAsUser"]) == 0:
            raise ConfigError(f"container's runAsUser breaks non-root policy "
                              f"(pod: \"{ref}\", container: {name})")
        return
    if image_uid is None and image_user:
        raise ConfigError(f"container has runAsNonRoot and image has non-numeric user "
                          f"({image_user}), cannot verify user is non-root "
                          f"(pod: \"{ref}\", container: {name})")
    if not image_uid:
        raise ConfigError(f"container has runAsNonRoot and image will run as root "
                          f"(pod: \"{ref}\", container: {name})")


def field_value(pod: dict, path: str) -> str:
    """The downward API's fieldRef paths kubelet resolves."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    found = _FIELD_LABEL.match(path)
    if found:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"),
              "status.hostIP": status.get("hostIP"), "status.podIP": status.get("podIP")}
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path] or "")


def key_value(store_get, kind: str, namespace: str, ref: dict) -> str | None:
    """secretKeyRef / configMapKeyRef: the value, None when optional and absent."""
    optional = bool(ref.get("optional"))
    plural = "secrets" if kind == "secret" else "configmaps"
    obj = store_get(plural, ref.get("name", ""), namespace)
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref.get("name")}" not found')
    data = obj.get("data") or {}
    if ref.get("key") not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref.get('key')} in {_kind_title(kind)} "
                          f"{namespace}/{ref.get('name')}")
    value = data[ref["key"]]
    return base64.b64decode(value).decode() if kind == "secret" else value


def _kind_title(kind: str) -> str:
    return "Secret" if kind == "secret" else "ConfigMap"


def container_env(pod: dict, container: dict, store_get) -> list[tuple[str, str]]:
    """env in order (value, fieldRef, secretKeyRef, configMapKeyRef), $(VAR) expanded."""
    namespace = pod["metadata"].get("namespace", "default")
    out: dict[str, str] = {}
    for var in container.get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            out[var["name"]] = expand(var.get("value", ""), out)
            continue
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"].get("fieldPath", ""))
        elif "secretKeyRef" in source:
            value = key_value(store_get, "secret", namespace, source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = key_value(store_get, "configmap", namespace, source["configMapKeyRef"])
        else:
            raise ConfigError(f"env {var['name']}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            out[var["name"]] = value
    return list(out.items())


def expand(text: str, env: dict[str, str]) -> str:
    """$(VAR) from earlier env entries; $$ escapes; unknown references stay as written."""
    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _VAR_REF.sub(one, text)


def container_labels(pod: dict, container_name: str) -> dict[str, str]:
    meta = pod["metadata"]
    return {cri.POD_NAME_LABEL: meta["name"], cri.POD_NAMESPACE_LABEL: meta["namespace"],
            cri.POD_UID_LABEL: meta["uid"], cri.CONTAINER_NAME_LABEL: container_name}


def sandbox_config(pod: dict, *, log_dir: str, cgroup_parent: str) -> api_pb2.PodSandboxConfig:
    """kubelet's generatePodSandboxConfig (Linux part)."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    privileged = any((c.get("securityContext") or {}).get("privileged") for c in containers)
    sc = api_pb2.LinuxSandboxSecurityContext(
        namespace_options=namespace_options(spec), privileged=privileged,
        supplemental_groups=[int(g) for g in pod_sc.get("supplementalGroups") or []],
        seccomp=seccomp_profile(pod_sc.get("seccompProfile"), privileged=privileged))
    if "runAsUser" in pod_sc:
        sc.run_as_user.value = int(pod_sc["runAsUser"])
    if "runAsGroup" in pod_sc:
        sc.run_as_group.value = int(pod_sc["runAsGroup"])
    labels = {k: v for k, v in container_labels(pod, "").items()
              if k != cri.CONTAINER_NAME_LABEL}
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=meta["name"], uid=meta["uid"],
                                            namespace=meta["namespace"]),
        hostname="" if spec.get("hostNetwork") else meta["name"][:63],
        log_directory=log_dir, labels={**(meta.get("labels") or {}), **labels},
        annotations=dict(meta.get("annotations") or {}),
        linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=sc))


def container_config(pod: dict, container: dict, *, env: list[tuple[str, str]],
                     mounts: list[api_pb2.Mount], attempt: int) -> api_pb2.ContainerConfig:
    spec = pod.get("spec") or {}
    values = dict(env)
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=container["name"], attempt=attempt),
        image=api_pb2.ImageSpec(image=container.get("image", "")),
        command=[expand(a, values) for a in container.get("command") or []],
        args=[expand(a, values) for a in container.get("args") or []],
        working_dir=container.get("workingDir", ""),
        envs=[api_pb2.KeyValue(key=k, value=v) for k, v in env], mounts=mounts,
        labels=container_labels(pod, container["name"]),
        annotations={"io.kubernetes.container.restartCount": str(attempt)},
        log_path=f"{container['name']}/{attempt}.log",
        stdin=bool(container.get("stdin")), tty=bool(container.get("tty")),
        linux=api_pb2.LinuxContainerConfig(security_context=container_security(spec, container)))


def is_sidecar(container: dict) -> bool:
    """A native sidecar: an init container with restartPolicy Always."""
    return container.get("restartPolicy") == "Always"


def should_restart(pod_spec: dict, container: dict, exit_code: int, *, init: bool) -> bool:
    """kubelet's rule: sidecars always; init containers until they succeed (unless Never)."""
    if is_sidecar(container):
        return True
    policy = pod_spec.get("restartPolicy") or "Always"
    if init:
        return exit_code != 0 and policy != "Never"
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)
