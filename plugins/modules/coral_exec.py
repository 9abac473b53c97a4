#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: coral_exec
short_description: Run a command on the services and agents registered in a Coral colony
version_added: 0.1.0
author:
  - Coral maintainers (@coral-maintainers)
description:
  - Asks the colony to run one command on every selected target (an agent and, where the
    target was chosen by service, that service) and returns one result per target.
  - The colony authenticates the caller, audits the operation (a C(started) record before,
    an C(entered) record naming what the agent entered and a C(finished) record after each
    target) and fans it out to the agents.
  - The command runs as an argument vector; a shell is used only with O(shell=true).
  - The task fails when any target fails (non-zero exit, timeout, or could not start)
    unless O(allow_failures=true).
extends_documentation_fragment:
  - coral.mesh.coral
  - coral.mesh.coral.targeting
  - coral.mesh.coral.approval
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  action_group:
    support: full
    membership: [coral.mesh.coral]
  check_mode:
    support: full
    details: >-
      Resolves the targets with the colony and returns them; runs nothing. C(changed) is
      what the real run would report (true when any target would run the command).
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  command:
    description:
      - The command as one string, split into arguments with shell-like quoting rules
        (Python C(shlex)); no shell runs it unless O(shell=true).
      - With O(shell=true) the string is passed to C(/bin/sh -c) as it is.
      - Exactly one of O(command) and O(argv) is required.
    type: str
  argv:
    description:
      - The command as a list of arguments, run without a shell.
      - With O(shell=true) the items are joined with spaces into one shell script.
    type: list
    elements: str
  shell:
    description:
      - Run the command with C(/bin/sh -c) on each target.
    type: bool
    default: false
  timeout:
    description:
      - Seconds each target may run before it is killed and reported as timed out.
    type: float
    default: 30
  max_output:
    description:
      - Bytes of standard output and of standard error kept per target; the rest is cut
        and the target's RV(results[].truncated) is true, with a warning naming it.
      - The colony caps it at its C(limits.outputBytes) setting (default 4 MiB) and the
        agent at 32 MiB.
    type: int
    default: 1048576
  allow_failures:
    description:
      - Do not fail the task when some targets fail; their results still show it.
    type: bool
    default: false
  max_concurrency:
    description:
      - At most this many targets run the command at the same time (the colony's fan-out
        width). C(0) leaves it to the colony (64).
      - Use it like the play keyword C(serial), but inside one task across the targets the
        colony resolves.
    type: int
    default: 0
  stop_on_failure_percentage:
    description:
      - Stop starting new targets once more than this percentage of all targets failed;
        targets not started are reported with status C(skipped); targets already
        running finish.
        C(0) never stops early.
      - Like the play keyword C(max_fail_percentage), applied inside the fan-out.
    type: float
    default: 0
notes:
  - >-
    Modules cannot print while they run. Each finished target is logged as it completes
    to the system log of the host running the module (syslog or the journal, identifier
    C(ansible-coral_exec)), for example C(coral_exec [3/10] web-01/api: ok rc=0 0.01s),
    and the same lines are returned in RV(progress) in completion order (shown with
    C(-v) or a C(debug) task).
"""

EXAMPLES = r"""
- name: Uptime of every host running the api service
  coral.mesh.coral_exec:
    colony_address: 127.0.0.1:9443
    colony_ca_file: /var/lib/coral/colony/ca.crt
    colony_token_file: /var/lib/coral/colony/admin.token
    service: api
    command: uptime
  vars:
    ansible_python_interpreter: /opt/coral/venv/bin/python

- name: Disk usage on all agents, tolerate failures
  coral.mesh.coral_exec:
    all: true
    argv: [df, -h, /]
    allow_failures: true
  register: disk

- name: A shell pipeline on the services labelled env=staging
  coral.mesh.coral_exec:
    selector:
      env: staging
    command: "ps aux | wc -l"
    shell: true
    timeout: 10

- name: A production command that needs approval; fails with the id to approve
  coral.mesh.coral_exec:
    service: pay
    command: systemctl reload pay
  register: pay_reload
  ignore_errors: true

- name: Once another identity ran `coral approve ID`, redeem it
  coral.mesh.coral_exec:
    service: pay
    command: systemctl reload pay
    approval_id: "{{ pay_reload.approval_id }}"
  when: pay_reload.error_kind | default('') == 'ApprovalPending'

- name: Show which targets would run the command, without running it
  coral.mesh.coral_exec:
    agent: web-01
    command: systemctl restart nginx
  check_mode: true
