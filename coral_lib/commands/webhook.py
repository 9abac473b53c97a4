"""`coral webhook serve|certs`: run the sidecar injector, or write TLS files for it."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from coral_lib import logs

if TYPE_CHECKING:
    from coral_lib.webhook import settings as settings_mod

# The webhook server, its settings and certs (cryptography) load in the verb that uses them.
log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    webhook = sub.add_parser("webhook", help="the sidecar auto-injection webhook")
    verbs = webhook.add_subparsers(dest="webhook_command", metavar="VERB")
    serve = verbs.add_parser("serve", help="serve AdmissionReviews over HTTPS")
    serve.add_argument("--listen", default="0.0.0.0:8443", help="HOST:PORT (default %(default)s)")
    serve.add_argument("--cert", required=True, help="serving certificate PEM (reloaded on change)")
    serve.add_argument("--key", required=True, help="serving private key PEM")
    serve.add_argument("--settings", default=None, help="injector settings YAML/JSON file")
    logs.add_argument(serve)
    serve.add_argument("--namespace-labels", default=None,
                       help="YAML/JSON file {namespace: {label: value}} used instead of the "
                       "Kubernetes API (offline runs, tests)")
    serve.add_argument("--kubeconfig", default=None,
                       help="kubeconfig for namespace label lookups (default: in-cluster, "
                       "then KUBECONFIG / ~/.kube/config)")
    serve.set_defaults(func=serve_command)
    gen = verbs.add_parser("certs", help="write a CA and a serving cert for the webhook Service")
    gen.add_argument("--service", default="coral-webhook")
    gen.add_argument("--namespace", default="coral-system")
    gen.add_argument("--ip", action="append", default=[], help="extra IP SAN (repeatable)")
    gen.add_argument("--out", required=True, help="directory for ca.crt, tls.crt, tls.key")
    gen.set_defaults(func=certs_command)


def serve_command(args: argparse.Namespace) -> int:
    from coral_lib.webhook import server
    from coral_lib.webhook import settings as settings_mod

    try:
        cfg = _settings_file(args.settings) if args.settings else settings_mod.InjectSettings()
        labels = (_labels_file(args.namespace_labels) if args.namespace_labels
                  else server.KubernetesNamespaceLabels(kubeconfig=args.kubeconfig))
        srv = server.make_server(listen=args.listen, cert_file=args.cert, key_file=args.key,
                                 settings=cfg, namespace_labels=labels)
    except (settings_mod.SettingsError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot start webhook on {args.listen} with {args.cert}/{args.key}: {exc}")
    log.info("coral webhook listening on %s", args.listen)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


def certs_command(args: argparse.Namespace) -> int:
    from coral_lib.webhook import certs

    try:
        tls = certs.generate(service=args.service, namespace=args.namespace, ips=args.ip)
    except ValueError as exc:
        return _fail(f"--ip: {exc}")
    print(certs.write_files(args.out, tls))
    return 0


def _settings_file(path: str) -> settings_mod.InjectSettings:
    """Injector settings from a YAML or JSON file (JSON is YAML: one parser reads both)."""
    from coral_lib.webhook import settings as settings_mod

    data = _read_yaml(path, what="settings file")
    return settings_mod.from_mapping(data or {}, source=f"settings file {path}")


def _read_yaml(path: str, *, what: str) -> object:
    from coral_lib import yamlfile
    from coral_lib.webhook import settings as settings_mod

    try:
        return yamlfile.load(path, source=f"{what} {path}")
    except yamlfile.YamlFileError as exc:
        raise settings_mod.SettingsError(str(exc)) from None


def _labels_file(path: str) -> dict[str, dict[str, str]]:
    data = _read_yaml(path, what="namespace labels file") or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"namespace labels file {path}: expected {{namespace: {{label: value}}}}")
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in data.items()}


def _fail(message: str, code: int = 2) -> int:
    print(f"coral webhook: {message}", file=sys.stderr)
    return code
