"""The HTTPS webhook: AdmissionReview v1 on POST /mutate, /healthz, /metrics, cert reload.

Acceptance (issue 5): each golden case also goes through the HTTPS path; malformed bodies
get HTTP 400 with a message; reviews it cannot handle are allowed without a patch and
with a warning; non-Pod kinds are allowed unchanged; a rotated certificate is reloaded
without restart.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl

import pytest
from cryptography import x509

from coral_lib.webhook import certs, inject, server
from coral_lib.webhook import settings as settings_mod
from tests.webhook import conftest


def _answer(status: int, body: bytes, uid: str) -> dict:
    assert status == 200, body
    answer = json.loads(body)
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == uid
    assert answer["response"]["allowed"] is True
    return answer["response"]


def test_golden_case_over_https(case: conftest.Case, webhooks: conftest.WebhookFactory) -> None:
    """Each golden case through the HTTPS path gives exactly the pure function's patch."""
    hook = webhooks(case.settings)
    hook.labels[case.namespace] = case.namespace_labels
    uid = f"uid-{case.name}"
    review = conftest.admission_review(case.pod, namespace=case.namespace, uid=uid)
    response = _answer(*hook.post(review), uid)
    expected = inject.inject(case.pod, case.namespace_labels, case.settings,
                             namespace=case.namespace)
    if expected:
        assert response["patchType"] == "JSONPatch"
        assert json.loads(base64.b64decode(response["patch"])) == expected
    else:
        assert "patch" not in response and "patchType" not in response


def test_keep_alive_many_reviews_on_one_connection(webhook: conftest.Webhook) -> None:
    webhook.labels["shop"] = {"coral.io/inject": "true"}
    pod = conftest.load_case("simple").pod
    conn = webhook.connection()
    for i in range(20):
        response = _answer(*webhook.post(conftest.admission_review(pod, namespace="shop",
                                                                    uid=f"k{i}"), conn=conn),
                           f"k{i}")
        assert response["patchType"] == "JSONPatch"
    conn.close()


@pytest.mark.parametrize(
    "body,message",
    [(b"{not json", b"not JSON"), (b"[1, 2]", b"JSON object"), (b"\xff\xfe", b"not JSON"),
     (b'{"kind": "Pod"}', b"kind must be AdmissionReview"),
     (b'{"kind": "AdmissionReview"}', b"request must be an object"),
     (b'{"kind": "AdmissionReview", "request": {"uid": 5}}', b"uid must be"),
     (b"", b"not JSON")],
)
def test_malformed_body_is_400_with_message(webhook: conftest.Webhook, body, message) -> None:
    status, payload = webhook.post(body)
    assert status == 400
    assert message in payload


def test_missing_content_length_is_400(webhook: conftest.Webhook) -> None:
    conn = webhook.connection()
    conn.putrequest("POST", "/mutate")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 400
    assert b"Content-Length" in response.read()


def test_unknown_path_is_404(webhook: conftest.Webhook) -> None:
    assert webhook.post(b"{}", path="/validate")[0] == 404
    assert webhook.get("/nope")[0] == 404


def _review(**request) -> dict:
    base = conftest.admission_review(conftest.load_case("simple").pod, namespace="shop",
                                     uid="u-1")
    base["request"].update(request)
    return base


@pytest.mark.parametrize(
    "review,warning",
    [(dict(_review(), apiVersion="admission.k8s.io/v1beta1"), "unsupported apiVersion"),
     (_review(object="not a pod"), "not a Pod object"),
     (_review(object={"spec": {"containers": "x"}}), "not injected"),
     (_review(object={"metadata": {"annotations": []}, "spec": {"containers": [{"name": "a"}]}}),
      "not injected")],
)
def test_review_it_cannot_handle_is_allowed_with_warning(webhook, review, warning) -> None:
    webhook.labels["shop"] = {"coral.io/inject": "true"}
    status, body = webhook.post(review)
    answer = json.loads(body)
    assert status == 200 and answer["response"]["uid"] == "u-1"
    assert answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]
    assert any(warning in w for w in answer["response"]["warnings"])
    assert answer["apiVersion"] == review["apiVersion"]


