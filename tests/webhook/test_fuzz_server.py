"""Fuzz the HTTPS server (hypothesis): thousands of malformed and random reviews, every
answer is a valid AdmissionReview or a 400, and the server never dies.

CORAL_FUZZ_EXAMPLES scales the example count (default keeps the CI run to seconds).
"""

from __future__ import annotations

import base64
import http.client
import json
import os

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.webhook import conftest
from tests.webhook import test_fuzz_inject as pure

EXAMPLES = int(os.environ.get("CORAL_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

kinds = st.fixed_dictionaries(
    {}, optional={"group": st.sampled_from(["", "apps"]) | pure.json_values,
                  "version": st.just("v1"), "kind": st.sampled_from(["Pod", "Deployment"])
                  | pure.json_values},
) | pure.json_values
requests = st.fixed_dictionaries(
    {},
    optional={
        "uid": st.text(min_size=1, max_size=8) | pure.json_values,
        "kind": kinds,
        "namespace": st.sampled_from(["shop", "kube-system", ""]) | pure.json_values,
        "operation": st.sampled_from(["CREATE", "UPDATE"]) | pure.json_values,
        "object": pure.pods | pure.json_values,
        "subResource": st.none() | st.text(max_size=5),
    },
) | pure.json_values
reviews = st.fixed_dictionaries(
    {},
    optional={"apiVersion": st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
              | pure.json_values,
              "kind": st.sampled_from(["AdmissionReview"]) | pure.json_values,
              "request": requests},
)
pod_kind = {"group": "", "version": "v1", "kind": "Pod"}
good_containers = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["app", "web", "db"]),
                                                  "image": st.just("x")}), min_size=1,
                           max_size=3, unique_by=lambda c: c["name"])
likely_pods = st.fixed_dictionaries(
    {"spec": st.fixed_dictionaries({"containers": good_containers},
                                   optional={"initContainers": good_containers,
                                             "shareProcessNamespace": st.booleans(),
                                             "hostNetwork": st.booleans()})},
    optional={"metadata": st.fixed_dictionaries(
        {}, optional={"labels": pure.string_maps, "annotations": pure.string_maps})},
)
# Envelopes that pass decode(), so the fuzz also exercises inject() behind the server.
pod_reviews = st.fixed_dictionaries({
    "apiVersion": st.just("admission.k8s.io/v1"),
    "kind": st.just("AdmissionReview"),
    "request": st.fixed_dictionaries(
        {"uid": st.text(min_size=1, max_size=8), "kind": st.just(pod_kind),
         "namespace": st.sampled_from(["shop", "kube-system", "other"]),
         "object": likely_pods | pure.pods},
        optional={"operation": st.sampled_from(["CREATE", "CREATE", "DELETE"])}),
})
bodies = (
    pod_reviews.map(lambda r: json.dumps(r).encode())
    | reviews.map(lambda r: json.dumps(r).encode())
    | st.binary(max_size=64)
    | st.text(max_size=40).map(str.encode)
)


class Client:
    """One keep-alive connection, reopened if the server closed it (e.g. after a 400)."""

    def __init__(self, hook: conftest.Webhook) -> None:
        self.hook, self.conn = hook, hook.connection()

    def post(self, body: bytes) -> tuple[int, bytes]:
        try:
            return self.hook.post(body, conn=self.conn)
        except (http.client.HTTPException, ConnectionError):
            self.conn.close()
            self.conn = self.hook.connection()
            return self.hook.post(body, conn=self.conn)


def check_answer(status: int, payload: bytes, body: bytes) -> None:
    if status == 400:
        assert payload.startswith(b"bad request: ")
        return
    assert status == 200, (status, payload)
    answer = json.loads(payload)
    sent = json.loads(body)
    assert answer["kind"] == "AdmissionReview"
    assert isinstance(answer["apiVersion"], str)
    response = answer["response"]
    assert response["uid"] == sent["request"]["uid"]
    assert response["allowed"] is True
    assert set(response) <= {"uid", "allowed", "patch", "patchType", "warnings"}
    assert all(isinstance(w, str) for w in response.get("warnings", []))
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        jsonpatch.apply_patch(sent["request"]["object"], json.loads(base64.b64decode(
            response["patch"])))
    else:
        assert "patchType" not in response


@pytest.fixture(scope="module")
def client(webhooks: conftest.WebhookFactory) -> Client:
    from coral_lib.webhook import settings as settings_mod

    hook = webhooks(settings_mod.InjectSettings())
    hook.labels.update({"shop": {"coral.io/inject": "true"}, "": {"coral.io/inject": "true"}})
    return Client(hook)


@FUZZ
@given(body=bodies)
def test_fuzz_server_every_answer_is_review_or_400(client: Client, body: bytes) -> None:
    """Issue 5 acceptance (fuzz): random reviews over HTTPS; valid answer or 400."""
    check_answer(*client.post(body), body)


def test_server_alive_after_fuzz(client: Client) -> None:
    assert client.hook.get("/healthz") == (200, "ok\n")
    assert client.hook.server.metrics.count("bad_request") > 0
