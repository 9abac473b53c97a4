"""Pod Security admission: the `pod-security.kubernetes.io/enforce` label of a namespace.

`violations(pod, level)` is the pure check against the Pod Security Standards table
(https://kubernetes.io/docs/concepts/security/pod-security-standards/), one entry per
failing check in the order and wording of k8s.io/pod-security-admission (check ids sorted;
restricted replaces the baseline capability, seccomp and hostPath checks with stricter
ones). `enforce(store, namespace, pod)` raises the 403 kube-apiserver answers:
`pods "x" is forbidden: violates PodSecurity "baseline:latest": host namespaces
(hostNetwork=true), ...`.

Not modelled: SELinux, AppArmor, Windows host process, host probes/lifecycle hooks,
`audit`/`warn` modes, exemptions and the checks of older `enforce-version`s. An enforce
value that is not a level is treated as `restricted` (fail closed).
"""

from __future__ import annotations

from tests.support.kubeapi import errors

LABEL = "pod-security.kubernetes.io/enforce"
VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"
LEVELS = ("privileged", "baseline", "restricted")
BASELINE_CAPS = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                           "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP",
                           "SETUID", "SYS_CHROOT"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"})
RESTRICTED_VOLUMES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret")


def _quote(items) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _containers(spec: dict) -> list[dict]:
    """initContainers, containers, ephemeralContainers: the order the checks visit them."""
    return [c for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or [] if isinstance(c, dict)]


def _who(names: list[str], singular: str = "container", plural: str = "containers") -> str:
    return f"{singular if len(names) == 1 else plural} {_quote(names)}"


def _sc(c: dict) -> dict:
    return c.get("securityContext") or {}


def _cap_name(cap: str) -> str:
    return cap.upper().removeprefix("CAP_")


# ---- baseline checks: (id, reason, detail or None) --------------------------------------

def _capabilities_baseline(spec: dict) -> str | None:
    bad, caps = [], set()
    for c in _containers(spec):
        extra = [a for a in ((_sc(c).get("capabilities") or {}).get("add") or [])
                 if _cap_name(a) not in BASELINE_CAPS]
        if extra:
            bad.append(c["name"])
            caps.update(extra)
    if not bad:
        return None
    return (f"{_who(bad)} must not include {_quote(sorted(caps))} in "
            "securityContext.capabilities.add")


def _host_namespaces(spec: dict) -> str | None:
    on = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    return ", ".join(on) or None


def _host_path_volumes(spec: dict) -> str | None:
    bad = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    return _who(bad, "volume", "volumes") if bad else None


def _host_ports(spec: dict) -> str | None:
    bad, ports = [], []
    for c in _containers(spec):
        used = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if used:
            bad.append(c["name"])
            ports.extend(used)
    if not bad:
        return None
    verb = "uses hostPort" if len(bad) == 1 and len(ports) == 1 else (
        "uses hostPorts" if len(bad) == 1 else "use hostPorts")
    return f"{_who(bad)} {verb} {', '.join(ports)}"


def _privileged(spec: dict) -> str | None:
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("privileged")]
    return f"{_who(bad)} must not set securityContext.privileged=true" if bad else None


def _proc_mount(spec: dict) -> str | None:
    bad = [c["name"] for c in _containers(spec)
           if _sc(c).get("procMount") not in (None, "Default")]
    return (f'{_who(bad)} must not set securityContext.procMount to "Unmasked"'
            if bad else None)


