"""Mutating admission: on pod CREATE the fixture calls matching webhooks over HTTPS (caBundle
verified), applies their JSONPatch, honours failurePolicy, timeoutSeconds and
reinvocationPolicy IfNeeded. The webhook is a small HTTPS server in the test."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import time

import pytest
from kubernetes.client.rest import ApiException

from tests.kubeapi.conftest import pod
from tests.support.kubeapi import tls


class _Webhook(http.server.BaseHTTPRequestHandler):
    calls: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        self.calls.append((self.path, req))
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/broken":
            body = b"not json"
        else:
            body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "response": self._respond(req)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _respond(self, req: dict) -> dict:
        obj = req["object"]
        if self.path == "/deny":
            return {"uid": req["uid"], "allowed": False,
                    "status": {"code": 403, "message": "no pods today"}}
        if self.path == "/sidecar":
            names = [c["name"] for c in obj["spec"]["containers"]]
            ops = [] if "sidecar" in names else [
                {"op": "add", "path": "/spec/containers/-",
                 "value": {"name": "sidecar", "image": "coral/agent:1"}}]
        elif self.path == "/annotate":
            ops = [] if (obj["metadata"].get("annotations") or {}).get("a/b") else [
                {"op": "add", "path": "/metadata/annotations",
                 "value": {**(obj["metadata"].get("annotations") or {}), "a/b": "yes"}}]
        else:
            ops = []
        out = {"uid": req["uid"], "allowed": True}
        if ops:
            out.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(ops).encode())
                       .decode())
        return out


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    d = tmp_path_factory.mktemp("webhook")
    ca, ca_key = tls.make_ca("webhook-ca")
    cert, key = tls.issue_cert(ca, ca_key, common_name="wh", dns_names=["wh.hooks.svc"],
                               ip_addresses=["127.0.0.1"])
    (d / "c.pem").write_bytes(cert)
    (d / "k.pem").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "c.pem", d / "k.pem")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield {"port": srv.server_address[1], "ca": base64.b64encode(ca).decode()}
    srv.shutdown()


def _config(name: str, hooks: list[dict]) -> dict:
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration", "metadata": {"name": name},
            "webhooks": hooks}


def _hook(name: str, path: str, webhook: dict, **extra) -> dict:
    hook = {"name": f"{name}.coral.io", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 5,
            "clientConfig": {"url": f"https://127.0.0.1:{webhook['port']}{path}",
                             "caBundle": webhook["ca"]},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"coral.io/inject": "true"}}}
    hook.update(extra)
    return hook


@pytest.fixture
def injected_ns(server, ns):
    server.store.patch("namespaces", ns, {"metadata": {"labels": {"coral.io/inject": "true"}}})
    yield ns
    for cfg in server.store.list("mutatingwebhookconfigurations"):
        server.store.delete("mutatingwebhookconfigurations", cfg["metadata"]["name"])
    _Webhook.calls.clear()


def test_webhook_patch_applied_in_matching_namespace_only(core, server, webhook, injected_ns):
    server.store.create(_config("inject", [_hook("sidecar", "/sidecar", webhook,
                        objectSelector={"matchExpressions": [
                            {"key": "skip", "operator": "DoesNotExist"}]})]))
    created = core.create_namespaced_pod(injected_ns, pod("app"))
    assert [c.name for c in created.spec.containers] == ["app", "sidecar"]
    path, req = _Webhook.calls[-1]
    assert req["operation"] == "CREATE" and req["namespace"] == injected_ns
    assert req["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    skipped = core.create_namespaced_pod(injected_ns, pod("skip-me", labels={"skip": "1"}))
    assert [c.name for c in skipped.spec.containers] == ["app"]
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}})
    other = core.create_namespaced_pod("plain", pod("p"))
    assert [c.name for c in other.spec.containers] == ["app"]


def test_generate_name_pod_reaches_webhook_without_name(core, server, webhook, injected_ns):
    server.store.create(_config("inject", [_hook("sidecar", "/sidecar", webhook)]))
    body = pod("")
    body["metadata"] = {"generateName": "gen-"}
    created = core.create_namespaced_pod(injected_ns, body)
    assert created.metadata.name.startswith("gen-")
    assert _Webhook.calls[-1][1]["name"] == ""
    assert _Webhook.calls[-1][1]["object"]["metadata"]["generateName"] == "gen-"


def test_service_reference_through_resolver_checks_sni(core, server, webhook, injected_ns):
    hook = _hook("sidecar", "/sidecar", webhook)
    hook["clientConfig"] = {"service": {"namespace": "hooks", "name": "wh", "path": "/sidecar",
                                        "port": 443}, "caBundle": webhook["ca"]}
    server.store.create(_config("svc", [hook]))
    server.service_resolver = lambda ns, name, port: f"https://127.0.0.1:{webhook['port']}"
    try:
        created = core.create_namespaced_pod(injected_ns, pod("via-svc"))
    finally:
        server.service_resolver = None
    assert [c.name for c in created.spec.containers] == ["app", "sidecar"]


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_failure_policy_on_unreachable_or_wrong_ca(core, server, webhook, injected_ns, policy):
    wrong_ca = base64.b64encode(tls.make_ca("other")[0]).decode()
    hook = _hook("bad", "/sidecar", webhook, failurePolicy=policy)
    hook["clientConfig"]["caBundle"] = wrong_ca
    server.store.create(_config("bad", [hook]))
    if policy == "Ignore":
        created = core.create_namespaced_pod(injected_ns, pod("ok"))
        assert [c.name for c in created.spec.containers] == ["app"]
    else:
        with pytest.raises(ApiException) as err:
            core.create_namespaced_pod(injected_ns, pod("no"))
        assert err.value.status == 500 and "failed calling webhook" in err.value.body


def test_timeout_seconds_with_ignore(core, server, webhook, injected_ns):
    server.store.create(_config("slow", [_hook("slow", "/slow", webhook, timeoutSeconds=1,
                                               failurePolicy="Ignore")]))
    start = time.monotonic()
    core.create_namespaced_pod(injected_ns, pod("fast"))
    assert time.monotonic() - start < 1.9


def test_broken_response_and_denial(core, server, webhook, injected_ns):
    server.store.create(_config("deny", [_hook("deny", "/deny", webhook)]))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(injected_ns, pod("denied"))
    assert err.value.status == 403 and "no pods today" in err.value.body
    server.store.delete("mutatingwebhookconfigurations", "deny")
    server.store.create(_config("broken", [_hook("broken", "/broken", webhook)]))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(injected_ns, pod("broken"))
    assert err.value.status == 500


def test_reinvocation_if_needed(core, server, webhook, injected_ns):
    server.store.create(_config("a-sidecar", [_hook("sidecar", "/sidecar", webhook,
                                                    reinvocationPolicy="IfNeeded")]))
    server.store.create(_config("b-annotate", [_hook("annotate", "/annotate", webhook)]))
    created = core.create_namespaced_pod(injected_ns, pod("re"))
    assert created.metadata.annotations == {"a/b": "yes"}
    assert [c.name for c in created.spec.containers] == ["app", "sidecar"]
    paths = [p for p, _r in _Webhook.calls]
    assert paths == ["/sidecar", "/annotate", "/sidecar"]  # sidecar reinvoked once
    # the reinvocation saw the annotated object, and its no-op answer kept it
    assert _Webhook.calls[-1][1]["object"]["metadata"]["annotations"] == {"a/b": "yes"}
