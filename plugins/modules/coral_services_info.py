#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: coral_services_info
short_description: List the services and agents registered in a Coral colony
version_added: 0.1.0
author:
  - Coral maintainers (@coral-maintainers)
description:
  - Reads the colony registry; every filter given must match.
  - Each service says where its fields came from (provenance C(explicit), C(discovered)
    or C(overridden)).
  - Read-only; changes nothing.
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
  name:
    description:
      - Only services with this name.
      - Alias O(service), the name M(coral.mesh.coral_exec) uses for the same choice.
    type: str
    aliases: [service]
  labels:
    description:
      - Only services whose labels include all of these C(key=value) pairs, given as a dictionary.
      - Alias O(selector), the name M(coral.mesh.coral_exec) uses for the same choice.
    type: dict
    aliases: [selector]
  provenance:
    description:
      - Only services whose provenance is this.
    type: str
    choices: [explicit, discovered, overridden]
  agent:
    description:
      - Only services reported by this agent.
    type: str
  node:
    description:
      - Only services (and agents) on this node.
    type: str
  limit:
    description:
      - Return at most this many services (the colony's order, agent id then service);
        RV(services_truncated) says whether more matched.
      - C(0) returns every match, fetched page by page.
    type: int
    default: 10000
"""

EXAMPLES = r"""
- name: Every service the colony knows
  coral.mesh.coral_services_info:
    colony_address: 127.0.0.1:9443
    colony_ca_file: /var/lib/coral/colony/ca.crt
    colony_token_file: /var/lib/coral/colony/admin.token
  register: coral
  vars:
    ansible_python_interpreter: /opt/coral/venv/bin/python

- name: Services named api that were discovered (not declared)
  coral.mesh.coral_services_info:
    name: api
    provenance: discovered

- name: Wait until agent web-01 is registered
  coral.mesh.coral_services_info:
    agent: web-01
  register: found
  until: found.agents | selectattr('agent_id', 'equalto', 'web-01') | list | length > 0
  retries: 30
  delay: 2
"""

RETURN = r"""
services:
  description: The matching services, one per agent that reports them.
  returned: always
  type: list
  elements: dict
  contains:
    agent:
      description: Id of the agent that reports the service.
      type: str
      sample: web-01
    component_name:
      description: Service name.
      type: str
      sample: api
    port:
      description: Listening port.
      type: int
      sample: 8080
    health_endpoint:
      description: Health check path, if known.
      type: str
    service_type:
      description: Service type (for example C(http)), if known.
      type: str
    labels:
      description: Service labels.
      type: dict
    provenance:
      description: Where the service's fields came from.
      type: str
      sample: explicit
    node_name:
      description: Node the service runs on.
      type: str
    health:
      description:
        - The service's latest health probe by its agent (C(agent.mode=active)).
        - Its state is C(unchecked) when the agent never probed it.
      type: dict
      contains:
        state:
          description: C(healthy), C(unhealthy), C(unknown) or C(unchecked).
          type: str
        last_check:
          description: When it was last probed (unix seconds); null when never.
          type: float
        last_error:
          description: What the last failed probe saw, for example C(GET /healthz; HTTP 503).
          type: str
  sample:
    - {agent: web-01, component_name: api, port: 8080, provenance: explicit}
services_truncated:
  description: Whether more services matched than O(limit) allowed to return.
  returned: always
  type: bool
  sample: false
agents:
  description: The registered agents (only those on O(node) or equal to O(agent) when given).
  returned: always
  type: list
  elements: dict
  contains:
    agent_id:
      description: Agent id.
      type: str
    status:
      description: Health from heartbeat age, C(healthy), C(degraded) or C(unhealthy).
      type: str
    connected:
      description: Whether the agent holds a live link to the colony.
      type: bool
    node_name:
      description: Node the agent runs on.
      type: str
    runtime_mode:
      description: How the agent runs (for example C(native) on a host).
      type: str
    version:
      description: Agent version.
      type: str
  sample:
    - {agent_id: web-01, status: healthy, connected: true, node_name: web-01, version: 0.1.0}
error_kind:
  description: Kind of colony error when the colony refused the request.
  returned: failure
  type: str
  sample: Unreachable
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.coral.mesh.plugins.module_utils import coral


def argspec():
    spec = coral.connection_spec()
    spec.update(
        name=dict(type="str", aliases=["service"]),
        labels=dict(type="dict", aliases=["selector"]),
        provenance=dict(type="str", choices=["explicit", "discovered", "overridden"]),
        agent=dict(type="str"),
        node=dict(type="str"),
        limit=dict(type="int", default=10000),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argspec(), supports_check_mode=True)
    coral.require_coral_lib(module)
    params = module.params
    labels = dict((str(k), str(v)) for k, v in (params["labels"] or {}).items())
    limit = params["limit"]
    if limit < 0:
        module.fail_json(msg="limit %d: expected 0 (every match) or a positive number" % limit)
    colony = coral.connect(module)
    try:
        services = colony.list_services(
            name=params["name"], labels=labels or None, provenance=params["provenance"],
            agent=params["agent"], node=params["node"], limit=limit + 1 if limit else None)
        agents = colony.list_agents(node=params["node"])
    except coral.errors.CoralError as exc:
        coral.fail_coral(module, exc)
    finally:
        colony.close()
    if params["agent"]:
        agents = [a for a in agents if a.get("agent_id") == params["agent"]]
    truncated = bool(limit) and len(services) > limit
    module.exit_json(changed=False, services=services[:limit] if limit else services,
                     services_truncated=truncated, agents=agents)


if __name__ == "__main__":
    main()
