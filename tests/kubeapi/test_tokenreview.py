"""Bound service account tokens (issue 10 item 3), held to real clients.

The fixture's TokenRequest / TokenReview are exercised with the `kubernetes` client and
`kubectl create token`, and the colony's TokenReviewer (coral_lib.colony.tokenreview)
talks to it over HTTPS as the colony's own service account, authorized only by the RBAC
our manifests render. Kubelet is not modelled: tests request the pod-bound token through
the API exactly as kubelet does for a projected `serviceAccountToken` volume
(tests.support.kubeapi.kubelet.TokenProjector does that for a pod's own volumes).
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from kubernetes import client

from coral_lib import manifests
from coral_lib.colony import tokenreview
from coral_lib.manifests import colony as colony_manifests
from tests.support.kubeapi import authn, kubelet

COLONY_NS = "coral-system"


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _sa(server, ns: str, name: str) -> dict:
    return server.store.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                "metadata": {"name": name, "namespace": ns}})


def _pod(server, ns: str, name: str, *, sa: str = "app", node: str | None = "node-a") -> dict:
    spec = {"serviceAccountName": sa, "containers": [{"name": "app", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return server.store.create({"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": name, "namespace": ns}, "spec": spec})


def _token(core, ns: str, pod: str | None, *, sa: str = "app", audiences=("coral",),
           seconds: int = 3600) -> str:
    ref = client.V1BoundObjectReference(kind="Pod", api_version="v1", name=pod) if pod else None
    body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=list(audiences), expiration_seconds=seconds, bound_object_ref=ref))
    return core.create_namespaced_service_account_token(sa, ns, body).status.token


@pytest.fixture
def tenant(server, ns):
    """A namespace with service account `app` and pod `web` on node-a."""
    _sa(server, ns, "app")
    pod = _pod(server, ns, "web")
    return ns, pod


@pytest.fixture(scope="module")
def colony_kubeconfig(server, tmp_path_factory):
    """The colony's own credentials: a token of coral-system/coral-colony, bound by exactly
    the objects our manifests render (nothing else grants it anything)."""
    if "coral-system" not in {n["metadata"]["name"] for n in server.store.list("namespaces")}:
        server.store.create({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": COLONY_NS}})
    for obj in colony_manifests.rbac(manifests.ManifestSettings()):
        server.store.create(obj)
    path = tmp_path_factory.mktemp("colony") / "kubeconfig"
    # a day: tests move the fixture's token clock forward by up to an hour
    return server.service_account_kubeconfig(COLONY_NS, "coral-colony", path,
                                             expiration_seconds=86400)


@pytest.fixture
def reviewer(colony_kubeconfig):
    return tokenreview.TokenReviewer(kubeconfig=colony_kubeconfig)


# ---- the fixture: TokenRequest -----------------------------------------------------------

def test_token_request_bound_to_pod_names_pod_node_and_service_account(server, core, tenant):
    ns, pod = tenant
    body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=["coral"], expiration_seconds=3600,
        bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1",
                                                       name="web")))
    resp = core.create_namespaced_service_account_token("app", ns, body)
    claims = _claims(resp.status.token)
    node = server.store.get("nodes", "node-a")
    assert claims["aud"] == ["coral"] and claims["sub"] == f"system:serviceaccount:{ns}:app"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": pod["metadata"]["uid"]}
    assert claims["kubernetes.io"]["node"] == {"name": "node-a",
                                               "uid": node["metadata"]["uid"]}
    assert claims["kubernetes.io"]["namespace"] == ns
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "app"
    assert resp.status.expiration_timestamp is not None


@pytest.mark.parametrize("spec,code,text", [
    ({"expirationSeconds": 599}, 422, "less than 10 minutes"),
    ({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "nope"}}, 404, "not found"),
    ({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web",
                         "uid": "00000000-0000-0000-0000-000000000000"}}, 409, "does not match"),
    ({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "other-sa"}}, 400,
     "different serviceaccount"),
])
def test_token_request_refuses_what_kube_apiserver_refuses(server, raw, tenant, spec, code, text):
    ns, _pod_obj = tenant
    _sa(server, ns, "other")
    _pod(server, ns, "other-sa", sa="other")
    status, doc = raw("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/app/token",
                      json.dumps({"spec": spec}).encode())
    assert status == code and text in doc["message"], doc


def test_token_request_for_missing_service_account_is_404(raw, ns):
    status, doc = raw("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/ghost/token",
                      json.dumps({"spec": {}}).encode())
    assert status == 404 and doc["reason"] == "NotFound"


def test_kubectl_create_token_bound_to_pod(kubectl, server, api_client, tenant):
    ns, pod = tenant
    proc = kubectl("create", "token", "app", "-n", ns, "--audience", "coral",
                   "--bound-object-kind", "Pod", "--bound-object-name", "web",
                   "--duration", "15m")
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    claims = _claims(token)
    assert claims["exp"] - claims["iat"] == 900
    assert claims["kubernetes.io"]["pod"]["uid"] == pod["metadata"]["uid"]
    review = client.AuthenticationV1Api(api_client).create_token_review(client.V1TokenReview(
        spec=client.V1TokenReviewSpec(token=token, audiences=["coral"])))
    assert review.status.authenticated is True
    short = kubectl("create", "token", "app", "-n", ns, "--duration", "5m")
    assert short.returncode != 0 and "less than 10 minutes" in short.stderr


# ---- the fixture: TokenReview --------------------------------------------------------------

def _review(api_client, token: str, audiences=("coral",)):
    return client.AuthenticationV1Api(api_client).create_token_review(client.V1TokenReview(
        spec=client.V1TokenReviewSpec(token=token, audiences=list(audiences) or None))).status


def test_token_review_answers_user_pod_and_node(server, core, api_client, tenant):
    ns, pod = tenant
    status = _review(api_client, _token(core, ns, "web"))
    node = server.store.get("nodes", "node-a")
    assert status.authenticated is True and status.audiences == ["coral"]
    assert status.user.username == f"system:serviceaccount:{ns}:app"
    assert set(status.user.groups) == {"system:serviceaccounts",
                                       f"system:serviceaccounts:{ns}", "system:authenticated"}
    extra = status.user.extra
    assert extra["authentication.kubernetes.io/pod-name"] == ["web"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    assert extra["authentication.kubernetes.io/node-name"] == ["node-a"]
    assert extra["authentication.kubernetes.io/node-uid"] == [node["metadata"]["uid"]]


def test_token_review_rejects_other_audience_and_api_default(core, api_client, tenant):
    ns, _ = tenant
    token = _token(core, ns, "web")
    wrong = _review(api_client, token, audiences=["vault"])
    assert not wrong.authenticated and "audiences" in wrong.error
    # no audiences in the review: the API server's own, which a coral token is not for
    default = _review(api_client, token, audiences=())
    assert not default.authenticated


def test_token_review_rejects_once_pod_is_gone_or_replaced(server, core, api_client, tenant):
    ns, _ = tenant
    token = _token(core, ns, "web")
    server.store.delete("pods", "web", namespace=ns)
    gone = _review(api_client, token)
    assert not gone.authenticated and authn.INVALIDATED in gone.error
    _pod(server, ns, "web")  # same name, new uid
    assert not _review(api_client, token).authenticated
    assert _review(api_client, _token(core, ns, "web")).authenticated


def test_token_review_rejects_after_expiry(core, api_client, tenant, server):
    ns, _ = tenant
    token = _token(core, ns, "web", seconds=600)
    assert _review(api_client, token).authenticated
    server.tokens.advance(601)
    status = _review(api_client, token)
    assert not status.authenticated and "expired" in status.error


def test_token_review_rejects_forged_claims(core, api_client, server, tenant):
    """Editing the payload to name another pod breaks the signature."""
    ns, _ = tenant
    _pod(server, ns, "db")
    header, payload, sig = _token(core, ns, "web").split(".")
    claims = _claims(f"{header}.{payload}.{sig}")
    claims["kubernetes.io"]["pod"]["name"] = "db"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert not _review(api_client, f"{header}.{forged}.{sig}").authenticated


# ---- the fixture: bearer authentication and RBAC -------------------------------------------

def test_service_account_bearer_is_subject_to_rbac(server, tenant, tmp_path, kubectl):
    ns, _ = tenant
    kc = server.service_account_kubeconfig(ns, "app", tmp_path / "app.kubeconfig")
    denied = kubectl("--kubeconfig", kc, "get", "pods", "-n", ns)
    assert denied.returncode != 0
    assert (f'pods is forbidden: User "system:serviceaccount:{ns}:app" cannot list resource '
            f'"pods" in API group "" in the namespace "{ns}"') in denied.stderr
    server.store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                         "metadata": {"name": "read", "namespace": ns},
                         "rules": [{"apiGroups": [""], "resources": ["pods"],
                                    "verbs": ["get", "list"]}]})
    server.store.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                         "metadata": {"name": "read", "namespace": ns},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                     "name": "read"},
                         "subjects": [{"kind": "ServiceAccount", "name": "app",
                                       "namespace": ns}]})
    allowed = kubectl("--kubeconfig", kc, "get", "pods", "-n", ns, "-o", "name")
    assert allowed.returncode == 0 and "pod/web" in allowed.stdout, allowed.stderr
    other = kubectl("--kubeconfig", kc, "get", "pods", "-n", "default")
    assert other.returncode != 0 and "forbidden" in other.stderr


def test_coral_audience_token_is_not_an_api_credential(raw, core, tenant):
    """A token projected for the colony cannot be replayed against the API server."""
    ns, _ = tenant
    status, _doc = raw("GET", f"/api/v1/namespaces/{ns}/pods", token=_token(core, ns, "web"))
    assert status == 401


# ---- the colony's TokenReviewer --------------------------------------------------------------

def test_reviewer_valid_bound_token_gives_pod_claims(reviewer, core, tenant):
    ns, pod = tenant
    claims = reviewer.review(_token(core, ns, "web"))
    assert claims == tokenreview.PodClaims(namespace=ns, pod="web",
                                           pod_uid=pod["metadata"]["uid"], node="node-a",
                                           service_account="app")


def test_reviewer_rejects_expired_token(reviewer, core, server, tenant):
    ns, _ = tenant
    token = _token(core, ns, "web", seconds=600)
    server.tokens.advance(601)
    with pytest.raises(tokenreview.TokenRejected, match="expired") as err:
        reviewer.review(token)
    assert not isinstance(err.value, tokenreview.ReviewUnavailable)
    assert token not in str(err.value)


def test_reviewer_rejects_token_of_deleted_pod(reviewer, core, server, tenant):
    ns, _ = tenant
    token = _token(core, ns, "web")
    server.store.delete("pods", "web", namespace=ns)
    with pytest.raises(tokenreview.TokenRejected, match="not authenticated"):
        reviewer.review(token)


def test_reviewer_rejects_wrong_audience(reviewer, core, tenant):
    ns, _ = tenant
    token = _token(core, ns, "web", audiences=["vault"])
    with pytest.raises(tokenreview.TokenRejected, match="audiences"):
        reviewer.review(token)
    api_token = _token(core, ns, "web", audiences=[authn.ISSUER])
    with pytest.raises(tokenreview.TokenRejected):
        reviewer.review(api_token)


def test_reviewer_rejects_token_not_bound_to_a_pod(reviewer, core, tenant):
    ns, _ = tenant
    with pytest.raises(tokenreview.TokenRejected, match="not bound to a pod"):
        reviewer.review(_token(core, ns, None))


def test_reviewer_rejects_pod_without_node(reviewer, core, server, tenant):
    ns, _ = tenant
    server.store.controller.run_pods = False
    try:
        _pod(server, ns, "pending", node=None)
    finally:
        server.store.controller.run_pods = True
    with pytest.raises(tokenreview.TokenRejected, match="names no node"):
        reviewer.review(_token(core, ns, "pending"))


@pytest.mark.parametrize("token,match", [
    ("", "empty"), ("a" * (tokenreview.MAX_TOKEN_BYTES + 1), "exceeds"),
    ("abc\r\nX-Evil: 1", "characters"), (b"bytes", "expected a string")])
def test_reviewer_rejects_malformed_tokens_before_asking(reviewer, token, match):
    with pytest.raises(tokenreview.TokenRejected, match=match) as err:
        reviewer.review(token)
    assert not isinstance(token, str) or not token or token not in str(err.value)


def test_reviewer_without_rbac_permission_says_what_to_grant(server, core, tenant, tmp_path):
    """Colony credentials lacking `create tokenreviews`: a clear error, never a pass."""
    ns, _ = tenant
    name = f"colony-{uuid.uuid4().hex[:6]}"
    _sa(server, ns, name)
    kc = server.service_account_kubeconfig(ns, name, tmp_path / "norbac.kubeconfig")
    reviewer = tokenreview.TokenReviewer(kubeconfig=kc)
    token = _token(core, ns, "web")
    with pytest.raises(tokenreview.ReviewUnavailable) as err:
        reviewer.review(token)
    text = str(err.value)
    assert "tokenreviews" in text and "coral-colony-tokenreview" in text
    assert f"system:serviceaccount:{ns}:{name}" in text and token not in text


def test_reviewer_with_admin_rejected_credentials_is_unavailable(server, core, tenant, tmp_path):
    ns, _ = tenant
    bad = tmp_path / "bad.kubeconfig"
    text = open(server.kubeconfig_path).read().replace(server.token, "not-the-token")
    bad.write_text(text)
    with pytest.raises(tokenreview.ReviewUnavailable, match="HTTP 401"):
        tokenreview.TokenReviewer(kubeconfig=str(bad)).review(_token(core, ns, "web"))


def test_reviewer_with_custom_audience(colony_kubeconfig, core, tenant):
    ns, _ = tenant
    reviewer = tokenreview.TokenReviewer(kubeconfig=colony_kubeconfig, audience="coral-prod")
    assert reviewer.review(_token(core, ns, "web", audiences=["coral-prod"])).pod == "web"
    with pytest.raises(tokenreview.TokenRejected):
        reviewer.review(_token(core, ns, "web"))


# ---- end to end: the rendered DaemonSet pod, its projected token, the colony's review -------

def test_rendered_daemonset_pod_token_reviews_as_its_node(server, reviewer, tmp_path):
    """The DaemonSet pod as our manifests render it, on node-b: kubelet's projected token
    (audience coral, 3600 s, bound to the pod) reviews as that pod on node-b, and is
    rotated before it expires."""
    objects = manifests.render("daemonset", manifests.ManifestSettings())
    sa = next(o for o in objects if o["kind"] == "ServiceAccount"
              and o["metadata"]["name"] == "coral-agent")
    if not any(s["metadata"]["name"] == "coral-agent"
               for s in server.store.list("serviceaccounts", namespace=COLONY_NS)):
        server.store.create(sa)
    template = next(o for o in objects if o["kind"] == "DaemonSet")["spec"]["template"]
    pod_name = f"coral-agent-{uuid.uuid4().hex[:5]}"
    server.store.create({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {**template["metadata"], "name": pod_name,
                                      "namespace": COLONY_NS},
                         "spec": {**template["spec"], "nodeName": "node-b"}})
    projector = kubelet.TokenProjector(server, tmp_path / "kubelet")
    projector.project(COLONY_NS, pod_name)
    mounts = projector.mounts(COLONY_NS, pod_name, "coral-agent")
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    token_file = env["CORAL_SERVICE_ACCOUNT_TOKEN_FILE"]
    mount_path, host_dir = next(iter(mounts.items()))
    host_file = host_dir / token_file[len(mount_path) + 1:]
    first = host_file.read_text()
    claims = reviewer.review(first)
    assert (claims.namespace, claims.pod, claims.node, claims.service_account) == (
        COLONY_NS, pod_name, "node-b", "coral-agent")
    assert _claims(first)["exp"] - _claims(first)["iat"] == 3600
    assert projector.refresh() == 0
    server.tokens.advance(0.8 * 3600 + 1)
    assert projector.refresh() == 1
    rotated = host_file.read_text()
    assert rotated != first and reviewer.review(rotated).pod == pod_name
