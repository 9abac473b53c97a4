# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Shared pieces of the coral modules: option groups, the coral_lib import guard,
connecting to the colony and shaping per-target results.

The option groups here are documented once in plugins/doc_fragments/coral.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import sys
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    from coral_lib import client
except ImportError:
    client = None
    CORAL_IMPORT_ERROR = traceback.format_exc()
else:
    CORAL_IMPORT_ERROR = None

DEFAULT_ADDRESS = "127.0.0.1:9443"

CONNECTION_SPEC = dict(
    colony_address=dict(type="str", default=DEFAULT_ADDRESS,
                        fallback=(env_fallback, ["CORAL_COLONY_ADDRESS"])),
    colony_ca_file=dict(type="path", fallback=(env_fallback, ["CORAL_CA_FILE"])),
    colony_token=dict(type="str", no_log=True, fallback=(env_fallback, ["CORAL_TOKEN"])),
    colony_token_file=dict(type="path", no_log=False,
                           fallback=(env_fallback, ["CORAL_TOKEN_FILE"])),
)

TARGETING_SPEC = dict(
    service=dict(type="str"),
    agent=dict(type="str"),
    selector=dict(type="dict"),
    all=dict(type="bool", default=False),
)

TARGET_KEYS = ("agent", "service", "node", "namespace", "pod", "container")
RESULT_KEYS = TARGET_KEYS + ("rc", "stdout", "stderr", "duration", "truncated", "timed_out",
                             "error", "status", "audit_id")


def connection_spec():
    return copy.deepcopy(CONNECTION_SPEC)


def targeting_spec():
    return copy.deepcopy(TARGETING_SPEC)


def require_coral_lib(module):
    """Fail with a message that says which interpreter lacks coral-lib and how to fix it."""
    if client is None:
        module.fail_json(
            msg=missing_required_lib(
                "coral-lib",
                reason="to talk to the colony (set ansible_python_interpreter to the Python of "
                       "the coral virtualenv, e.g. /opt/coral/venv/bin/python)",
            ) + " Interpreter: %s" % sys.executable,
            exception=CORAL_IMPORT_ERROR,
        )


def _local_data_dir():
    # the same default as coral_lib.config.default_data_dir (and the colony role)
    default = "/var/lib/coral/colony" if os.geteuid() == 0 else os.path.expanduser("~/.coral/colony")
    return os.environ.get("CORAL_COLONY_DATA_DIR") or default


def read_token(params):
    """The operator token: colony_token, else the token file, else the local colony's."""
    if params.get("colony_token"):
        return params["colony_token"].strip()
    path = params.get("colony_token_file") or os.path.join(_local_data_dir(), "admin.token")
    try:
        with open(path) as handle:
            token = handle.read().strip()
    except (IOError, OSError) as exc:
        raise ValueError(
            "no operator token: colony_token (CORAL_TOKEN) is not set and the token file %s "
            "cannot be read (%s); set colony_token or colony_token_file" % (path, exc.strerror))
    if not token:
        raise ValueError("operator token file %s is empty" % path)
    return token


def targeting(params):
    """Exactly one of service / agent / selector / all, as a coral_lib Targeting."""
    chosen = [name for name in ("service", "agent", "selector") if params.get(name)]
    if params.get("all"):
        chosen.append("all")
    if len(chosen) != 1:
        raise ValueError(
            "give exactly one of service, agent, selector or all=true (got %s)"
            % (", ".join(chosen) or "none"))
    selector = params.get("selector")
    if selector is not None:
        selector = dict((str(k), str(v)) for k, v in selector.items())
    return client.Targeting(service=params.get("service") or None,
                            agent=params.get("agent") or None,
                            selector=selector or None, all=bool(params.get("all")))


def connect(module):
    """A connected coral_lib client; every failure ends the module with a clear message."""
    params = module.params
    ca_file = params.get("colony_ca_file") or os.path.join(_local_data_dir(), "ca.crt")
    try:
        token = read_token(params)
        return client.connect(params["colony_address"], ca_file=ca_file, token=token)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except client.CoralError as exc:
        fail_coral(module, exc)


def fail_coral(module, exc, **result):
    """Turn a coral_lib error into fail_json; the error kind helps playbooks branch."""
    module.fail_json(msg=str(exc), error_kind=type(exc).__name__, **result)


def target_row(target):
    """A resolved target in the shape the modules return (keys as in results)."""
    row = dict((key, target.get(key, "")) for key in TARGET_KEYS)
    row["agent"] = target.get("agent") or target.get("agent_id", "")
    return row


def result_row(result):
    """One per-target exec result with the documented keys only."""
    row = dict((key, result.get(key)) for key in RESULT_KEYS)
    row["error"] = row["error"] or ""
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
