"""`coral manifests render --mode daemonset|webhook|sidecar [--set k=v] [-o yaml|json]`."""

from __future__ import annotations

import argparse
import sys

from coral_lib import manifests
from coral_lib.manifests import settings as settings_mod
from coral_lib.operator.manifests import dumps, load_or_generate_tls


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
    render.add_argument("--service-monitor", action="store_true",
                        help="also render a prometheus-operator ServiceMonitor (daemonset: "
                             "with a headless metrics Service; webhook)")
    render.set_defaults(func=render_command)


def render_command(args: argparse.Namespace) -> int:
    try:
        values = settings_mod.parse_sets(args.set)
        tls = None
        if args.mode == "webhook" and values.get("cert_mode", "secret") == "secret":
            tls = load_or_generate_tls(args.tls_dir, values)
        settings = settings_mod.build(values, tls=tls)
        objects = manifests.render(args.mode, settings)
        if args.service_monitor:
            objects += manifests.service_monitors(args.mode, settings)
    except (settings_mod.ManifestError, OSError) as exc:
        print(f"coral manifests: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(dumps(objects, output=args.output))
    return 0
