#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: coral_audit_info
short_description: Read a Coral colony's tamper-evident audit log
version_added: 0.1.0
author:
  - Coral maintainers (@coral-maintainers)
description:
  - Returns audit records (discovery events, operation C(started) and C(finished)
    records, refusals) filtered by kind, requester, agent, operation id and time.
  - With O(verify=true) also asks the colony to check the whole hash chain and returns
    the first bad record, if any.
  - Read-only; needs the C(read) verb in the colony's RBAC policy.
extends_documentation_fragment:
  - coral.mesh.coral
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  action_group:
    support: full
    membership: [coral.mesh.coral]
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  kind:
    description:
      - Only records of this kind, for example C(started), C(finished), C(refused),
        C(discovery).
    type: str
  requester:
    description: Only records of operations requested by this identity.
    type: str
  agent:
    description: Only records about this agent.
    type: str
  op_id:
    description: Only records of this operation id (the prefix given by the colony).
    type: str
  since:
    description: Only records at or after this time (seconds since the epoch).
    type: float
  limit:
    description: At most this many records.
    type: int
    default: 1000
  tail:
    description: The newest O(limit) records instead of the oldest.
    type: bool
    default: false
  verify:
    description: Also verify the hash chain of the whole log.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: The last 50 commands run by the ci identity
  coral.mesh.coral_audit_info:
    kind: started
    requester: ci
    limit: 50
    tail: true
  register: audit

- name: Fail when the audit log was tampered with
  coral.mesh.coral_audit_info:
    kind: none
    limit: 1
    verify: true
  register: audit
  failed_when: not audit.verification.ok
"""

RETURN = r"""
records:
  description: Matching records, oldest first; each has C(id), C(ts), C(kind), C(hash),
    C(prev_hash) and the record's own fields (for example C(requester), C(command),
    C(agent_id), C(op_id), C(status), C(exit_code)).
  returned: always
  type: list
  elements: dict
  sample:
    - {id: 41, kind: started, requester: admin, verb: exec, agent_id: web-01, command: uptime}
verification:
  description: The hash chain check, when O(verify=true).
  returned: when O(verify=true)
  type: dict
  contains:
    ok:
      description: Whether every record is intact and in order.
      type: bool
    checked:
      description: Number of records checked.
      type: int
    first_bad_id:
      description: Id of the first record that fails the check (0 when none).
      type: int
    reason:
      description: Why that record fails.
      type: str
error_kind:
  description: Kind of colony error when the colony refused the request.
  returned: failure
  type: str
  sample: PermissionDenied
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.coral.mesh.plugins.module_utils import coral


def argspec():
    spec = coral.connection_spec()
    spec.update(
        kind=dict(type="str"),
        requester=dict(type="str"),
        agent=dict(type="str"),
        op_id=dict(type="str"),
        since=dict(type="float"),
        limit=dict(type="int", default=1000),
        tail=dict(type="bool", default=False),
        verify=dict(type="bool", default=False),
    )
    return spec


def verification(reply):
    """The colony's answer with proper types (protobuf JSON gives int64 as strings)."""
    return dict(ok=bool(reply.get("ok")), checked=int(reply.get("checked", 0)),
                first_bad_id=int(reply.get("first_bad_id", 0)),
                reason=reply.get("reason", ""))


def main():
    module = AnsibleModule(argument_spec=argspec(), supports_check_mode=True)
    coral.require_coral_lib(module)
    params = module.params
    if params["limit"] <= 0:
        module.fail_json(msg="limit must be a positive number of records, got %s"
                         % params["limit"])
    result = dict(changed=False, records=[])
    colony = coral.connect(module)
    try:
        result["records"] = colony.audit(
            kind=params["kind"], requester=params["requester"], agent=params["agent"],
            op_id=params["op_id"], since=params["since"], limit=params["limit"],
            tail=params["tail"])
        if params["verify"]:
            result["verification"] = verification(colony.verify_audit())
    except coral.errors.CoralError as exc:
        coral.fail_coral(module, exc, **result)
    finally:
        colony.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
