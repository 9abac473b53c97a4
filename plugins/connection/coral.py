# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: coral
short_description: Run tasks inside a pod's container or on a host through a Coral agent
version_added: 0.1.0
author:
  - Coral maintainers (@coral-maintainers)
description:
  - Every command Ansible runs on the target (module runs, temp directory handling, file
    transfers) is sent to the colony's C(Operate) call, the same path C(coral exec) and
    M(coral.mesh.coral_exec) use; the colony checks RBAC (verb C(exec)), applies rate
    limits and approvals and writes a C(started) and a C(finished) audit record for each
    command, then the agent runs it inside the chosen container (or on its host).
  - Files are copied in chunks (O(chunk_size)) as the standard input of C(sh -c 'cat >>
    FILE'), so their contents never appear in the audit log (which records the command
    line); fetching reads chunks with C(dd) and C(base64). The target needs C(/bin/sh),
    C(cat), C(base64) and C(dd) (busybox has them) and, for modules, a Python interpreter.
  - The P(coral.mesh.colony#inventory) inventory plugin sets the variables this plugin reads.
  - Privilege escalation (C(become)) is not supported; the agent runs commands as the
    container's (or host agent's) user.
requirements:
  - coral-lib (the Python library of this collection) in the Python that runs Ansible.
extends_documentation_fragment:
  - coral.mesh.coral.plugin_connection