"""

RETURN = r"""
results:
  description: One entry per target, in agent order. Empty in check mode.
  returned: always
  type: list
  elements: dict
  contains:
    agent:
      description: Id of the agent that ran the command.
      type: str
      sample: web-01
    service:
      description: The service the target was chosen by (empty when targeted by agent or all).
      type: str
      sample: api
    node:
      description: Node (host) name the agent reported.
      type: str
    namespace:
      description: Kubernetes namespace of the target, empty on hosts.
      type: str
    pod:
      description: Pod of the target, empty on hosts.
      type: str
    container:
      description: Container of the target, empty on hosts.
      type: str
    rc:
      description: Exit code of the command (128+N when killed by signal N).
      type: int
      sample: 0
    stdout:
      description: Standard output (UTF-8, undecodable bytes replaced), up to the output cap.
      type: str
    stderr:
      description: Standard error, up to the output cap.
      type: str
    stdout_lines:
      description: RV(results[].stdout) split into lines.
      type: list
      elements: str
    stderr_lines:
      description: RV(results[].stderr) split into lines.
      type: list
      elements: str
    duration:
      description: Seconds the command ran.
      type: float
      sample: 0.012
    truncated:
      description: Whether output was cut at O(max_output) (the task warns when any was).
      type: bool
    timed_out:
      description: Whether the command was killed at O(timeout).
      type: bool
    error:
      description: Why the command could not run on this target (empty when it ran).
      type: str
    status:
      description: C(ok) when the command ran and exited 0, otherwise why not (for example C(failed)).
      type: str
      sample: ok
    audit_id:
      description: Id of this target's C(started) audit record in the colony.
      type: int
    finished_audit_id:
      description: Id of this target's C(finished) audit record (0 when it could not be written).
      type: int
targets:
  description: The targets the colony resolved (in check mode, the ones that would run).
  returned: always
  type: list
  elements: dict
  sample: [{agent: web-01, service: api, node: web-01, namespace: "", pod: "", container: ""}]
audit_ids:
  description: Ids of the C(started) audit records of this operation, one per target (empty in check mode).
  returned: always
  type: list
  elements: int
  sample: [41, 42]
finished_audit_ids:
  description: Ids of the C(finished) audit records of this operation (empty in check mode).
  returned: always
  type: list
  elements: int
  sample: [43, 44]
