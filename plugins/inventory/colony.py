# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: colony
short_description: Hosts from a Coral colony's registry (services, pods or agents)
version_added: 0.1.0
author:
  - Coral maintainers (@coral-maintainers)
description:
  - Asks a Coral colony for its agents and services and makes one inventory host per
    service, per pod or per agent (O(host_per)).
  - Every host gets C(coral_*) variables (agent, node, namespace, pod, container,
    provenance, runtime mode, labels, and C(coral_health), each service's latest health
    probe by its agent keyed C(name:port)) and, with O(set_connection=true), the variables the
    P(coral.mesh.coral#connection) connection plugin needs, so ordinary tasks run inside the pod's
    container (or on the host) through the agent, audited by the colony.
  - Groups are made by namespace (C(namespace_<ns>)), node (C(node_<node>)), provenance
    (C(provenance_<p>)), runtime mode (C(runtime_<mode>)) and the label keys in
    O(label_groups) (C(label_<key>_<value>)); O(keyed_groups), O(groups) and O(compose)
    add more.
  - The inventory source is a YAML file whose name ends in C(colony.yml) or C(colony.yaml)
    that sets O(plugin) to C(coral.mesh.colony).
  - The colony token is never put into host variables or the cache. A token written
    inline in the source (O(colony_token)) therefore reads the inventory only; with
    O(set_connection=true) the plugin warns that the hosts' connections need E(CORAL_TOKEN)
    or a token file instead.
  - Names Ansible reserves (C(localhost), C(127.0.0.1), C(::1), C(all), C(ungrouped)) are
    never host names, so a play on C(localhost) keeps running on the controller; an
    agent whose id is one of them becomes host C(coral-<id>) (its
    C(ansible_coral_agent) is still the id).
extends_documentation_fragment:
  - coral.mesh.coral.plugin_connection
  - constructed
  - inventory_cache
requirements:
  - coral-lib (the Python library of this collection) in the Python that runs Ansible.
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    type: str
    choices: [coral.mesh.colony]
  host_per:
    description:
      - C(service) makes one host per service (named C(<service>.<pod>.<namespace>) in
        pods, C(<service>.<agent>) on hosts; C(-<port>) is added when names repeat).
      - C(pod) makes one host per pod (C(<pod>.<namespace>)); services outside pods give
        one host per agent.
      - C(agent) makes one host per agent (its id).
    type: str
    choices: [service, pod, agent]
    default: pod
  namespaces:
    description: Only services in these Kubernetes namespaces.
    type: list
    elements: str
    default: []
  services:
    description: Only services with these names.
    type: list
    elements: str
    default: []
  agents:
    description: Only these agents (ids).
    type: list
    elements: str
    default: []
  selector:
    description: Only services whose labels match all of these C(key=value) pairs.
    type: dict
    default: {}
  provenance:
    description: Only services with one of these provenances.
    type: list
    elements: str
    choices: [unknown, explicit, discovered, overridden]
    default: []
  label_groups:
    description: Label keys to group by, as C(label_<key>_<value>).
    type: list
    elements: str
    default: []
  set_connection:
    description:
      - Set C(ansible_connection=coral.mesh.coral) and its C(ansible_coral_*) target and
        colony variables on every host.
    type: bool
    default: true
"""

EXAMPLES = r"""
# coral.colony.yml -- one host per pod of namespace payments, grouped by env label
plugin: coral.mesh.colony
colony_address: colony.example.org:9443
colony_ca_file: /etc/coral/ca.crt
host_per: pod
namespaces: [payments]
label_groups: [env]
keyed_groups:
  - key: coral_runtime
    prefix: mode
compose:
  is_sidecar: coral_runtime == 'k8s_sidecar'
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/coral-inventory
cache_timeout: 300

# then:  ansible-playbook -i coral.colony.yml site.yml --limit namespace_payments
"""

import re

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

try:
    from coral_lib import errors
    from coral_lib.operator import connect as operator_connect
except ImportError:
    errors = operator_connect = None

# host variable -> key of the host record (the connection plugin reads these)
CONNECTION_VARS = (("ansible_coral_agent", "agent"), ("ansible_coral_namespace", "namespace"),
                   ("ansible_coral_pod", "pod"), ("ansible_coral_container", "container"))


# Names Ansible gives a meaning of its own (implicit localhost, built-in groups).
RESERVED_NAMES = frozenset(("localhost", "127.0.0.1", "::1", "all", "ungrouped"))


def inventory_name(name, taken=()):
    """`name`, or `coral-<name>` when Ansible reserves it (again if that is taken)."""
    while name.lower() in RESERVED_NAMES or name in taken:
        name = "coral-%s" % name
    return name


def token_warning(*, inline_token, token_file, set_connection):
    """The warning for an inline token the hosts' connections cannot use ('' if none)."""
    if not (inline_token and set_connection) or token_file:
        return ""
    return ("coral.mesh.colony: colony_token in the inventory source reads the inventory only; "
            "it is never written into host variables, so tasks on these hosts (connection "
            "coral.mesh.coral) authenticate with CORAL_TOKEN or a token file "
            "(colony_token_file / CORAL_TOKEN_FILE), else the local colony's admin.token")


def _group(prefix, value):
    return "%s_%s" % (prefix, re.sub(r"[^A-Za-z0-9_]", "_", str(value)))


def _wanted(svc, *, options):
    """Whether one service record passes the inventory's filters."""
    checks = (("namespaces", svc.get("namespace", "")), ("services", svc["component_name"]),
              ("agents", svc["agent"]), ("provenance", svc["provenance"]))
    return all(not options.get(key) or value in options[key] for key, value in checks)


def _wanted_agent(agent, *, options):
    return not options.get("agents") or agent["agent_id"] in options["agents"]


def _service_host(svc, agent):
    return dict(
        agent=svc["agent"], node=svc.get("node_name") or agent.get("node_name", ""),
        namespace=svc.get("namespace", ""), pod=svc.get("pod_name", ""),
        container=svc.get("container_name", ""), service=svc["component_name"],
        port=svc.get("port", 0), provenance=[svc["provenance"]],
        runtime=agent.get("runtime_mode", "unknown"), labels=dict(svc.get("labels") or {}),
        services=[svc["component_name"]], containers=[svc.get("container_name", "")],
        health=_health(svc))


def _health(svc):
    """{"name:port": {state, last_check, last_error}} of one service (agent.mode active)."""
    return {"%s:%s" % (svc["component_name"], svc.get("port", 0)):
            dict(svc.get("health") or {"state": "unchecked"})}


def _agent_host(agent):
    runtime = agent.get("runtime") or {}
    return dict(agent=agent["agent_id"], node=agent.get("node_name", ""),
                namespace=runtime.get("pod_namespace", ""), pod=runtime.get("pod_name", ""),
                container="", service="", port=0, provenance=[],
                runtime=agent.get("runtime_mode", "unknown"),
                labels=dict(agent.get("labels") or {}), services=[], containers=[], health={})


def _merge(host, svc):
    """Fold one more service of the same pod/agent into its host record."""
    for key, value in (("provenance", svc["provenance"]), ("services", svc["component_name"]),
                       ("containers", svc.get("container_name", ""))):
        if value and value not in host[key]:
            host[key].append(value)
    for key, value in (svc.get("labels") or {}).items():
        host["labels"].setdefault(key, value)
    host["health"].update(_health(svc))


def _service_name(svc):
    if svc.get("pod_name"):
        return "%s.%s.%s" % (svc["component_name"], svc["pod_name"], svc.get("namespace", ""))
    return "%s.%s" % (svc["component_name"], svc["agent"])


def build_hosts(agents, services, *, host_per, options):
    """{host name: record} from the colony's agents and services (a pure function)."""
    by_id = dict((a["agent_id"], a) for a in agents)
    services = [s for s in services if _wanted(s, options=options)]
    services.sort(key=lambda s: (s["agent"], s.get("namespace", ""), s.get("pod_name", ""),
                                 s.get("container_name", ""), s["component_name"], s["port"]))
    hosts = {}
    if host_per == "service":
        names = [_service_name(s) for s in services]
        for svc, name in zip(services, names):
            if names.count(name) > 1:
                name = "%s-%s" % (name, svc["port"])
            hosts[name] = _service_host(svc, by_id.get(svc["agent"], {}))
        return _without_reserved(hosts)
    for svc in services:
        agent = by_id.get(svc["agent"], {})
        pod = host_per == "pod" and svc.get("pod_name")
        name = "%s.%s" % (svc["pod_name"], svc.get("namespace", "")) if pod else svc["agent"]
        if name not in hosts:
            hosts[name] = _agent_host(agent) if agent else _service_host(svc, agent)
            if pod:
                hosts[name].update(namespace=svc.get("namespace", ""), pod=svc["pod_name"])
        _merge(hosts[name], svc)
    filtered = any(options.get(k) for k in ("namespaces", "services", "selector", "provenance"))
    if host_per == "agent" and not filtered:  # agents without services are hosts too
        for agent in agents:
            if agent["agent_id"] not in hosts and _wanted_agent(agent, options=options):
                hosts[agent["agent_id"]] = _agent_host(agent)
    for host in hosts.values():
        host["container"] = host["container"] or (sorted(host["containers"]) or [""])[0]
    return _without_reserved(hosts)


def _without_reserved(hosts):
    out = {}
    for name in sorted(hosts):
        out[inventory_name(name, taken=hosts.keys() - {name} | out.keys())] = hosts[name]
    return out


def host_groups(host, *, label_keys):
    """The built-in groups one host belongs to."""
    groups = [_group("runtime", host["runtime"])]
    for prefix in ("namespace", "node"):
        if host[prefix]:
            groups.append(_group(prefix, host[prefix]))
    groups.extend(_group("provenance", p) for p in host["provenance"])
    groups.extend(_group("label_%s" % key, host["labels"][key])
                  for key in label_keys if key in host["labels"])
    return groups


def host_vars(host, *, connection):
    """coral_* facts of a host, plus the connection plugin's variables when asked."""
    out = dict(("coral_%s" % key, value) for key, value in host.items())
    out["coral_provenance"] = host["provenance"][0] if len(host["provenance"]) == 1 else \
        list(host["provenance"])
    if connection:
        out["ansible_connection"] = "coral.mesh.coral"
        out.update((var, host[key]) for var, key in CONNECTION_VARS if host[key])
        out.update(("ansible_coral_%s" % key, value) for key, value in connection.items()
                   if value)
    return out


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "coral.mesh.colony"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(
            ("colony.yml", "colony.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        source = self._read_config_data(path) or {}
        if operator_connect is None:
            raise AnsibleParserError(
                "coral.mesh.colony needs coral-lib in the Python that runs Ansible")
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        data = None
        if use_cache:
            data = self._cache.get(cache_key)
            update_cache = data is None
        if data is None:
            data = self._fetch()
        if update_cache:
            self._cache[cache_key] = data
        self._populate(data)
        warning = token_warning(inline_token=source.get("colony_token"),
                                token_file=self.get_option("colony_token_file")
                                or self.get_option("colony_client_cert"),
                                set_connection=self.get_option("set_connection"))
        if warning:
            self.display.warning(warning)

    def _fetch(self):
        """Agents and services from the colony (plain dicts, safe to cache)."""
        from ansible_collections.coral.mesh.plugins.module_utils import coral as coral_utils
        try:
            with operator_connect.connect(**coral_utils.connect_kwargs(self.get_option)) as colony:
                selector = dict((str(k), str(v)) for k, v in self.get_option("selector").items())
                return dict(agents=colony.list_agents(),
                            services=colony.list_services(labels=selector or None))
        except errors.CoralError as exc:
            raise AnsibleParserError("coral.mesh.colony: %s" % exc)

    def _populate(self, data):
        options = dict((key, self.get_option(key)) for key in
                       ("namespaces", "services", "agents", "provenance", "selector"))
        hosts = build_hosts(data["agents"], data["services"],
                            host_per=self.get_option("host_per"), options=options)
        connection = None
        if self.get_option("set_connection"):
            connection = dict((key, self.get_option(key)) for key in (
                "colony_address", "colony_ca_file", "colony_token_file", "colony_client_cert",
                "colony_client_key", "colony_tls_server_name", "colony_connect_timeout"))
        strict = self.get_option("strict")
        for name in sorted(hosts):
            host = hosts[name]
            self.inventory.add_host(name)
            for group in host_groups(host, label_keys=self.get_option("label_groups")):
                self.inventory.add_group(group)
                self.inventory.add_child(group, name)
            variables = host_vars(host, connection=connection)
            for key, value in variables.items():
                self.inventory.set_variable(name, key, value)
            self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, name,
                                              strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name,
                                           strict=strict)
