# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Shared pieces of the coral modules: option groups (argument specs), the coral_lib
import guard and shaping per-target results, as kubernetes.core's module_utils do.

Connecting and targeting are coral_lib's (coral_lib.operator.connect and .targeting, the
same code the coral CLI runs); this file only maps module options onto them. Plugins import
coral_lib library modules only, never the CLI (coral_lib.commands).

The option groups here are documented once in plugins/doc_fragments/coral.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import sys
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

# The coral-lib this collection release ships (galaxy.yml version; a test keeps them equal).
COLLECTION_VERSION = "0.1.0"

# How to get coral-lib into the Python that runs a module, said exactly in every failure.
INSTALL_HINT = (
    "Install it: run the coral.mesh.colony or coral.mesh.agent_host role on that host (they "
    "create /opt/coral/venv with it; then set ansible_python_interpreter=/opt/coral/venv/bin/python), "
    "or by hand from the collection's bundled source, copied first so pip does not write "
    "into the installed collection: cp -r \"$(ansible-galaxy collection list coral.mesh "
    "--format yaml | sed -n 's/^\\(\\/.*\\):$/\\1/p' | head -1)/coral/mesh\" /tmp/coral-lib-src && "
    "%s -m pip install /tmp/coral-lib-src"
)

try:
    import coral_lib
    from coral_lib import client, errors
    from coral_lib.operator import connect as operator_connect
    from coral_lib.operator import targeting as targets
except ImportError:
    coral_lib = client = errors = operator_connect = targets = None
    CORAL_IMPORT_ERROR = traceback.format_exc()
else:
    CORAL_IMPORT_ERROR = None

# No default address here: coral_lib.operator.connect holds the one default.
CONNECTION_SPEC = dict(
    colony_address=dict(type="str", fallback=(env_fallback, ["CORAL_COLONY_ADDRESS"])),
    colony_ca_file=dict(type="path", fallback=(env_fallback, ["CORAL_CA_FILE"])),
    colony_token=dict(type="str", no_log=True, fallback=(env_fallback, ["CORAL_TOKEN"])),
    colony_token_file=dict(type="path", no_log=False,
                           fallback=(env_fallback, ["CORAL_TOKEN_FILE"])),
    colony_client_cert=dict(type="path", aliases=["client_cert"],
                            fallback=(env_fallback, ["CORAL_CLIENT_CERT"])),
    colony_client_key=dict(type="path", no_log=False, aliases=["client_key"],
                           fallback=(env_fallback, ["CORAL_CLIENT_KEY"])),
    colony_tls_server_name=dict(type="str", fallback=(env_fallback, ["CORAL_TLS_SERVER_NAME"])),
    colony_connect_timeout=dict(type="float",
                                fallback=(env_fallback, ["CORAL_CONNECT_TIMEOUT"])),
)

TARGETING_SPEC = dict(
    service=dict(type="str"),
    agent=dict(type="str"),
    selector=dict(type="dict"),
    all=dict(type="bool", default=False),
    pod=dict(type="str"),
    namespace=dict(type="str"),
    container=dict(type="str"),
    node=dict(type="str"),
)

# module option -> coral_lib.operator.connect argument (modules, inventory, connection plugin)
CONNECTION_OPTIONS = (("colony_address", "address"), ("colony_ca_file", "ca_file"),
                      ("colony_token", "token"), ("colony_token_file", "token_file"),
                      ("colony_client_cert", "client_cert"), ("colony_client_key", "client_key"),
                      ("colony_tls_server_name", "tls_server_name"),
                      ("colony_connect_timeout", "connect_timeout"))

APPROVAL_SPEC = dict(
    approval_id=dict(type="str", default=""),
    wait_for_approval=dict(type="bool", default=False),
    approval_timeout=dict(type="float", default=600),
)

TARGET_KEYS = ("agent", "service", "node", "namespace", "pod", "container")
RESULT_KEYS = TARGET_KEYS + ("rc", "stdout", "stderr", "duration", "truncated", "timed_out",
                             "error", "status", "audit_id", "finished_audit_id")


def connection_spec():
    return copy.deepcopy(CONNECTION_SPEC)


