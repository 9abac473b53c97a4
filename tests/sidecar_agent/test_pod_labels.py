"""Issue 16, "Labels": sidecar services carry their pod's labels (the webhook mounts them
with the downward API; coral_lib/webhook/inject.sidecar_volume), so `--selector env=prod`
and RBAC `env` / `podSelector` scopes match sidecar pods -- and a scoped operator cannot
reach a pod whose labels do not match. A real pod (podharness), a real sidecar agent
process, a colony with a policy file; the labels file is written in the downward API's
format (the harness's shortcut: no kubelet writes it here)."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import PolicyColony
from tests.sidecar.conftest import why_not_runnable
from tests.sidecar_agent.conftest import SidecarAgent
from tests.support import coral_procs, kube_identity, podharness

POLICY = """
rules:
  - {name: admins-all, groups: [admins], verbs: ["*"]}
  - {name: prod-by-env, identities: [penny], verbs: [read, exec], scope: {env: [prod]}}
  - name: prod-by-selector
    identities: [sam]
    verbs: [read, exec]
    scope: {podSelector: "env=prod,tier=web"}
  - {name: dev-only, identities: [dora], verbs: [read, exec], scope: {env: [dev]}}
"""


@pytest.fixture
def colony(tmp_path, kubeapi):
    (tmp_path / "policy.yaml").write_text(POLICY)
    kubeconfig = kube_identity.colony_kubeconfig(kubeapi, tmp_path / "colony-kubeconfig")
    colony = PolicyColony(tmp_path / "colony", args=(
        "--policy", str(tmp_path / "policy.yaml"), "--token-review-kubeconfig", kubeconfig))
    for who in ("penny", "sam", "dora"):
        colony.add_token(who)
    colony.start()
    yield colony
    colony.stop()


@pytest.fixture
def labelled_pod(tmp_path, colony, kubeapi):
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    pod = podharness.Pod("shop-prod", "payments").start()
    agent = None
    try:
        pod.add_container("web", ["sh", "-c", "busybox httpd -f -p 8080 & wait"], port=8080,
                          env={"OTEL_SERVICE_NAME": "checkout"})
        labels = tmp_path / "labels"
        labels.write_text('app="checkout"\nenv="prod"\ntier="web"\n')
        agent = SidecarAgent(pod, colony, tmp_path, kubeapi)
        agent.extra_env = {"CORAL_POD_LABELS_FILE": str(labels)}
        agent.start()
        coral_procs.wait_registered(colony, [agent.agent_id])
        yield pod, agent
    finally:
        if agent:
            agent.stop()
        pod.stop()


def _exec(colony, who: str | None, *targeting: str) -> tuple[int, list[dict], str]:
    env = colony.env_for(who) if who else colony.operator_env
    run = coral_procs.coral("exec", "-o", "json", *targeting, "--", "true", env=env)
    results = json.loads(run.stdout)["results"] if run.stdout.strip() else []
    return run.returncode, results, run.stderr


def test_sidecar_services_carry_pod_labels_and_selectors_match(colony, labelled_pod):
    pod, agent = labelled_pod
    with colony.client() as c:
        (svc,) = c.list_services(agent=agent.agent_id)
    assert {k: svc["labels"][k] for k in ("app", "env", "tier")} == {
        "app": "checkout", "env": "prod", "tier": "web"}
    rc, results, err = _exec(colony, None, "--selector", "env=prod")
    assert rc == 0 and [(r["agent"], r["pod"]) for r in results] == [
        (agent.agent_id, "shop-prod")], err


def test_rbac_env_and_pod_selector_scopes_match_sidecar_pods_and_refuse_others(
        colony, labelled_pod):
    pod, agent = labelled_pod
    for who in ("penny", "sam"):  # scope env: [prod]; podSelector env=prod,tier=web
        rc, results, err = _exec(colony, who, "--pod", "shop-prod", "-n", "payments")
        assert rc == 0 and results[0]["status"] == "ok", (who, results, err)
    # the attacker's view: an operator scoped to env=dev names the prod pod directly
    rc, results, err = _exec(colony, "dora", "--pod", "shop-prod", "-n", "payments")
    assert rc != 0 and not any(r.get("status") == "ok" for r in results), (results, err)
    with colony.client() as c:
        refused = [r for r in c.audit(kind="refused") if r.get("requester") == "dora"]
    assert refused and "shop-prod" in json.dumps(refused)


def test_downward_api_labels_file_is_parsed_as_kubelet_writes_it():
    from coral_lib.agent import sidecar
    text = 'app="checkout"\nenv="prod"\nnote="a \\"quoted\\" value"\nbroken\n=x\n'
    assert sidecar.parse_downward_labels(text) == {
        "app": "checkout", "env": "prod", "note": 'a "quoted" value'}
    assert sidecar.pod_labels("/nonexistent/labels") == {}