@pytest.mark.parametrize(
    "request_fields",
    [{"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}},
     {"kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
      "resource": {"group": "", "version": "v1", "resource": "configmaps"}},
     {"operation": "UPDATE"}, {"subResource": "status"}],
)
def test_non_pod_kinds_allowed_unchanged(webhook: conftest.Webhook, request_fields) -> None:
    webhook.labels["shop"] = {"coral.io/inject": "true"}
    response = _answer(*webhook.post(_review(**request_fields)), "u-1")
    assert "patch" not in response and "warnings" not in response


def test_namespace_lookup_failure_degrades_to_pod_opt_in(tls_files) -> None:
    def broken(name: str) -> dict:
        raise ConnectionError("API server unreachable")

    srv, port = server.start_in_thread(cert_file=tls_files["cert"], key_file=tls_files["key"],
                                       settings=settings_mod.InjectSettings(),
                                       namespace_labels=broken)
    try:
        hook = conftest.Webhook(srv, port, tls_files["ca"], {})
        opted_in = conftest.load_case("pod-opt-in-label").pod
        response = _answer(*hook.post(conftest.admission_review(opted_in, namespace="shop")),
                           "0000-uid")
        assert response["patchType"] == "JSONPatch"
        assert "unreachable" in response["warnings"][0]
    finally:
        srv.shutdown()
        srv.server_close()


def test_healthz_and_metrics_count_results(webhook: conftest.Webhook) -> None:
    assert webhook.get("/healthz") == (200, "ok\n")
    webhook.labels["shop"] = {"coral.io/inject": "true"}
    before = {r: webhook.server.metrics.count(r) for r in ("injected", "bad_request")}
    webhook.post(_review())
    webhook.post(b"nonsense")
    status, text = webhook.get("/metrics")
    assert status == 200
    assert f'coral_webhook_requests_total{{result="injected"}} {before["injected"] + 1}.0' in text
    assert f'coral_webhook_requests_total{{result="bad_request"}} {before["bad_request"] + 1}.0' \
        in text
    assert 'coral_webhook_request_duration_seconds_bucket{le="+Inf"}' in text
    assert "# TYPE coral_webhook_request_duration_seconds histogram" in text


def _served_serial(port: int, ca_file: str) -> int:
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="coral-webhook.coral-system.svc") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_rotated_certificate_reloaded_without_restart(tmp_path) -> None:
    """A new cert/key written over the files is served to the next connection."""
    ca_pem, ca_key = certs.generate_ca()
    (tmp_path / "ca.crt").write_bytes(ca_pem)

    def write_pair(stamp: int) -> int:
        cert, key = certs.serving_cert(ca_cert_pem=ca_pem, ca_key_pem=ca_key,
                                       service="coral-webhook", namespace="coral-system")
        for name, data in (("tls.crt", cert), ("tls.key", key)):
            (tmp_path / name).write_bytes(data)
            os.utime(tmp_path / name, ns=(stamp, stamp))  # distinct mtime even on coarse clocks
        return x509.load_pem_x509_certificate(cert).serial_number

    first = write_pair(1_000_000_000_000_000_000)
    srv, port = server.start_in_thread(cert_file=str(tmp_path / "tls.crt"),
                                       key_file=str(tmp_path / "tls.key"),
                                       settings=settings_mod.InjectSettings())
    try:
        assert _served_serial(port, str(tmp_path / "ca.crt")) == first
        second = write_pair(2_000_000_000_000_000_000)
        assert _served_serial(port, str(tmp_path / "ca.crt")) == second
        (tmp_path / "tls.crt").write_bytes(b"half-written")  # a broken rotation keeps the old pair
        assert _served_serial(port, str(tmp_path / "ca.crt")) == second
    finally:
        srv.shutdown()
        srv.server_close()


def test_tls_handshake_garbage_does_not_kill_server(webhook: conftest.Webhook) -> None:
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")  # plaintext to a TLS port
        raw.recv(100)
    assert webhook.get("/healthz")[0] == 200
