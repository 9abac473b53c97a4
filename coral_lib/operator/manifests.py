"""Rendering deployment manifests for a front end (`coral manifests render`, the
coral_manifest module): objects as text, and the webhook's TLS material kept in a folder."""

from __future__ import annotations

import json
import pathlib

from coral_lib.manifests import objects as objects_mod
from coral_lib.manifests import settings as settings_mod
from coral_lib.webhook import certs

TLS_FILES = certs.TLS_FILES


def dumps(objects: list[dict], *, output: str) -> str:
    """Objects as people read them: Kubernetes' conventional key order, and in YAML no
    anchors or aliases (a renderer may share one dict between two places, e.g. the same
    httpGet for two probes; a reader should see it written out twice)."""
    objects = [objects_mod.conventional_order(obj) for obj in objects]
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
    import yaml

    class _NoAliasDumper(yaml.SafeDumper):
        def ignore_aliases(self, data) -> bool:
            return True

    return yaml.dump_all(objects, Dumper=_NoAliasDumper, sort_keys=False)


def load_or_generate_tls(folder: str | None, values: dict) -> certs.TLSMaterial:
    """TLS material from `folder` (written there first if absent); fresh when no folder."""
    service = values.get("webhook_name", "coral-webhook")
    namespace = values.get("namespace", "coral-system")
    if folder is None:
        return certs.generate(service=service, namespace=namespace)
    path = pathlib.Path(folder)
    present = [(path / name).exists() for name in TLS_FILES]
    if any(present) and not all(present):
        raise settings_mod.ManifestError(
            f"--tls-dir {folder}: has some of {', '.join(TLS_FILES)} but not all; "
            "provide all three or none (to generate them)")
    if not all(present):
        tls = certs.generate(service=service, namespace=namespace)
        certs.write_files(path, tls)  # atomic, 0600
        return tls
    ca, cert, key = ((path / name).read_bytes() for name in TLS_FILES)
    return certs.TLSMaterial(ca_pem=ca, cert_pem=cert, key_pem=key)
