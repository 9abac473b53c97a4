"""Manifest renderers (issue 5): every rendered object validates against the Kubernetes
OpenAPI schema; DaemonSet least privilege and observe-only; webhook Deployment, PDB,
Service and MutatingWebhookConfiguration fields; sidecar template == inject()."""

from __future__ import annotations

import base64
import json
import ssl

import kubernetes_validate
import pytest
from cryptography import x509

from coral_lib import manifests
from coral_lib.webhook import certs, inject
from coral_lib.webhook import settings as inject_settings
from tests.manifests.conftest import VARIANTS, by_kind
from tests.webhook import conftest as webhook_conftest

CRDS = {"Issuer", "Certificate"}  # cert-manager kinds: no schema in kubernetes-validate


def test_every_rendered_object_validates_against_schema(rendered) -> None:
    """Issue 5 acceptance: each object validates (strict) against the 1.30 schema."""
    _, objects = rendered
    for obj in objects:
        if obj["kind"] in CRDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, webhook_conftest.SCHEMA_VERSION, strict=True)
            continue
        webhook_conftest.validate_schema(obj)
        assert obj["metadata"]["name"]


@pytest.mark.parametrize("mode,overrides", [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_render_is_pure_and_deterministic(mode, overrides, tls) -> None:
    settings = manifests.ManifestSettings(tls=tls, **overrides)
    first = manifests.render(mode, settings)
    assert manifests.render(mode, settings) == first
    first[-1]["metadata"]["name"] = "changed"  # callers may mutate what they get
    assert manifests.render(mode, settings)[-1]["metadata"]["name"] != "changed"


def _agent(objects: list[dict]) -> dict:
    return by_kind(objects, "DaemonSet")[0]["spec"]["template"]["spec"]


def test_daemonset_least_privilege_and_node_access() -> None:
    objects = manifests.render("daemonset", manifests.ManifestSettings())
    assert [o["kind"] for o in objects] == [
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]
    assert by_kind(objects, "ClusterRole")[0]["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]
    binding = by_kind(objects, "ClusterRoleBinding")[0]
    assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": "coral-agent",
                                      "namespace": "coral-system"}
    spec = _agent(objects)
    assert spec["hostPID"] is True and spec["serviceAccountName"] == "coral-agent"
    container = spec["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "CORAL_COLONY_SECRET" not in env and "secretKeyRef" not in json.dumps(spec)
    assert env["CORAL_COLONY_ADDRESS"]["valueFrom"]["configMapKeyRef"] == {
        "name": "coral-colony", "key": "address"}
    assert env["CORAL_COLONY_CA"]["valueFrom"]["configMapKeyRef"]["key"] == "ca.crt"
    assert container["securityContext"]["privileged"] is True
    assert set(container["securityContext"]["capabilities"]["add"]) == {
        "NET_ADMIN", "SYS_PTRACE", "BPF"}
    assert spec["volumes"][1]["hostPath"] == {"path": "/run/containerd/containerd.sock",
                                              "type": "Socket"}
    assert container["volumeMounts"][1]["mountPath"] == "/run/containerd/containerd.sock"


def test_daemonset_agent_identity_is_a_projected_token_for_coral() -> None:
    """Issue 10 item 3: audience coral, at most an hour, read-only, named in the config."""
    spec = _agent(manifests.render("daemonset", manifests.ManifestSettings()))
    assert spec["volumes"][0] == {"name": "coral-agent-token", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "coral", "expirationSeconds": 3600,
                                 "path": "token"}}]}}
    container = spec["containers"][0]
    assert container["volumeMounts"][0] == {
        "name": "coral-agent-token", "mountPath": "/var/run/secrets/coral.io/serviceaccount",
        "readOnly": True}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CORAL_SERVICE_ACCOUNT_TOKEN_FILE"] == (
        "/var/run/secrets/coral.io/serviceaccount/token")
    assert env["CORAL_AGENT_ID"] == "node-$(NODE_NAME)"


@pytest.mark.parametrize("mode", ["daemonset", "webhook"])
def test_colony_may_create_tokenreviews_and_nothing_else(mode, tls) -> None:
    objects = manifests.render(mode, manifests.ManifestSettings(tls=tls))
    role = [o for o in by_kind(objects, "ClusterRole")
            if o["metadata"]["name"] == "coral-colony-tokenreview"][0]
    assert role["rules"] == [{"apiGroups": ["authentication.k8s.io"],
                              "resources": ["tokenreviews"], "verbs": ["create"]}]
    binding = [o for o in by_kind(objects, "ClusterRoleBinding")
               if o["roleRef"]["name"] == "coral-colony-tokenreview"][0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "coral-colony",
                                    "namespace": "coral-system"}]