operation_id:
  description:
    - Id the colony gave this fan-out operation (empty in check mode).
    - M(coral.mesh.coral_audit_info) with O(coral.mesh.coral_audit_info#module:op_id) set to
      it returns every audit record of the operation.
  returned: always
  type: str
truncated_targets:
  description: Number of targets whose output was cut at O(max_output).
  returned: always
  type: int
  sample: 0
approval_id:
  description: Id of the pending approval when the colony holds the request (RV(error_kind=ApprovalPending)).
  returned: when the request waits for approval
  type: str
argv:
  description: The argument vector that was (or would be) sent.
  returned: always
  type: list
  elements: str
  sample: [uptime]
failed_targets:
  description: Number of targets that failed.
  returned: always
  type: int
  sample: 0
progress:
  description: One line per target in the order targets finished (also written to the system log as they finish).
  returned: always
  type: list
  elements: str
  sample: ["[1/2] web-01/api: ok rc=0 0.012s", "[2/2] web-02/api: failed rc=1 0.020s"]
error_kind:
  description:
    - Kind of colony error when the colony refused the request (for example C(NoTargets),
      C(Unreachable), C(PermissionDenied)).
    - C(ApprovalPending) when the colony holds the request for approval; RV(approval_id) names it.
  returned: failure
  type: str
  sample: NoTargets
"""

import gc
import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.coral.mesh.plugins.module_utils import coral


def argspec():
    spec = coral.connection_spec()
    spec.update(coral.targeting_spec())
    spec.update(coral.approval_spec())
    spec.update(
        max_output=dict(type="int", default=1 << 20),
        command=dict(type="str"),
        argv=dict(type="list", elements="str"),
        shell=dict(type="bool", default=False),
        timeout=dict(type="float", default=30),
        allow_failures=dict(type="bool", default=False),
        max_concurrency=dict(type="int", default=0),
        stop_on_failure_percentage=dict(type="float", default=0),
    )
    return spec


def command_argv(params):
    """argv from command (shlex-split, or whole for a shell) or from argv."""
    if params.get("argv"):
        return list(params["argv"])
    if params["shell"]:
        return [params["command"]]
    try:
        argv = shlex.split(params["command"])
    except ValueError as exc:
        raise ValueError("cannot split command %r: %s" % (params["command"], exc))
    if not argv:
        raise ValueError("command is empty")
    return argv


def progress_line(row, *, done, total):
    """One human line for a finished target, e.g. `[3/10] web-01/api: ok rc=0 0.01s`."""
    where = row["agent"] + "".join("/" + row[k] for k in ("service", "pod", "container")
                                   if row.get(k))
    line = "[%d/%d] %s: %s rc=%s %.3fs" % (
        done, total, where, row["status"], row["rc"], row["duration"] or 0)
    return line + (" (%s)" % row["error"] if row["error"] else "")


def truncation_warning(rows, max_output):
    """A warning naming the targets whose output was cut ('' when none was)."""
    cut = [row["agent"] + ("/" + row["service"] if row["service"] else "")
           for row in rows if row["truncated"]]
    if not cut:
        return ""
    return ("output of %d target(s) was cut at max_output=%d bytes per stream: %s; raise "
            "max_output (the colony caps it at limits.outputBytes) or write large output "
            "to a file" % (len(cut), max_output, ", ".join(cut)))


def pending_targets(colony, targeting):
    """The targets a request held for approval would run on ([] when that cannot be told)."""
    try:
        return [coral.target_row(t) for t in colony.resolve(targeting)]
    except coral.errors.CoralError:
        return []


def main():
    module = AnsibleModule(
        argument_spec=argspec(),
        mutually_exclusive=[("command", "argv")],
        required_one_of=[("command", "argv")],
        supports_check_mode=True,
    )
    coral.require_coral_lib(module)
    params = module.params
    try:
        argv = command_argv(params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        targeting = coral.targeting(params)
    except coral.errors.CoralError as exc:
        coral.fail_coral(module, exc)
    if params["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds, got %s"
                         % params["timeout"])
    if params["max_output"] < 1:
        module.fail_json(msg="max_output must be a positive number of bytes, got %s"
                         % params["max_output"])
    try:
        approval = coral.approval_kwargs(params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if params["max_concurrency"] < 0:
        module.fail_json(msg="max_concurrency must be 0 (colony default) or more, got %s"
                         % params["max_concurrency"])
    if not 0 <= params["stop_on_failure_percentage"] <= 100:
        module.fail_json(msg="stop_on_failure_percentage must be between 0 and 100, got %s"
                         % params["stop_on_failure_percentage"])
    result = dict(changed=False, results=[], targets=[], audit_ids=[], finished_audit_ids=[],
                  operation_id="", argv=argv, failed_targets=0, truncated_targets=0,
                  progress=[])

    def on_targets(targets):  # the Operate call's own first event: no separate resolve
        result["targets"] = [coral.target_row(t) for t in targets]

    def on_result(raw):
        line = progress_line(coral.result_row(raw), done=len(result["progress"]) + 1,
                             total=len(result["targets"]))
        result["progress"].append(line)
        module.log("coral_exec %s" % line)

    colony = coral.connect(module)
    try:
        if module.check_mode:  # predict what the real run reports
            result["targets"] = [coral.target_row(t) for t in colony.resolve(targeting)]
            result["changed"] = bool(result["targets"])
            result["msg"] = "check mode: would run on %d targets" % len(result["targets"])
            module.exit_json(**result)
        outcome = colony.exec(targeting, argv=argv, shell=params["shell"],
                              timeout=params["timeout"], max_output=params["max_output"],
                              max_concurrency=params["max_concurrency"],
                              stop_on_failure_percentage=params["stop_on_failure_percentage"],
                              on_targets=on_targets, on_result=on_result, **approval)
    except coral.errors.CoralError as exc:
        if isinstance(exc, coral.errors.ApprovalPending):  # held before it resolved: say what
            result["targets"] = pending_targets(colony, targeting)
        coral.fail_coral(module, exc, **result)
    finally:
        colony.close()
    # What exists now lives until the module exits; frozen, it is left out of the
    # collections while the result is built and of the interpreter's last ones at exit
    # (as the coral CLI does: gRPC and protobuf objects, ~25 ms of CPU).
    gc.freeze()
    rows = [coral.result_row(r) for r in outcome.results]
    failed = coral.failed_rows(rows)
    result.update(changed=bool(rows), results=rows, audit_ids=list(outcome.audit_ids),
                  finished_audit_ids=[r["finished_audit_id"] for r in rows
                                      if r["finished_audit_id"]],
                  operation_id=outcome.operation_id, failed_targets=len(failed),
                  truncated_targets=sum(1 for r in rows if r["truncated"]))
    warning = truncation_warning(rows, params["max_output"])
    if warning:
        module.warn(warning)
    if failed and not params["allow_failures"]:
        module.fail_json(msg=coral.failure_message(failed, len(rows)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
