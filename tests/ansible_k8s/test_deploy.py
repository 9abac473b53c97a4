"""Acceptance (issue 5, Ansible deployment): `ansible-playbook deploy-coral.yml` for the
daemonset and webhook modes against the API server fixture: objects created, idempotent
second run, check mode changes nothing, removal with coral_state=absent."""

from __future__ import annotations

import base64

from coral_lib import manifests
from coral_lib.manifests import settings as settings_mod
from coral_lib.webhook import certs
from tests.ansible_k8s.conftest import get, names, run_playbook


def rendered(mode: str) -> list[tuple[str, str, str | None]]:
    """(kind, name, namespace) of every object the mode renders with default settings."""
    tls = certs.generate(service="coral-webhook", namespace="coral-system")
    objs = manifests.render(mode, settings_mod.build({}, tls=tls))
    return [(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objs]


def present(cluster, objects) -> dict[tuple, bool]:
    return {obj: get(cluster, obj[0], obj[1], obj[2]) is not None for obj in objects}


def test_daemonset_mode_check_apply_idempotent_remove(cluster, base_vars):
    """daemonset mode: check mode creates nothing; apply creates every rendered object, the
    colony ConfigMap and a rolled-out DaemonSet; a second run changes nothing; coral_state=absent
    removes all. (Check mode on existing objects: see the webhook test.)
    The kubeconfig comes from K8S_AUTH_KUBECONFIG (kubernetes.core's own environment)."""
    env = {"K8S_AUTH_KUBECONFIG": cluster.kubeconfig_path}
    want = rendered("daemonset") + [("ConfigMap", "coral-colony", "coral-system")]
    ev = {**base_vars, "coral_mode": "daemonset"}

    run = run_playbook("deploy-coral.yml", extra_vars=ev, check=True, env=env)
    assert run.rc == 0, run.explain()
    assert run.changed > 0, run.explain()
    assert not any(present(cluster, want).values()), "check mode created objects"

    run = run_playbook("deploy-coral.yml", extra_vars=ev, env=env)
    assert run.rc == 0, run.explain()
    assert all(present(cluster, want).values()), present(cluster, want)
    ds = get(cluster, "daemonsets", "coral-agent", "coral-system")
    assert ds["status"]["numberReady"] == ds["status"]["desiredNumberScheduled"] == 2
    data = get(cluster, "configmaps", "coral-colony", "coral-system")["data"]
    assert data["address"] == "coral-colony.example:9443"
    assert data["colony-id"] == "colony-test"
    assert "BEGIN CERTIFICATE" in data["ca.crt"]
    assert set(data) == {"address", "colony-id", "ca.crt"}  # issue 10: no colony secret
    assert get(cluster, "secrets", "coral-colony", "coral-system") is None

    run = run_playbook("deploy-coral.yml", extra_vars=ev, env=env)
    assert run.rc == 0 and run.changed == 0, run.explain()

    run = run_playbook("deploy-coral.yml", extra_vars={**ev, "coral_state": "absent"}, env=env)
    assert run.rc == 0, run.explain()
    assert not any(present(cluster, want).values()), present(cluster, want)
    assert "coral-system" not in names(cluster, "namespaces")


def test_webhook_mode_apply_idempotent_check_remove(cluster, base_vars):
    """webhook mode: apply creates every rendered object, the MutatingWebhookConfiguration
    trusts the CA of the TLS Secret, the labelled namespace gets the colony ConfigMap; a
    second run changes nothing (the certificate is read back from the cluster); a check run
    with failure_policy=Fail reports the change and leaves it; removal removes all, the
    colony ConfigMap and the namespace label. Kubeconfig and context given as role options."""
    want = rendered("webhook")
    ev = {**base_vars, "coral_mode": "webhook", "coral_k8s_kubeconfig": cluster.kubeconfig_path,
          "coral_k8s_context": "fixture", "coral_webhook_inject_namespaces": ["shop"]}

    run = run_playbook("deploy-coral.yml", extra_vars=ev)
    assert run.rc == 0, run.explain()
    assert all(present(cluster, want).values()), present(cluster, want)
    mwc = get(cluster, "mutatingwebhookconfigurations", "coral-webhook")
    tls = get(cluster, "secrets", "coral-webhook-tls", "coral-system")
    assert {w["clientConfig"]["caBundle"] for w in mwc["webhooks"]} == {tls["data"]["ca.crt"]}
    assert [w["failurePolicy"] for w in mwc["webhooks"]] == ["Ignore", "Ignore"]
    assert get(cluster, "namespaces", "shop")["metadata"]["labels"]["coral.io/inject"] == "true"
    assert get(cluster, "configmaps", "coral-colony", "shop") is not None
    assert get(cluster, "secrets", "coral-colony", "shop") is None
    assert base64.b64decode(tls["data"]["tls.key"]).decode() not in run.output
    deploy = get(cluster, "deployments", "coral-webhook", "coral-system")
    assert deploy["status"]["readyReplicas"] == 2

    run = run_playbook("deploy-coral.yml", extra_vars=ev)
    assert run.rc == 0 and run.changed == 0, run.explain()
    assert get(cluster, "secrets", "coral-webhook-tls", "coral-system")["data"] == tls["data"]

    run = run_playbook("deploy-coral.yml", check=True,
                       extra_vars={**ev, "coral_webhook_failure_policy": "Fail"})
    assert run.rc == 0 and run.changed > 0, run.explain()
    mwc = get(cluster, "mutatingwebhookconfigurations", "coral-webhook")
    assert [w["failurePolicy"] for w in mwc["webhooks"]] == ["Ignore", "Ignore"]

    run = run_playbook("deploy-coral.yml", extra_vars={**ev, "coral_state": "absent"})
    assert run.rc == 0, run.explain()
    assert not any(present(cluster, want).values()), present(cluster, want)
    assert get(cluster, "configmaps", "coral-colony", "shop") is None
    assert "coral.io/inject" not in get(cluster, "namespaces", "shop")["metadata"]["labels"]


def test_removed_colony_secret_variables_fail_clearly(cluster, base_vars):
    """Issue 10: the shared colony secret is no longer distributed; a playbook still
    passing it fails before touching the cluster, naming the variable and why."""
    ev = {**base_vars, "coral_mode": "webhook", "coral_k8s_kubeconfig": cluster.kubeconfig_path,
          "coral_k8s_colony_secret": "s3cr3t-value"}
    run = run_playbook("deploy-coral.yml", extra_vars=ev)
    assert run.rc != 0
    assert "coral_k8s_colony_secret: removed" in run.output, run.explain()
    assert "s3cr3t-value" not in run.output
    assert "coral-system" not in names(cluster, "namespaces")