def test_removed_colony_secret_setting_fails_clearly() -> None:
    for call in (lambda: manifests.settings_mod.parse_sets(["colony_secret_name=x"]),
                 lambda: manifests.settings_mod.build({"colony_secret_name": "x"})):
        with pytest.raises(manifests.ManifestError, match="colony_secret_name was removed"):
            call()
    with pytest.raises(inject_settings.SettingsError, match="no longer read a shared"):
        inject_settings.from_mapping({"colony_secret_name": "x"})


def test_daemonset_observe_only_has_no_ptrace_net_admin_or_socket() -> None:
    spec = _agent(manifests.render("daemonset", manifests.ManifestSettings(observe_only=True)))
    container = spec["containers"][0]
    text = json.dumps(spec)
    assert "SYS_PTRACE" not in text and "NET_ADMIN" not in text
    assert "containerd.sock" not in text
    # the token, the optional agent ConfigMap (filters, overrides) and the agent's state
    # directory on the node: no runtime socket
    assert [v["name"] for v in spec["volumes"]] == ["coral-agent-token", "agent-config",
                                                    "agent-state"]
    assert container["securityContext"]["privileged"] is False


@pytest.mark.parametrize("observe_only", [False, True])
def test_daemonset_agent_state_on_a_host_path_volume(observe_only: bool) -> None:
    """Issue 14 §4.1 "killing the agent container loses no services (state on a volume)":
    the agent's default state dir is a hostPath directory on its node, settable."""
    settings = manifests.ManifestSettings(observe_only=observe_only,
                                          state_host_path="/srv/coral/state")
    spec = _agent(manifests.render("daemonset", settings))
    (volume,) = [v for v in spec["volumes"] if v["name"] == "agent-state"]
    assert volume["hostPath"] == {"path": "/srv/coral/state", "type": "DirectoryOrCreate"}
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "agent-state"]
    assert mount["mountPath"] == "/var/lib/coral/agent"  # runner.default_state_dir() as root
    assert not mount.get("readOnly")


def test_webhook_objects(tls) -> None:
    objects = manifests.render("webhook", manifests.ManifestSettings(tls=tls))
    kinds = [o["kind"] for o in objects]
    for kind in ("Namespace", "ServiceAccount", "Deployment", "PodDisruptionBudget", "Service",
                 "MutatingWebhookConfiguration", "Secret", "ConfigMap"):
        assert kind in kinds
    assert kinds[-1] == "MutatingWebhookConfiguration"  # registered only after the server
    deployment = by_kind(objects, "Deployment")[0]
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert by_kind(objects, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
    service = by_kind(objects, "Service")[0]
    assert service["spec"]["ports"][0]["port"] == 443
    secret = by_kind(objects, "Secret")[0]
    assert secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["tls.crt"]) == tls.cert_pem
    config = json.loads(by_kind(objects, "ConfigMap")[0]["data"]["settings.json"])
    assert inject_settings.from_mapping(config) == inject_settings.InjectSettings()


def test_mutating_webhook_configuration_fields(tls) -> None:
    mwc = by_kind(manifests.render("webhook", manifests.ManifestSettings(tls=tls)),
                  "MutatingWebhookConfiguration")[0]
    assert len(mwc["webhooks"]) == 2
    for hook in mwc["webhooks"]:
        assert hook["failurePolicy"] == "Ignore"
        assert hook["timeoutSeconds"] == 5
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == tls.ca_pem
        assert hook["clientConfig"]["service"] == {
            "name": "coral-webhook", "namespace": "coral-system", "path": "/mutate", "port": 443}
        assert hook["rules"][0]["resources"] == ["pods"]
        keys = {e["key"] for e in hook["namespaceSelector"]["matchExpressions"]}
        assert "coral.io/inject" in keys
        own = hook["objectSelector"]["matchExpressions"][0]
        assert own["operator"] == "NotIn" and "coral-agent" in own["values"]
    by_ns = mwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]
    assert by_ns == {"key": "coral.io/inject", "operator": "In", "values": ["true"]}


def test_failure_policy_configurable(tls) -> None:
    mwc = by_kind(manifests.render("webhook", manifests.ManifestSettings(
        tls=tls, failure_policy="Fail")), "MutatingWebhookConfiguration")[0]
    assert {h["failurePolicy"] for h in mwc["webhooks"]} == {"Fail"}