def _seccomp_baseline(spec: dict) -> str | None:
    out = []
    if ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get(
            "type") == "Unconfined":
        out.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    bad = [c["name"] for c in _containers(spec)
           if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    if bad:
        out.append(f'{_who(bad)} must not set securityContext.seccompProfile.type to '
                   f'"Unconfined"')
    return "; ".join(out) or None


def _sysctls(spec: dict) -> str | None:
    bad = [s.get("name", "") for s in (spec.get("securityContext") or {}).get("sysctls") or []
           if s.get("name") not in SAFE_SYSCTLS]
    return ", ".join(bad) or None


# ---- restricted checks -------------------------------------------------------------------

def _allow_privilege_escalation(spec: dict) -> str | None:
    bad = [c["name"] for c in _containers(spec)
           if _sc(c).get("allowPrivilegeEscalation") is not False]
    return (f"{_who(bad)} must set securityContext.allowPrivilegeEscalation=false"
            if bad else None)


def _capabilities_restricted(spec: dict) -> str | None:
    no_drop, bad_add, caps = [], [], set()
    for c in _containers(spec):
        cap = _sc(c).get("capabilities") or {}
        if "ALL" not in [_cap_name(d) for d in cap.get("drop") or []]:
            no_drop.append(c["name"])
        extra = [a for a in cap.get("add") or [] if _cap_name(a) != "NET_BIND_SERVICE"]
        if extra:
            bad_add.append(c["name"])
            caps.update(extra)
    out = []
    if no_drop:
        out.append(f'{_who(no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if bad_add:
        out.append(f"{_who(bad_add)} must not include {_quote(sorted(caps))} in "
                   "securityContext.capabilities.add")
    return "; ".join(out) or None


def _restricted_volumes(spec: dict) -> str | None:
    bad, kinds = [], []
    for v in spec.get("volumes") or []:
        kind = next((k for k in v if k != "name"), "")
        if kind and kind not in RESTRICTED_VOLUMES:
            bad.append(v["name"])
            kinds.append(kind)
    if not bad:
        return None
    verb = "uses restricted volume type" if len(bad) == 1 else "use restricted volume types"
    return f"{_who(bad, 'volume', 'volumes')} {verb} {_quote(sorted(set(kinds)))}"


def _run_as_non_root(spec: dict) -> str | None:
    pod_value = (spec.get("securityContext") or {}).get("runAsNonRoot")
    out = []
    if pod_value is False:
        out.append("pod must not set securityContext.runAsNonRoot=false")
    explicit_false = [c["name"] for c in _containers(spec) if _sc(c).get("runAsNonRoot") is False]
    if explicit_false:
        out.append(f"{_who(explicit_false)} must not set securityContext.runAsNonRoot=false")
    if pod_value is not True:
        unset = [c["name"] for c in _containers(spec) if _sc(c).get("runAsNonRoot") is None]
        if unset:
            out.append(f"pod or {_who(unset)} must set securityContext.runAsNonRoot=true")
    return "; ".join(out) or None


def _run_as_user(spec: dict) -> str | None:
    out = []
    if (spec.get("securityContext") or {}).get("runAsUser") == 0:
        out.append("pod must not set runAsUser=0")
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    if bad:
        out.append(f"{_who(bad)} must not set runAsUser=0")
    return "; ".join(out) or None


def _seccomp_restricted(spec: dict) -> str | None:
    pod_type = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    out = []
    if pod_type == "Unconfined":
        out.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    explicit = [c["name"] for c in _containers(spec)
                if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    if explicit:
        out.append(f'{_who(explicit)} must not set securityContext.seccompProfile.type to '
                   f'"Unconfined"')
    if pod_type not in ("RuntimeDefault", "Localhost"):
        unset = [c["name"] for c in _containers(spec)
                 if (_sc(c).get("seccompProfile") or {}).get("type") is None]
        if unset:
            out.append(f'pod or {_who(unset)} must set securityContext.seccompProfile.type '
                       f'to "RuntimeDefault" or "Localhost"')
    return "; ".join(out) or None


# (check id, level, reason, function, ids it replaces at restricted); sorted by id.
CHECKS = (
    ("allowPrivilegeEscalation", "restricted", "allowPrivilegeEscalation != false",
     _allow_privilege_escalation, ()),
    ("capabilities_baseline", "baseline", "non-default capabilities",
     _capabilities_baseline, ()),
    ("capabilities_restricted", "restricted", "unrestricted capabilities",
     _capabilities_restricted, ("capabilities_baseline",)),
    ("hostNamespaces", "baseline", "host namespaces", _host_namespaces, ()),
    ("hostPathVolumes", "baseline", "hostPath volumes", _host_path_volumes, ()),
    ("hostPorts", "baseline", "hostPort", _host_ports, ()),
    ("privileged", "baseline", "privileged", _privileged, ()),
    ("procMount", "baseline", "procMount", _proc_mount, ()),
    ("restrictedVolumes", "restricted", "restricted volume types", _restricted_volumes,
     ("hostPathVolumes",)),
    ("runAsNonRoot", "restricted", "runAsNonRoot != true", _run_as_non_root, ()),
    ("runAsUser", "restricted", "runAsUser=0", _run_as_user, ()),
    ("seccompProfile_baseline", "baseline", "seccompProfile", _seccomp_baseline, ()),
    ("seccompProfile_restricted", "restricted", "seccompProfile", _seccomp_restricted,
     ("seccompProfile_baseline",)),
    ("sysctls", "baseline", "forbidden sysctls", _sysctls, ()),
)


def violations(pod_spec: dict, level: str) -> list[str]:
    """`reason (detail)` for each check the pod fails at `level`, in upstream order."""
    if level == "privileged":
        return []
    active = [c for c in CHECKS if c[1] == "baseline" or level == "restricted"]
    replaced = {r for c in active for r in c[4]}
    out = []
    for check_id, _level, reason, fn, _replaces in active:
        if check_id in replaced:
            continue
        detail = fn(pod_spec or {})
        if detail:
            out.append(f"{reason} ({detail})")
    return out


def namespace_level(labels: dict | None) -> tuple[str, str]:
    """(level, version) the namespace enforces; no label is privileged."""
    labels = labels or {}
    level = labels.get(LABEL, "privileged")
    return (level if level in LEVELS else "restricted"), labels.get(VERSION_LABEL, "latest")


def enforce(store, namespace: str, pod: dict) -> None:
    """Refuse a pod its namespace's enforce level does not allow (403, as upstream)."""
    with store.lock:
        found = store._objects["namespaces"].get(("", namespace))
    labels = found[0]["metadata"].get("labels") if found else None
    level, version = namespace_level(labels)
    failed = violations(pod.get("spec") or {}, level)
    if failed:
        meta = pod.get("metadata") or {}
        name = meta.get("name") or meta.get("generateName", "")
        raise errors.ApiError(403, f'pods "{name}" is forbidden: violates PodSecurity '
                              f'"{level}:{version}": {", ".join(failed)}', reason="Forbidden")
