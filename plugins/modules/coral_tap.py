#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: coral_tap
short_description: Capture packets on Coral targets into pcap files on the controller
version_added: 0.1.0
author:
  - Coral maintainers (@coral-maintainers)
description:
  - Asks the colony to capture packets in each selected target's network namespace (the
    same call as C(coral tap)); the agents stream the packets back and the module writes
    one pcap file per target where the module runs (usually the controller).
  - The colony checks the C(tap) verb, may hold the request for approval, and audits it.
    Observe-only agents capture headers only.
  - The limits O(duration), O(max_packets) and O(max_bytes) always apply.
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
    details: Resolves the targets and returns the paths that would be written.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  filter:
    description: Capture filter in tcpdump syntax, for example C(tcp port 80).
    type: str
    default: ''
  duration:
    description: Seconds to capture.
    type: float
    default: 10
  max_packets:
    description: Stop after this many packets per target.
    type: int
    default: 1000
  max_bytes:
    description: Stop after this many captured bytes per target.
    type: int
    default: 10485760
  headers_only:
    description: Keep only the first 128 bytes of each packet.
    type: bool
    default: false
  dest:
    description:
      - Path of the pcap file. With several targets, one file per target named
        C(<dest stem>-<agent>[-<pod>[-<container>]].pcap).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Ten seconds of HTTP traffic of the checkout service
  coral.mesh.coral_tap:
    service: checkout
    filter: tcp port 8080
    duration: 10
    dest: /tmp/checkout.pcap
  register: tap

- name: Show packet counts
  ansible.builtin.debug:
    msg: "{{ tap.captures | map(attribute='packets') | list }}"
"""

RETURN = r"""
captures:
  description: One entry per target.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: Target key, C(<agent>[-<pod>[-<container>]]).
      type: str
    agent:
      description: Agent that captured.
      type: str
    pod:
      description: Pod captured in (empty on hosts).
      type: str
    path:
      description: The pcap file written (empty when the capture failed).
      type: str
    packets:
      description: Packets written.
      type: int
    bytes:
      description: Captured bytes.
      type: int
    dropped:
      description: Packets the kernel or the limits dropped.
      type: int
    reason:
      description: Why the capture ended (for example C(duration), C(max_packets)).
      type: str
    error:
      description: Why the capture failed on this target (empty when it worked).
      type: str
approval_id:
  description: Id of the pending approval when the colony holds the request.
  returned: when the request waits for approval
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
    spec.update(coral.targeting_spec())
    spec.update(
        filter=dict(type="str", default=""),
        duration=dict(type="float", default=10),
        max_packets=dict(type="int", default=1000),
        max_bytes=dict(type="int", default=10485760),
        headers_only=dict(type="bool", default=False),
        dest=dict(type="path", required=True),
    )
    spec.update(coral.approval_spec())
    return spec


def main():
    module = AnsibleModule(argument_spec=argspec(), supports_check_mode=True)
    coral.require_coral_lib(module)
    from coral_lib.operator import capture  # the loop `coral tap` runs too
    params = module.params
    try:
        targeting = coral.targeting(params)
    except coral.errors.CoralError as exc:
        coral.fail_coral(module, exc)
    if params["duration"] <= 0 or params["max_packets"] <= 0 or params["max_bytes"] <= 0:
        module.fail_json(msg="duration, max_packets and max_bytes must be positive")
    try:
        approval = coral.approval_kwargs(params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=False, captures=[])
    colony = coral.connect(module)
    try:
        if module.check_mode:
            keys = [coral.client.tap_key(t) for t in colony.resolve(targeting)]
            paths = capture.output_paths(params["dest"], keys)
            result["captures"] = [dict(target=k, path=paths[k]) for k in keys]
            module.exit_json(**result)
        events = colony.tap(
            targeting, filter_expr=params["filter"], duration=params["duration"],
            max_packets=params["max_packets"], max_bytes=params["max_bytes"],
            headers_only=params["headers_only"], **approval)
        captures = [c.as_dict() for c in capture.tap_to_files(events, params["dest"])]
    except coral.errors.CoralError as exc:
        coral.fail_coral(module, exc, **result)
    finally:
        colony.close()
    failed = [c for c in captures if c["error"] or not c["path"]]
    result.update(changed=any(c["path"] for c in captures), captures=captures)
    if failed:
        module.fail_json(msg="%d of %d captures failed: %s" % (
            len(failed), len(captures), "; ".join(
                "%s: %s" % (c["target"], c["error"] or "no data") for c in failed)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
