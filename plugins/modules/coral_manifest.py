#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Coral maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: coral_manifest
short_description: Render the Kubernetes objects of a Coral deployment mode
version_added: 0.1.0
author:
  - Coral maintainers (@coral-maintainers)
description:
  - Renders the objects of one deployment mode (C(daemonset), C(webhook) or C(sidecar))
    as data, with the same renderer as C(coral manifests render).
  - For users who apply the objects with their own tooling (GitOps); the roles
    C(coral.mesh.agent_daemonset) and C(coral.mesh.sidecar_webhook) use it too.
  - Talks to no cluster. With O(dest) it writes the objects as a multi-document YAML file
    and reports C(changed) only when the file's content changes.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Renders and reports whether O(dest) or O(tls_dir) would change; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  mode:
    description:
      - Deployment mode to render.
      - C(daemonset) is one privileged agent per node (set C(observe_only=true) in O(settings) for the
        variant without ptrace, NET_ADMIN or the runtime socket).
      - C(webhook) is the sidecar injection webhook (Deployment, Service,
        MutatingWebhookConfiguration, TLS Secret).
      - C(sidecar) is a pod template for teams that add the sidecar by hand.
      - C(daemonset) and C(webhook) also render the colony's identity for checking agent
        tokens (ServiceAccount C(coral-colony), ClusterRole C(coral-colony-tokenreview) with
        C(create) on C(tokenreviews) only, and its binding). Agents get a projected service
        account token (audience C(coral)) and the colony's address and CA from a ConfigMap;
        no colony secret is rendered.
    type: str
    required: true
    choices: [daemonset, webhook, sidecar]
  settings:
    description:
      - Manifest settings as a dictionary, the keys C(coral manifests render --set) accepts,
        for example C(namespace), C(image), C(observe_only), C(failure_policy),
        C(webhook_replicas), C(cert_mode), C(colony_config_map), C(colony_service_account), C(kubernetes_version).
      - Unknown keys and values of the wrong type fail with a message naming the key.
    type: dict
    default: {}
  tls_dir:
    description:
      - Webhook mode with C(cert_mode=secret) only. Directory holding C(ca.crt), C(tls.crt)
        and C(tls.key); they are generated there (mode 0600) when absent, so later renders
        are identical.
      - When neither this nor O(tls_secret) is given, fresh TLS material is generated on
        every run (the objects then differ from run to run).
    type: path
  tls_secret:
    description:
      - Webhook mode only. The C(data) of an existing C(kubernetes.io/tls) Secret (base64
        values under C(ca.crt), C(tls.crt), C(tls.key)), for example the webhook's Secret read
        back from the cluster with M(kubernetes.core.k8s_info), so a redeploy keeps its
        certificate. Takes precedence over O(tls_dir).
    type: dict
  dest:
    description:
      - Also write the objects to this file as multi-document YAML (mode 0600, it may hold
        the webhook's TLS key).
    type: path
notes:
  - In webhook mode the returned objects contain the TLS Secret with the private key, and
    O(tls_secret) holds it too, so set C(no_log) on the task. O(tls_secret) is deliberately
    not a no_log option, because masking its values would also mask the same base64 CA in
    the C(caBundle) of the returned MutatingWebhookConfiguration.
requirements:
  - coral-lib (the Python library of this collection) in the Python that runs the module.
"""

EXAMPLES = r"""
- name: Render the DaemonSet objects into the GitOps repository
  coral.mesh.coral_manifest:
    mode: daemonset
    settings:
      namespace: coral-system
      image: registry.example.com/coral/agent:0.1.0
    dest: /srv/gitops/coral/daemonset.yaml

- name: Render the webhook with a stable certificate kept next to the manifests
  coral.mesh.coral_manifest:
    mode: webhook
    settings:
      failure_policy: Ignore
    tls_dir: /srv/gitops-secrets/coral-webhook-tls
  register: webhook
  no_log: true

- name: Observe-only DaemonSet, objects only
  coral.mesh.coral_manifest:
    mode: daemonset
    settings:
      observe_only: true
  register: rendered
"""

RETURN = r"""
objects:
  description: The rendered objects, in the order they should be applied.
  returned: success
  type: list
  elements: dict
  sample:
    - {apiVersion: v1, kind: Namespace, metadata: {name: coral-system}}
dest:
  description: The file written (or that would be written in check mode).
  returned: when O(dest) is given
  type: str
tls_generated:
  description: Whether TLS material was generated into O(tls_dir) (or would be, in check mode).
  returned: success
  type: bool
"""

import base64
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from coral_lib import files, manifests
    from coral_lib.manifests import settings as settings_mod
    from coral_lib.operator import manifests as manifests_text
    from coral_lib.webhook import certs
except ImportError:
    manifests = None
    import traceback
    CORAL_IMPORT_ERROR = traceback.format_exc()
else:
    CORAL_IMPORT_ERROR = None

TLS_KEYS = ("ca.crt", "tls.crt", "tls.key")


def argspec():
    return dict(
        mode=dict(type="str", required=True, choices=["daemonset", "webhook", "sidecar"]),
        settings=dict(type="dict", default={}),
        tls_dir=dict(type="path"),
        tls_secret=dict(type="dict", no_log=False),  # see notes: masking breaks caBundle
        dest=dict(type="path"),
    )


def setting_values(raw):
    """The settings dict -> typed values; ValueError names the key and what is accepted."""
    accepted = settings_mod.settable()
    pairs = []
    for key, value in raw.items():
        if key not in accepted:
            raise ValueError(f"settings.{key} is not a setting; expected one of "
                             f"{', '.join(sorted(accepted))}")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        pairs.append(f"{key}={text}")
    try:
        return settings_mod.parse_sets(pairs)
    except settings_mod.ManifestError as exc:
        raise ValueError(str(exc).replace("--set ", "settings: ")) from None


def tls_material(params, values, check_mode):
    """(TLSMaterial or None, generated?) for the webhook's cert_mode=secret."""
    if params["mode"] != "webhook" or values.get("cert_mode", "secret") != "secret":
        return None, False
    if params["tls_secret"]:
        data = params["tls_secret"]
        missing = [key for key in TLS_KEYS if not data.get(key)]
        if missing:
            raise ValueError(f"tls_secret lacks {', '.join(missing)}; expected the data of a "
                             f"kubernetes.io/tls Secret with {', '.join(TLS_KEYS)}")
        pems = [base64.b64decode(data[key]) for key in TLS_KEYS]
        return certs.TLSMaterial(ca_pem=pems[0], cert_pem=pems[1], key_pem=pems[2]), False
    folder = params["tls_dir"]
    absent = folder is None or not all(os.path.exists(os.path.join(folder, k)) for k in TLS_KEYS)
    if folder is not None and absent and check_mode:
        return manifests_text.load_or_generate_tls(None, values), True
    return manifests_text.load_or_generate_tls(folder, values), folder is not None and absent


def write_if_changed(path, text, check_mode):
    """True when the file's content differs (and, outside check mode, it was replaced)."""
    try:
        with open(path) as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    if check_mode:
        return True
    files.write_atomic(path, text, mode=0o600)  # never a half-written manifest
    return True


def main():
    module = AnsibleModule(argument_spec=argspec(), supports_check_mode=True)
    if manifests is None:
        module.fail_json(msg=missing_required_lib("coral-lib"), exception=CORAL_IMPORT_ERROR)
    params = module.params
    try:
        values = setting_values(params["settings"] or {})
        tls, generated = tls_material(params, values, module.check_mode)
        objects = manifests.render(params["mode"], settings_mod.build(values, tls=tls))
    except (ValueError, OSError) as exc:  # ManifestError is a ValueError
        module.fail_json(msg=f"coral_manifest mode={params['mode']}: {exc}")
    result = dict(changed=generated, objects=objects, tls_generated=generated)
    if params["dest"]:
        text = manifests_text.dumps(objects, output="yaml")
        try:
            result["changed"] = write_if_changed(params["dest"], text, module.check_mode) \
                or generated
        except OSError as exc:
            module.fail_json(msg=f"cannot write dest {params['dest']}: {exc}")
        result["dest"] = params["dest"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
