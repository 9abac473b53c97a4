"""`coral manifests render --mode daemonset|webhook|sidecar [--set k=v] [-o yaml|json]`."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import TYPE_CHECKING

from coral_lib import manifests
from coral_lib.manifests import settings as settings_mod

if TYPE_CHECKING:
    from coral_lib.webhook import certs

TLS_FILES = ("ca.crt", "tls.crt", "tls.key")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("manifests", help="render Kubernetes objects for a mode")
    verbs = parser.add_subparsers(dest="manifests_command", metavar="VERB")
    render = verbs.add_parser("render", help="print the objects of one deployment mode")
    render.add_argument("--mode", required=True, choices=sorted(manifests.MODES))
    render.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a setting (repeatable): "
                        + ", ".join(sorted(settings_mod.settable())))
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    render.add_argument("--tls-dir", default=None,
                        help="webhook mode: ca.crt/tls.crt/tls.key in this directory are "
                        "used, or generated there when absent (stable across renders)")
    render.set_defaults(func=render_command)


def render_command(args: argparse.Namespace) -> int:
    try:
        values = settings_mod.parse_sets(args.set)
        tls = None
        if args.mode == "webhook" and values.get("cert_mode", "secret") == "secret":
            tls = load_or_generate_tls(args.tls_dir, values)
        objects = manifests.render(args.mode, settings_mod.build(values, tls=tls))
    except (settings_mod.ManifestError, OSError) as exc:
        print(f"coral manifests: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(dumps(objects, output=args.output))
    return 0


def dumps(objects: list[dict], *, output: str) -> str:
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
    import yaml

    return yaml.safe_dump_all(objects, sort_keys=False)


def load_or_generate_tls(folder: str | None, values: dict) -> certs.TLSMaterial:
    """TLS material from `folder` (written there first if absent); fresh when no folder."""
    from coral_lib.webhook import certs  # cryptography: only when TLS material is needed

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
        path.mkdir(parents=True, exist_ok=True)
        for name, data in zip(TLS_FILES, (tls.ca_pem, tls.cert_pem, tls.key_pem), strict=True):
            fd = os.open(path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return tls
    ca, cert, key = ((path / name).read_bytes() for name in TLS_FILES)
    return certs.TLSMaterial(ca_pem=ca, cert_pem=cert, key_pem=key)