options:
  agent:
    description:
      - Id of the agent that runs the commands. Defaults to the host's address
        (C(ansible_host), else the inventory name).
    type: str
    vars:
      - name: ansible_coral_agent
  namespace:
    description: Kubernetes namespace of the target pod (empty for hosts).
    type: str
    default: ''
    vars:
      - name: ansible_coral_namespace
  pod:
    description: Target pod (empty for hosts and for the agent's own pod).
    type: str
    default: ''
    vars:
      - name: ansible_coral_pod
  container:
    description: Target container inside the pod (empty on hosts).
    type: str
    default: ''
    vars:
      - name: ansible_coral_container
  colony_address:
    vars:
      - name: ansible_coral_colony_address
  colony_ca_file:
    vars:
      - name: ansible_coral_colony_ca_file
  colony_token:
    vars:
      - name: ansible_coral_colony_token
  colony_token_file:
    vars:
      - name: ansible_coral_colony_token_file
  colony_client_cert:
    vars:
      - name: ansible_coral_colony_client_cert
  colony_client_key:
    vars:
      - name: ansible_coral_colony_client_key
  colony_tls_server_name:
    vars:
      - name: ansible_coral_colony_tls_server_name
  colony_connect_timeout:
    vars:
      - name: ansible_coral_colony_connect_timeout
  exec_timeout:
    description: Seconds one command (for example one module run) may take on the target.
    type: float
    default: 600
    vars:
      - name: ansible_coral_exec_timeout
  max_output:
    description:
      - Bytes of standard output and of standard error one command may return (a module's
        JSON result travels in it). Output beyond it fails the task with a catchable error
        (C(rescue), C(ignore_errors)), never an unreachable host.
      - The colony caps it at its C(limits.outputBytes) setting (default 4 MiB).
    type: int
    default: 3145728
    vars:
      - name: ansible_coral_max_output
  approval_id:
    description:
      - Id of an approved request to redeem. The colony binds an approval to one command,
        so this helps a task that sends one command only; for whole tasks set
        O(wait_for_approval=true).
    type: str
    default: ''
    vars:
      - name: ansible_coral_approval_id
  wait_for_approval:
    description:
      - When the colony holds a command for approval, wait (up to O(approval_timeout))
        until another identity approves or denies it (C(coral approve ID)).
      - When false (the default) the task fails at once, catchably, with a message naming
        the approval id.
    type: bool
    default: false
    vars:
      - name: ansible_coral_wait_for_approval
  approval_timeout:
    description: Seconds to wait for an approval when O(wait_for_approval=true).
    type: float
    default: 600
    vars:
      - name: ansible_coral_approval_timeout
  chunk_size:
    description:
      - Bytes of file data per command when copying or fetching files (fetched chunks
        travel base64-encoded in the command's output).
    type: int
    default: 90000
    vars:
      - name: ansible_coral_chunk_size
"""

EXAMPLES = r"""
# inventory (the coral.mesh.colony inventory plugin sets these for you)
# shop-7d9f.payments ansible_connection=coral.mesh.coral ansible_coral_agent=sidecar-shop-7d9f
#   ansible_coral_namespace=payments ansible_coral_pod=shop-7d9f ansible_coral_container=web

- name: Ordinary tasks inside the payments pods, through the colony
  hosts: namespace_payments
  gather_facts: false
  tasks:
    - name: Gather minimal facts
      ansible.builtin.setup:
        gather_subset: [min]

    - name: Read the OS release
      ansible.builtin.command: cat /etc/os-release
      changed_when: false

    - name: Copy a config file in
      ansible.builtin.copy:
        src: app.conf
        dest: /tmp/app.conf
        mode: "0644"
"""

import base64
import os

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

try:
    from coral_lib import errors, files
    from coral_lib.operator import connect as operator_connect
    from coral_lib.operator import targeting as targets
except ImportError:
    errors = files = operator_connect = targets = None

display = Display()

# argv scripts; data and paths travel as positional arguments, never inside the script
# File contents travel as the command's stdin, which the audit log does not record (a
# copied secret must not land in it); only the command line below is audited.
PUT_FIRST = 'umask 077; cat > "$1"'
PUT_MORE = 'cat >> "$1"'
FETCH = 'test -r "$1" || { echo "cannot read $1" >&2; exit 66; }; ' \
        'dd if="$1" bs="$2" skip="$3" count=1 2>/dev/null | base64'
MAX_ARG = 120000  # keeps a fetched chunk's base64 output and a put chunk modest


def chunk_size(requested):
    """Raw bytes per chunk: a multiple of 3 whose base64 stays below MAX_ARG."""
    size = max(3, min(int(requested), MAX_ARG // 4 * 3))
    return size - size % 3


def target_text(targeting):
    parts = [targeting.agent, targeting.namespace, targeting.pod, targeting.container]
    return "/".join(p for p in parts if p)


def output_problem(row, *, what, where, max_output):
    """Why a command's output cannot be used ('' when it can): cut at max_output."""
    if not row["truncated"]:
        return ""
    return ("coral %s on %s: output exceeded ansible_coral_max_output=%d bytes per stream "
            "and was cut; raise it (the colony caps it at limits.outputBytes) or have the "
            "task return less" % (what, where, max_output))


class Connection(ConnectionBase):
    """Commands and file transfers through the colony's audited exec path."""

    transport = "coral.mesh.coral"
    has_pipelining = False  # stdin does not reach every exec backend (CRI ExecSync)
    has_tty = False

    def __init__(self, *args, **kwargs):
        super(Connection, self).__init__(*args, **kwargs)
        self._colony = None
        self._targeting = None

    def _connect(self):
        if self._connected:
            return self
        if operator_connect is None:
            raise AnsibleError("the coral.mesh.coral connection needs coral-lib in the "
                               "Python that runs Ansible")
        from ansible_collections.coral.mesh.plugins.module_utils import coral as coral_utils
        agent = self.get_option("agent") or self._play_context.remote_addr
        try:
            self._targeting = targets.build(
                agent=agent, namespace=self.get_option("namespace"),
                pod=self.get_option("pod"), container=self.get_option("container"))
            self._colony = operator_connect.connect(
                **coral_utils.connect_kwargs(self.get_option))
        except errors.CoralError as exc:
            raise AnsibleConnectionFailure("coral: %s" % exc)
        display.vvv("CORAL CONNECT %s via %s" % (target_text(self._targeting),
                                                 self._colony.address), host=agent)
        self._connected = True
        return self

    def _run(self, argv, *, what, stdin=b""):
        """One audited exec on the single target; (rc, stdout bytes, stderr bytes)."""
        self._connect()
        timeout = float(self.get_option("exec_timeout"))
        max_output = int(self.get_option("max_output"))
        where = target_text(self._targeting)
        try:
            outcome = self._colony.exec(
                self._targeting, argv=argv, timeout=timeout, max_output=max_output,
                max_concurrency=1, stdin=stdin,
                approval_id=self.get_option("approval_id") or "",
                wait_for_approval=bool(self.get_option("wait_for_approval")),
                approval_timeout=float(self.get_option("approval_timeout")))
        except errors.ApprovalPending as exc:
            # the host is reachable: a task failure that rescue/ignore_errors can handle
            raise AnsibleError("coral %s on %s: %s (ApprovalPending, approval_id=%s)" % (
                what, where, exc, exc.approval_id))
        except errors.CoralError as exc:
            raise AnsibleConnectionFailure("coral %s on %s: %s (%s)" % (
                what, where, exc, exc.kind))
        if len(outcome.results) != 1:
            raise AnsibleConnectionFailure(
                "coral: %s resolved to %d targets; set ansible_coral_container (and pod/"
                "namespace) so exactly one is chosen" % (target_text(self._targeting),
                                                         len(outcome.results)))
        row = outcome.results[0]
        display.vvv("CORAL %s audit_id=%s rc=%s status=%s" % (
            what, row["audit_id"], row["rc"], row["status"]), host=self._targeting.agent)
        if row["error"] or row["status"] in ("refused", "skipped"):
            raise AnsibleConnectionFailure("coral %s on %s: %s" % (
                what, target_text(self._targeting), row["error"] or row["status"]))
        problem = output_problem(row, what=what, where=where, max_output=max_output)
        if problem:
            raise AnsibleError(problem)
        if row["timed_out"]:
            raise AnsibleConnectionFailure("coral %s on %s: timed out after %ss" % (
                what, target_text(self._targeting), timeout))
        return row["rc"], to_bytes(row["stdout"]), to_bytes(row["stderr"])

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        if in_data:
            raise AnsibleConnectionFailure("the coral connection does not support pipelining")
        executable = self._play_context.executable or "/bin/sh"
        display.vvv("CORAL EXEC %s" % cmd, host=self._targeting.agent if self._targeting
                    else None)
        return self._run([executable, "-c", cmd], what="exec")

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        display.vvv("CORAL PUT %s TO %s" % (in_path, out_path))
        if not os.path.exists(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound("file or module does not exist: %s" % in_path)
        size = chunk_size(self.get_option("chunk_size"))
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as handle:
            script = PUT_FIRST
            while True:
                data = handle.read(size)
                if not data and script is PUT_MORE:
                    return
                rc, out, err = self._run(["/bin/sh", "-c", script, "coral-put", out_path],
                                         what="put", stdin=data)
                if rc != 0:
                    raise AnsibleError("coral: failed to write %s: %s" % (
                        out_path, to_native(err or out).strip()))
                script = PUT_MORE

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        display.vvv("CORAL FETCH %s TO %s" % (in_path, out_path))
        size = chunk_size(self.get_option("chunk_size"))
        # 0644 as a plain local copy would be; never a half-fetched file on failure
        with files.atomic_open(os.fsdecode(to_bytes(out_path, errors="surrogate_or_strict")),
                               mode=0o644) as handle:
            index = 0
            while True:
                rc, out, err = self._run(["/bin/sh", "-c", FETCH, "coral-fetch", in_path,
                                          str(size), str(index)], what="fetch")
                if rc != 0:
                    raise AnsibleError("coral: failed to read %s: %s" % (
                        in_path, to_native(err or out).strip()))
                data = base64.b64decode(out)
                handle.write(data)
                if len(data) < size:
                    return
                index += 1

    def close(self):
        if self._colony is not None:
            self._colony.close()
            self._colony = None
        self._connected = False