def targeting_spec():
    return copy.deepcopy(TARGETING_SPEC)


def approval_spec():
    return copy.deepcopy(APPROVAL_SPEC)


def approval_kwargs(params):
    """coral_lib.client arguments for the approval options (doc fragment coral.approval);
    ValueError naming a bad timeout."""
    if params["approval_timeout"] <= 0:
        raise ValueError("approval_timeout must be a positive number of seconds, got %s"
                         % params["approval_timeout"])
    return dict(approval_id=params["approval_id"] or "",
                wait_for_approval=params["wait_for_approval"],
                approval_timeout=params["approval_timeout"])


def version_problem(installed, wanted=COLLECTION_VERSION):
    """Why coral-lib `installed` does not fit this collection ('' when it does)."""
    if installed == wanted:
        return ""
    return ("coral-lib %s is installed but this coral.mesh collection is %s: the two are "
            "released together" % (installed, wanted))


def require_coral_lib(module):
    """Fail with a message that says which interpreter lacks coral-lib (or holds another
    version than the collection's) and exactly how to install the right one."""
    hint = INSTALL_HINT % sys.executable
    if client is None:
        module.fail_json(
            msg=missing_required_lib(
                "coral-lib",
                reason="to talk to the colony (set ansible_python_interpreter to the Python of "
                       "the coral virtualenv, e.g. /opt/coral/venv/bin/python)",
            ) + " Interpreter: %s. %s" % (sys.executable, hint),
            exception=CORAL_IMPORT_ERROR,
        )
    problem = version_problem(getattr(coral_lib, "__version__", "unknown"))
    if problem:
        module.fail_json(msg="%s (interpreter %s). %s" % (problem, sys.executable, hint))


def connect_kwargs(get):
    """coral_lib.operator.connect arguments from option values (get(name) -> value)."""
    return dict((arg, get(option) or None) for option, arg in CONNECTION_OPTIONS)


def targeting(params):
    """The module's targeting through coral_lib's one builder: what the colony accepts
    (service, agent, selector, pod, node or all=true, combined to narrow). Raises
    coral_lib.errors.CoralError (NoTargets, InvalidRequest) naming the problem."""
    return targets.from_mapping(dict((key, params.get(key)) for key in TARGETING_SPEC))


def connect(module):
    """A connected coral_lib client; every failure ends the module with a clear message."""
    try:
        return operator_connect.connect(**connect_kwargs(module.params.get))
    except errors.CoralError as exc:
        fail_coral(module, exc)


def fail_coral(module, exc, **result):
    """Turn a coral_lib error into fail_json; error_kind (the error's kind) lets playbooks
    branch without reading the message."""
    extra = dict(approval_id=exc.approval_id) if isinstance(exc, errors.ApprovalPending) else {}
    extra.update(result)
    module.fail_json(msg=str(exc), error_kind=exc.kind, **extra)


def target_row(target):
    """A resolved target (coral_lib.client.target_dict) with the documented keys only."""
    return dict((key, target.get(key, "")) for key in TARGET_KEYS)


def result_row(result):
    """One per-target exec result with the documented keys only."""
    row = dict((key, result.get(key)) for key in RESULT_KEYS)
    row["error"] = row["error"] or ""
    row["finished_audit_id"] = row["finished_audit_id"] or 0
    # as ansible.builtin.command and kubernetes.core.k8s_exec return them
    row["stdout_lines"] = (row["stdout"] or "").splitlines()
    row["stderr_lines"] = (row["stderr"] or "").splitlines()
    if not row["status"]:
        row["status"] = "ok" if row["rc"] == 0 and not row["error"] else "failed"
    return row


def failed_rows(rows):
    return [row for row in rows if row["status"] != "ok"]


def failure_message(failed, total):
    """One line naming each failed target and why, e.g. for fail_json(msg=...)."""
    parts = []
    for row in failed:
        why = row["error"] or ("timed out" if row.get("timed_out") else "rc=%s" % row["rc"])
        parts.append("%s%s: %s" % (row["agent"], "/" + row["service"] if row["service"] else "",
                                   why))
    return "%d of %d targets failed: %s" % (len(failed), total, "; ".join(parts))
