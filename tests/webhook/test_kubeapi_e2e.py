"""End to end with the in-repo API server fixture (issue 5 acceptance): the webhook over
HTTPS answers real AdmissionReviews from the API server when pods are created in a
labelled namespace, and the created pods carry the sidecar. The rendered
MutatingWebhookConfiguration (both selector entries, caBundle) is what is registered, and
namespace labels are looked up through the real `kubernetes` client."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client, config

from coral_lib import manifests
from coral_lib.webhook import certs, server
from coral_lib.webhook import settings as settings_mod
from tests.support.kubeapi import KubeAPIServer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    with KubeAPIServer(folder / "api", nodes=["node-a"]) as api:
        tls = certs.generate(service="coral-webhook", namespace="coral-system")
        (folder / "tls.crt").write_bytes(tls.cert_pem)
        (folder / "tls.key").write_bytes(tls.key_pem)
        lookup = server.KubernetesNamespaceLabels(ttl=0.0, kubeconfig=api.kubeconfig_path)
        hook, port = server.start_in_thread(
            cert_file=str(folder / "tls.crt"), key_file=str(folder / "tls.key"),
            settings=settings_mod.InjectSettings(), namespace_labels=lookup)
        api.service_resolver = lambda ns, name, svc_port: f"https://127.0.0.1:{port}"
        api_client = config.new_client_from_config(config_file=api.kubeconfig_path)
        mwc = next(o for o in manifests.render("webhook", manifests.ManifestSettings(tls=tls))
                   if o["kind"] == "MutatingWebhookConfiguration")
        client.AdmissionregistrationV1Api(api_client).create_mutating_webhook_configuration(mwc)
        yield api, client.CoreV1Api(api_client), hook
        hook.shutdown()
        hook.server_close()
        api_client.close()


def _namespace(core, labels: dict) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    return name


def _create_pod(core, namespace: str, *, labels: dict | None = None) -> dict:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}
    created = core.create_namespaced_pod(namespace, body)
    return core.api_client.sanitize_for_serialization(created)


def _agents(pod: dict) -> list[str]:
    spec = pod["spec"]
    return [c["name"] for c in spec.get("initContainers", []) + spec["containers"]
            if c["name"] == "coral-agent"]


def test_pod_in_labelled_namespace_gets_sidecar_from_api_server(cluster) -> None:
    api, core, hook = cluster
    pod = _create_pod(core, _namespace(core, {"coral.io/inject": "true"}))
    assert pod["spec"]["initContainers"][0]["name"] == "coral-agent"
    assert pod["spec"]["initContainers"][0]["restartPolicy"] == "Always"
    assert pod["spec"]["shareProcessNamespace"] is True
    assert pod["metadata"]["annotations"]["coral.io/injected"] == "true"
    assert hook.metrics.count("injected") >= 1


def test_pod_in_unlabelled_namespace_not_injected(cluster) -> None:
    _, core, _ = cluster
    pod = _create_pod(core, _namespace(core, {}))
    assert _agents(pod) == []


def test_pod_label_opt_in_reaches_object_webhook(cluster) -> None:
    _, core, _ = cluster
    pod = _create_pod(core, _namespace(core, {}), labels={"coral.io/inject": "true"})
    assert _agents(pod) == ["coral-agent"]


def test_pod_opt_out_in_labelled_namespace(cluster) -> None:
    _, core, _ = cluster
    pod = _create_pod(core, _namespace(core, {"coral.io/inject": "true"}),
                      labels={"coral.io/inject": "false"})
    assert _agents(pod) == []
