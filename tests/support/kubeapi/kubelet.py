"""kubelet's part in projected service account tokens, for pods the fixture knows about.

No kubelet runs here, so a test that starts a real agent process for a fixture pod calls
`TokenProjector.project(namespace, pod)`: for every `projected.sources[].serviceAccountToken`
volume of the pod it asks TokenRequest for a token bound to the pod (the volume's
`audience`, default the API's; `expirationSeconds`, default 3600) exactly as kubelet does,
and writes it atomically to `<root>/<namespace>/<pod>/<volume>/<path>`. `refresh()`
rewrites a token once 80% of its life has passed (kubelet's rule), so a long test sees
rotation. `mounts(...)` maps a container's mountPaths to those host directories; point
the agent at them (e.g. CORAL_SERVICE_ACCOUNT_TOKEN_FILE).

FIXTURE BEHAVIOUR: files are written on the host, not mounted into a mount namespace, and
only when the test asks (or calls refresh()).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile


@dataclasses.dataclass
class _Projected:
    namespace: str
    pod: str
    file: pathlib.Path
    request: dict
    issued: float = 0.0
    expires: float = 0.0
    owner: int | None = None  # uid that gets the file (kubelet: the pod's single runAsUser)


class TokenProjector:
    def __init__(self, server, root: str | pathlib.Path):
        self.server = server
        self.root = pathlib.Path(root)
        self._files: list[_Projected] = []

    def project(self, namespace: str, pod_name: str) -> dict[str, pathlib.Path]:
        """Write every projected token of the pod; {volume name: host directory}."""
        pod = self.server.store.get("pods", pod_name, namespace=namespace)
        spec, uid = pod.get("spec") or {}, pod["metadata"]["uid"]
        out: dict[str, pathlib.Path] = {}
        for volume in spec.get("volumes") or []:
            sources = (volume.get("projected") or {}).get("sources") or []
            directory = self.root / namespace / pod_name / volume["name"]
            for source in sources:
                sat = source.get("serviceAccountToken")
                if not sat:
                    continue
                request = {"spec": {
                    "audiences": [sat["audience"]] if sat.get("audience") else [],
                    "expirationSeconds": sat.get("expirationSeconds") or 3600,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod_name,
                                       "uid": uid}}}
                entry = _Projected(namespace, pod_name, directory / sat["path"], request)
                self._write(entry)
                self._files.append(entry)
                out[volume["name"]] = directory
        return out

    def mounts(self, namespace: str, pod_name: str, container: str) -> dict[str, pathlib.Path]:
        """{mountPath in the container: host directory} for its projected-token mounts."""
        pod = self.server.store.get("pods", pod_name, namespace=namespace)
        spec = pod.get("spec") or {}
        dirs = {v["name"]: self.root / namespace / pod_name / v["name"]
                for v in spec.get("volumes") or [] if "projected" in v}
        out = {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if c.get("name") == container:
                for m in c.get("volumeMounts") or []:
                    if m.get("name") in dirs:
                        out[m["mountPath"]] = dirs[m["name"]]
        return out

    def refresh(self) -> int:
        """Re-request tokens past 80% of their life; how many were rewritten."""
        now, count = self.server.tokens.now(), 0
        for entry in self._files:
            if now >= entry.issued + 0.8 * (entry.expires - entry.issued):
                self._write(entry)
                count += 1
        return count

    def _write(self, entry: _Projected) -> None:
        doc = self.server.tokens.request(entry.namespace, self._sa(entry), entry.request)
        token = doc["status"]["token"]
        entry.issued = self.server.tokens.now()
        entry.expires = entry.issued + doc["spec"]["expirationSeconds"]
        entry.file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.file.parent, prefix=".token-")
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        os.chmod(tmp, 0o600)
        if entry.owner is not None:
            os.chown(tmp, entry.owner, -1)
        os.replace(tmp, entry.file)  # readers see the old or the new token, never half

    def _sa(self, entry: _Projected) -> str:
        pod = self.server.store.get("pods", entry.pod, namespace=entry.namespace)
        return (pod.get("spec") or {}).get("serviceAccountName") or "default"

