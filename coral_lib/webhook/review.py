"""AdmissionReview in, AdmissionReview out: decode, call inject(), encode. No sockets here.

Three kinds of answer:
* malformed input (not JSON, not an AdmissionReview, no request.uid) -> MalformedReview,
  which the server turns into HTTP 400 with the message;
* a review it cannot handle (other apiVersion, no usable Pod, an internal error) ->
  allowed: true, no patch, one `warnings` entry saying why;
* otherwise allowed: true with a base64 JSONPatch when inject() returned one.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from coral_lib.webhook import inject
from coral_lib.webhook import settings as settings_mod

API_VERSION = "admission.k8s.io/v1"
LabelsLookup = Callable[[str], Mapping[str, str]]
log = logging.getLogger(__name__)


class MalformedReview(ValueError):
    """The body is not an AdmissionReview we can even answer; the message says what is."""


def decode(body: bytes) -> dict[str, Any]:
    """Parse and check the envelope; MalformedReview names what was wrong."""
    try:
        review = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedReview(f"request body is not JSON: {exc}") from None
    if not isinstance(review, dict):
        raise MalformedReview("request body must be a JSON object (an AdmissionReview)")
    if review.get("kind") != "AdmissionReview":
        raise MalformedReview(f"kind must be AdmissionReview, got {review.get('kind')!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("AdmissionReview.request must be an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("AdmissionReview.request.uid must be a non-empty string")
    return review


def respond(
    review: dict[str, Any],
    *,
    settings: settings_mod.InjectSettings,
    labels_lookup: LabelsLookup,
) -> tuple[dict[str, Any], str]:
    """Answer a decoded review: (AdmissionReview response, result label for metrics)."""
    request = review["request"]
    api_version = review.get("apiVersion")
    if api_version != API_VERSION:
        return _answer(review, warning=f"unsupported apiVersion {api_version!r}; "
                       f"only {API_VERSION} is handled, pod admitted unchanged"), "warning"
    if not _is_pod_create(request):
        return _answer(review), "ignored"
    pod = request.get("object")
    if not isinstance(pod, dict):
        return _answer(review, warning="request.object is not a Pod object; "
                       "admitted unchanged"), "warning"
    namespace = _namespace(request, pod)
    warnings: list[str] = []
    try:
        labels = labels_lookup(namespace)
    except Exception as exc:  # any lookup failure degrades, never blocks admission
        labels = {}
        warnings.append(f"coral: labels of namespace {namespace} unavailable ({exc}); "
                        "only the pod's own coral.io/inject was considered")
    try:
        patch = inject.inject(pod, labels, settings, namespace=namespace)
    except inject.InvalidPod as exc:
        return _answer(review, warning=f"coral: not injected: {exc}"), "warning"
    except Exception:  # a bug must never block pod creation
        log.exception("inject failed for pod in namespace %s", namespace)
        return _answer(review, warning="coral: internal error, not injected"), "warning"
    return _answer(review, patch=patch, warnings=warnings), ("injected" if patch else "skipped")


def encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode()


def _answer(
    review: dict[str, Any],
    *,
    patch: list[dict[str, Any]] | None = None,
    warning: str | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(
            json.dumps(patch, separators=(",", ":")).encode()
        ).decode("ascii")
    all_warnings = [*(warnings or []), *([warning] if warning else [])]
    if all_warnings:
        response["warnings"] = all_warnings
    api_version = review.get("apiVersion")
    return {
        "apiVersion": api_version if isinstance(api_version, str) else API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    }


def _is_pod_create(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind")
    resource = request.get("resource")
    return (
        isinstance(kind, dict)
        and kind.get("group", "") == ""
        and kind.get("kind") == "Pod"
        and (not isinstance(resource, dict) or resource.get("resource", "pods") == "pods")
        and not request.get("subResource")
        and request.get("operation", "CREATE") == "CREATE"
    )


def _namespace(request: Mapping[str, Any], pod: Mapping[str, Any]) -> str:
    namespace = request.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        metadata = pod.get("metadata")
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) and namespace else "default"


def subject(review: Mapping[str, Any]) -> str:
    """namespace/name (or generateName*) of the reviewed pod, printable and bounded: the
    `target` of the webhook's log line."""
    request = review.get("request") or {}
    pod = request.get("object") if isinstance(request.get("object"), dict) else {}
    metadata = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    name = request.get("name") or metadata.get("name") or (
        f"{metadata.get('generateName', '')}*" if metadata.get("generateName") else "")
    text = f"{_namespace(request, pod)}/{name if isinstance(name, str) else ''}"
    return "".join(c if c.isprintable() else "?" for c in text)[:300]
