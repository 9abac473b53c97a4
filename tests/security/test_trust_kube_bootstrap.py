"""Issue 10, "Agent impersonation" (Kubernetes half): the shared colony secret used to be
copied into every injected tenant namespace, so anyone able to read a Secret there (or exec
into any injected pod) could authenticate as any agent.

The attacker here is a tenant of an injected namespace. Coral is deployed the way users do
it (`ansible-playbook deploy-coral.yml`, webhook mode) against the API server fixture,
with the colony role's secret file in play (`coral_colony_secret_file`, which the old
roles copied into each namespace); the real webhook server injects the tenant's pods
through the API server. Then the attacker reads everything in the namespace, and tries to
turn pod A's credential into pod B's identity against the colony's real TokenReviewer
(authorized only by the RBAC the deploy applied).

Old code: the role put a Secret `coral-colony` holding the colony secret into the tenant
namespace and every sidecar read it through secretKeyRef, so the first test fails there;
coral_lib.colony.tokenreview did not exist.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid

import pytest
from kubernetes import client, config

from coral_lib.webhook import server as webhook_server
from coral_lib.webhook import settings as inject_settings
from tests.ansible_k8s.conftest import PYTHON, create_namespace, run_playbook
from tests.support.kubeapi import KubeAPIServer

TENANT = "tenant"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kube-bootstrap")
    colony_secret = secrets.token_urlsafe(32)
    (folder / "colony.secret").write_text(colony_secret + "\n")
    (folder / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with KubeAPIServer(folder / "api", nodes=["node-1", "node-2"], context="fixture") as api:
        create_namespace(api, TENANT)
        # what an earlier version left behind: the shared secret in the tenant namespace
        api.store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "coral-colony", "namespace": TENANT},
            "data": {"secret": base64.b64encode(colony_secret.encode()).decode()}})
        run = run_playbook("deploy-coral.yml", extra_vars={
            "ansible_python_interpreter": PYTHON, "coral_mode": "webhook",
            "coral_k8s_kubeconfig": api.kubeconfig_path,
            "coral_webhook_inject_namespaces": [TENANT],
            "coral_k8s_colony_address": "coral-colony.example:9443",
            "coral_k8s_colony_ca_file": str(folder / "ca.crt"),
            "coral_k8s_colony_id": "colony-test",
            # what the colony role hands on in the same play; the old roles copied it
            "coral_colony_secret_file": str(folder / "colony.secret")})
        assert run.rc == 0, run.explain()
        assert colony_secret not in run.output
        # The injector runs with what the deploy put in the cluster: its TLS Secret and
        # settings ConfigMap.
        tls = api.store.get("secrets", "coral-webhook-tls", namespace="coral-system")["data"]
        for key in ("tls.crt", "tls.key"):
            (folder / key).write_bytes(base64.b64decode(tls[key]))
        settings_doc = api.store.get("configmaps", "coral-webhook-settings",
                                     namespace="coral-system")["data"]["settings.json"]
        lookup = webhook_server.KubernetesNamespaceLabels(ttl=0.0, kubeconfig=api.kubeconfig_path)
        hook, port = webhook_server.start_in_thread(
            cert_file=str(folder / "tls.crt"), key_file=str(folder / "tls.key"),
            settings=inject_settings.from_mapping(json.loads(settings_doc)),
            namespace_labels=lookup)
        api.service_resolver = lambda ns, name, svc_port: f"https://127.0.0.1:{port}"
        api_client = config.new_client_from_config(config_file=api.kubeconfig_path)
        core = client.CoreV1Api(api_client)
        core.create_namespaced_service_account(TENANT, {"metadata": {"name": "app"}})
        for name in ("pod-a", "pod-b"):
            core.create_namespaced_pod(TENANT, {"metadata": {"name": name}, "spec": {
                "serviceAccountName": "app",
                "containers": [{"name": "app", "image": "busybox"}]}})
        try:
            yield api, core, colony_secret, folder
        finally:
            hook.shutdown()
            hook.server_close()
            api_client.close()


def _pods(core) -> list[dict]:
    return [core.api_client.sanitize_for_serialization(p)
            for p in core.list_namespaced_pod(TENANT).items]


def test_review_injected_tenant_namespace_holds_no_colony_secret(deployed):
    """Everything a tenant can read in its namespace (Secrets, ConfigMaps, pod specs: env
    and volumes) holds neither the colony secret nor any credential but each pod's own;
    the Secret an earlier version put there is gone after the deploy."""
    api, core, colony_secret, _folder = deployed
    pods = _pods(core)
    assert len(pods) == 2 and all(
        p["metadata"]["annotations"].get("coral.io/injected") == "true" for p in pods)
    dump = json.dumps({
        "secrets": [core.api_client.sanitize_for_serialization(s)
                    for s in core.list_namespaced_secret(TENANT).items],
        "configmaps": [core.api_client.sanitize_for_serialization(c)
                       for c in core.list_namespaced_config_map(TENANT).items],
        "pods": pods})
    encoded = base64.b64encode(colony_secret.encode()).decode()
    assert colony_secret not in dump and encoded not in dump
    assert core.list_namespaced_secret(TENANT).items == []
    for pod in pods:
        spec = pod["spec"]
        agent = next(c for c in spec["initContainers"] if c["name"] == "coral-agent")
        env = {e["name"]: e for e in agent["env"]}
        assert "CORAL_COLONY_SECRET" not in env
        assert "secretKeyRef" not in json.dumps(spec)  # no container reads any Secret
        assert all("secret" not in v for v in spec["volumes"])
        # the one credential: this pod's own token, for the colony only, bound by kubelet
        token_volumes = [v for v in spec["volumes"] if "projected" in v]
        # (plus the pod's own labels, downward API: not a credential; issue 16)
        assert token_volumes == [{"name": "coral-agent-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "coral", "expirationSeconds": 3600,
                                     "path": "token"}},
            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1",
                                                     "fieldPath": "metadata.labels"},
                                        "path": "labels"}]}}]}}]
        assert {"mountPath": "/var/run/secrets/coral.io/serviceaccount",
                "name": "coral-agent-token", "readOnly": True} in agent["volumeMounts"]
    config_map = core.read_namespaced_config_map("coral-colony", TENANT).data
    assert set(config_map) == {"address", "ca.crt", "colony-id"}


def _projected_token(core, pod: str) -> str:
    """What kubelet writes into the pod's coral-agent-token volume."""
    ref = client.V1BoundObjectReference(kind="Pod", api_version="v1", name=pod)
    body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=["coral"], expiration_seconds=3600, bound_object_ref=ref))
    return core.create_namespaced_service_account_token("app", TENANT, body).status.token