def test_cert_manager_mode() -> None:
    objects = manifests.render("webhook", manifests.ManifestSettings(cert_mode="cert-manager"))
    mwc = by_kind(objects, "MutatingWebhookConfiguration")[0]
    assert mwc["metadata"]["annotations"][certs.INJECT_CA_FROM] == "coral-system/coral-webhook"
    assert all("caBundle" not in h["clientConfig"] for h in mwc["webhooks"])
    certificate = by_kind(objects, "Certificate")[0]
    assert certificate["spec"]["secretName"] == "coral-webhook-tls"
    assert "coral-webhook.coral-system.svc" in certificate["spec"]["dnsNames"]
    assert by_kind(objects, "Issuer") and not by_kind(objects, "Secret")


def test_webhook_without_tls_names_what_is_needed() -> None:
    with pytest.raises(manifests.ManifestError, match="TLS material"):
        manifests.render("webhook", manifests.ManifestSettings())


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(manifests.ManifestError, match="daemonset, webhook, sidecar"):
        manifests.render("host", manifests.ManifestSettings())


@pytest.mark.parametrize("overrides,message", [
    ({"failure_policy": "Maybe"}, "Ignore, Fail"), ({"cert_mode": "vault"}, "cert-manager"),
    ({"webhook_replicas": 0}, "at least 1"), ({"timeout_seconds": 60}, "between 1 and 30"),
    ({"kubernetes_version": "new"}, "major.minor"), ({"cri_socket": ""}, "non-empty"),
])
def test_bad_settings_name_the_setting(overrides, message) -> None:
    with pytest.raises(manifests.ManifestError, match=message):
        manifests.ManifestSettings(**overrides)


@pytest.mark.parametrize("overrides", [{}, {"kubernetes_version": "1.28", "enable_bpf": True}])
def test_sidecar_template_is_inject_output(overrides) -> None:
    """One source of truth: the template's agent is exactly what the webhook injects."""
    settings = manifests.ManifestSettings(**overrides)
    template = manifests.render("sidecar", settings)[0]["template"]
    app = {"metadata": {"labels": {"app.kubernetes.io/name": "app"}},
           "spec": {"containers": [{"name": "app", "image": settings.app_image}]}}
    patch = inject.inject(app, {"coral.io/inject": "true"}, settings.inject_settings(),
                          namespace="default")
    assert template == inject.apply_patch(app, patch)
    assert inject.inject(template, {"coral.io/inject": "true"}, settings.inject_settings(),
                         namespace="default") == []
    webhook_conftest.validate_schema({"apiVersion": "v1", "kind": "Pod", **template})


def test_serving_cert_sans_and_chain(tls) -> None:
    cert = x509.load_pem_x509_certificate(tls.cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == certs.dns_names(
        "coral-webhook", "coral-system")
    ca = x509.load_pem_x509_certificate(tls.ca_pem)
    cert.verify_directly_issued_by(ca)
    context = ssl.create_default_context(cadata=tls.ca_pem.decode())
    assert context.get_ca_certs()[0]["subject"]


def test_serving_cert_ip_sans() -> None:
    ca, key = certs.generate_ca()
    pem, _ = certs.serving_cert(ca_cert_pem=ca, ca_key_pem=key, service="s", namespace="n",
                                ips=["10.0.0.7", "::1"])
    sans = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "::1"]


def test_colony_mode_renders_replicas_service_pdb_and_dsn_secret() -> None:
    """Issue 11: `coral manifests render --mode colony` renders a Deployment (replicas,
    Service, PodDisruptionBudget, DSN Secret); the DSN reaches the pod only from the Secret."""
    settings = manifests.ManifestSettings(colony_replicas=4,
                                          colony_database_dsn="postgresql://c:pw@db/coral")
    objects = manifests.render("colony", settings)
    assert [o["kind"] for o in objects] == [
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret",
        "Deployment", "Service", "Service", "PodDisruptionBudget"]
    secret = by_kind(objects, "Secret")[0]
    assert secret["stringData"] == {"dsn": "postgresql://c:pw@db/coral"}
    deployment = by_kind(objects, "Deployment")[0]
    assert deployment["spec"]["replicas"] == 4
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "pw" not in json.dumps(deployment)  # only the Secret holds it
    assert {"name": "CORAL_DATABASE", "valueFrom": {"secretKeyRef": {
        "name": "coral-colony-database", "key": "dsn"}}} in container["env"]
    assert container["args"][container["args"].index("--database") + 1] == \
        "env:CORAL_DATABASE"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    selector = deployment["spec"]["selector"]["matchLabels"]
    pdb = by_kind(objects, "PodDisruptionBudget")[0]["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    services = by_kind(objects, "Service")
    assert [s["spec"]["selector"] for s in services] == [selector, selector]
    assert services[1]["spec"]["clusterIP"] == "None"  # replica-to-replica addresses
    with pytest.raises(manifests.ManifestError, match="colony_replicas"):
        manifests.ManifestSettings(colony_replicas=0)
