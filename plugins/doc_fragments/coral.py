# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

# The option groups every coral module shares, documented once. The matching argument
# specs live in plugins/module_utils/coral.py; validate-modules checks they agree.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection to the colony (the default fragment).
    DOCUMENTATION = r"""
options:
  colony_address:
    description:
      - Address of the colony's gRPC endpoint, as C(host:port).
      - Can also be set with the E(CORAL_COLONY_ADDRESS) environment variable.
      - When neither is set, C(127.0.0.1:9443) (the local colony).
    type: str
  colony_ca_file:
    description:
      - CA certificate the colony's TLS certificate is checked against.
      - Can also be set with the E(CORAL_CA_FILE) environment variable.
      - When not set, the local colony's C(ca.crt) in its data directory is used
        (E(CORAL_COLONY_DATA_DIR), default C(/var/lib/coral/colony) as root, else C(~/.coral/colony)).
    type: path
  colony_token:
    description:
      - Operator token that identifies the caller to the colony (RBAC and audit use it).
      - Can also be set with the E(CORAL_TOKEN) environment variable.
      - Takes precedence over O(colony_token_file).
    type: str
  colony_token_file:
    description:
      - File holding the operator token.
      - Can also be set with the E(CORAL_TOKEN_FILE) environment variable.
      - When neither O(colony_token) nor this is set, the local colony's C(admin.token) in
        its data directory is used.
    type: path
  colony_client_cert:
    description:
      - PEM client certificate issued by the colony CA; the colony takes the caller's
        identity from it (its common name). Use it with O(colony_client_key) and the
        colony's mutual-TLS address (C(coral colony start --mtls-listen)).
      - Can also be set with the E(CORAL_CLIENT_CERT) environment variable.
      - With a certificate and no token given, no token file is read.
    type: path
    aliases: [client_cert]
  colony_client_key:
    description:
      - Private key of O(colony_client_cert).
      - Can also be set with the E(CORAL_CLIENT_KEY) environment variable.
    type: path
    aliases: [client_key]
  colony_tls_server_name:
    description:
      - Name the colony's TLS certificate must carry, when it differs from the host in
        O(colony_address) (for example connecting through an IP address or a tunnel).
      - Can also be set with the E(CORAL_TLS_SERVER_NAME) environment variable.
    type: str
  colony_connect_timeout:
    description:
      - Seconds to wait for the TLS connection to the colony before failing with
        C(Unreachable).
      - Can also be set with the E(CORAL_CONNECT_TIMEOUT) environment variable.
      - When neither is set, 10 seconds.
    type: float
requirements:
  - coral-lib (the Python library of this collection) in the Python that runs the module.
    Point C(ansible_python_interpreter) at the virtualenv the C(coral.mesh.colony) or
    C(coral.mesh.agent_host) role created, for example C(/opt/coral/venv/bin/python).
notes:
  - The module runs where Ansible runs it (usually C(localhost) or a jump host) and
    talks to the colony over TLS; it does not need to run on the targets.
"""

    # The colony connection of the non-module plugins (inventory, connection): the same
    # options read from CORAL_* variables by Ansible's plugin configuration. The
    # connection plugin adds its ansible_coral_* host variables to each.
    PLUGIN_CONNECTION = r"""
options:
  colony_address:
    description:
      - Address of the colony's gRPC endpoint, as C(host:port); C(127.0.0.1:9443) when
        not set.
    type: str
    env:
      - name: CORAL_COLONY_ADDRESS
  colony_ca_file:
    description:
      - CA certificate the colony's TLS certificate is checked against.
      - When not set, the local colony's C(ca.crt) in its data directory
        (E(CORAL_COLONY_DATA_DIR), default C(/var/lib/coral/colony) as root, else C(~/.coral/colony)).
    type: path
    env:
      - name: CORAL_CA_FILE
  colony_token:
    description:
      - Operator token that identifies the caller to the colony (the C(read) verb).
      - Takes precedence over O(colony_token_file).
    type: str
    env:
      - name: CORAL_TOKEN
  colony_token_file:
    description:
      - File holding the operator token; default the local colony's C(admin.token).
    type: path
    env:
      - name: CORAL_TOKEN_FILE
  colony_client_cert:
    description:
      - PEM client certificate from the colony CA (identity = its common name), for the
        colony's mutual-TLS address; with it and no token given, no token file is read.
    type: str  # not path: an AWX credential without a certificate sets the variable empty
    env:
      - name: CORAL_CLIENT_CERT
  colony_client_key:
    description: Private key of O(colony_client_cert).
    type: str  # not path: an AWX credential without a certificate sets the variable empty
    env:
      - name: CORAL_CLIENT_KEY
  colony_tls_server_name:
    description:
      - Name the colony's TLS certificate must carry, when it differs from the host in
        O(colony_address).
    type: str
    env:
      - name: CORAL_TLS_SERVER_NAME
  colony_connect_timeout:
    description: Seconds to wait for the TLS connection to the colony; 10 when not set.
    type: float
    env:
      - name: CORAL_CONNECT_TIMEOUT
"""

    # Which agents and services an operation goes to: what the colony accepts (the same
    # rule as `coral exec`'s flags, coral_lib.operator.targeting).
    TARGETING = r"""
options:
  service:
    description:
      - Run on every agent that reports a service of this name.
      - At least one of O(service), O(agent), O(selector), O(pod), O(namespace), O(node) or
        O(all=true) is required; give several to narrow (for example O(service) and O(node)).
    type: str
  agent:
    description:
      - Run on the agent with this id.
    type: str
  selector:
    description:
      - Run on every service whose labels match all of these C(key=value) pairs, given as a dictionary.
    type: dict
  all:
    description:
      - Run on every registered agent; on a DaemonSet agent, in every running pod it sees.
    type: bool
    default: false
  pod:
    description:
      - Run in this Kubernetes pod (with O(namespace) when the name is not unique), with or
        without a registered service when a DaemonSet agent sees it.
    type: str
  namespace:
    description:
      - Only targets in this Kubernetes namespace (narrows the other choices); alone, every
        service and every pod a DaemonSet agent sees in it.
    type: str
  container:
    description:
      - Run in this container of the selected pods (default the service's container).
    type: str
  node:
    description:
      - Only agents and services on this node.
    type: str
"""

    # Operations the colony may hold for approval (policy rules with requireApproval).
    APPROVAL = r"""
options:
  approval_id:
    description:
      - Id of an approved request to redeem, as returned in RV(approval_id) by an earlier
        run that the colony held for approval (another identity approves it with
        C(coral approve ID)).
    type: str
    default: ''
  wait_for_approval:
    description:
      - When the colony holds the request for approval, wait (up to O(approval_timeout))
        until another identity approves or denies it.
      - When false (the default) the task fails at once with RV(error_kind=ApprovalPending)
        and the id in RV(approval_id); run it again with O(approval_id) once approved.
    type: bool
    default: false
  approval_timeout:
    description:
      - Seconds to wait for a decision when O(wait_for_approval=true); then the task fails
        with RV(error_kind=ApprovalPending) and the id.
    type: float
    default: 600
"""