def _mint_status(api, bearer: str, body) -> int:
    """HTTP status of a TokenRequest for pod B made with `bearer` through the real client."""
    conf = client.Configuration(host=api.url, api_key={"authorization": f"Bearer {bearer}"})
    conf.ssl_ca_cert = api.ca_path
    with client.ApiClient(conf) as stolen:
        try:
            client.CoreV1Api(stolen).create_namespaced_service_account_token("app", TENANT, body)
        except client.ApiException as exc:
            return exc.status
    return 201


def test_review_token_of_pod_a_cannot_claim_pod_b(deployed, tmp_path):
    from coral_lib.colony import tokenreview

    api, core, _secret, _folder = deployed
    colony_kc = api.service_account_kubeconfig("coral-system", "coral-colony",
                                               tmp_path / "colony.kubeconfig")
    reviewer = tokenreview.TokenReviewer(kubeconfig=colony_kc)
    token_a = _projected_token(core, "pod-a")
    pod_a = core.read_namespaced_pod("pod-a", TENANT)
    claims = reviewer.review(token_a)
    assert (claims.namespace, claims.pod, claims.pod_uid) == (TENANT, "pod-a", pod_a.metadata.uid)
    assert claims.node == pod_a.spec.node_name

    # 1. Rewrite the claims to name pod B: the signature no longer holds.
    header, payload, sig = token_a.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    pod_b = core.read_namespaced_pod("pod-b", TENANT)
    doc["kubernetes.io"]["pod"] = {"name": "pod-b", "uid": pod_b.metadata.uid}
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    with pytest.raises(tokenreview.TokenRejected, match="not authenticated"):
        reviewer.review(f"{header}.{forged}.{sig}")

    # 2. Use pod A's coral token as an API credential to mint one for pod B: it is not one
    #    (401: the API server does not take a token projected for the colony).
    body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=["coral"], bound_object_ref=client.V1BoundObjectReference(
            kind="Pod", api_version="v1", name="pod-b")))
    assert _mint_status(api, token_a, body) == 401
    # 3. The tenant's own API identity (the SA's token for the API) is authenticated but may
    #    not mint tokens (403), so pod A cannot obtain pod B's credential that way either.
    api_token = api.tokens.request(TENANT, "app", {"spec": {}})["status"]["token"]
    assert _mint_status(api, api_token, body) == 403

    # 4. Pod A gone and a new pod A in its place: the old token names a pod that is no more.
    core.delete_namespaced_pod("pod-a", TENANT)
    core.create_namespaced_pod(TENANT, {"metadata": {"name": "pod-a"}, "spec": {
        "serviceAccountName": "app", "containers": [{"name": "app", "image": "busybox"}]}})
    with pytest.raises(tokenreview.TokenRejected, match="not authenticated"):
        reviewer.review(token_a)
    assert reviewer.review(_projected_token(core, "pod-a")).pod_uid != pod_a.metadata.uid


def test_review_colony_rbac_from_the_deploy_allows_tokenreview_only(deployed, tmp_path):
    """The colony's identity reviews tokens and does nothing else (no Secrets, no pods)."""
    api, _core, _secret, _folder = deployed
    kc = api.service_account_kubeconfig("coral-system", "coral-colony",
                                        tmp_path / f"{uuid.uuid4().hex}.kubeconfig")
    colony_api = config.new_client_from_config(config_file=kc)
    core = client.CoreV1Api(colony_api)
    for call in (lambda: core.list_namespaced_secret(TENANT),
                 lambda: core.list_namespaced_pod(TENANT),
                 lambda: core.list_namespaced_secret("coral-system")):
        with pytest.raises(client.ApiException) as err:
            call()
        assert err.value.status == 403
    review = client.AuthenticationV1Api(colony_api).create_token_review(client.V1TokenReview(
        spec=client.V1TokenReviewSpec(token="x.y.z", audiences=["coral"])))
    assert review.status.authenticated is not True
    colony_api.close()
