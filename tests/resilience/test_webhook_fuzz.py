"""Webhook fuzz (issue 7 resilience): 10,000 generated AdmissionReviews (hypothesis) over
HTTPS to a real `coral webhook serve` process; zero crashes, every answer a valid
AdmissionReview (patch applies to the pod) or a 400 with a message, and the process is
alive and healthy afterwards.

CORAL_FUZZ_EXAMPLES sets the number of reviews (default 10,000 here).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings

from tests.support import coral_procs
from tests.webhook import test_fuzz_server as server_fuzz

EXAMPLES = int(os.environ.get("CORAL_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


class Served:
    """A `coral webhook serve` process and one keep-alive client, reopened after a 400."""

    def __init__(self, folder) -> None:
        subprocess.run([*coral_procs.CORAL, "webhook", "certs", "--ip", "127.0.0.1",
                        "--out", str(folder)], check=True, capture_output=True)
        (folder / "labels.json").write_text(json.dumps(
            {"shop": {"coral.io/inject": "true"}, "": {"coral.io/inject": "true"}}))
        self.port = coral_procs.free_port()
        self.log = folder / "webhook.log"
        self.proc = subprocess.Popen(
            [*coral_procs.CORAL, "webhook", "serve", "--listen", f"127.0.0.1:{self.port}",
             "--cert", str(folder / "tls.crt"), "--key", str(folder / "tls.key"),
             "--namespace-labels", str(folder / "labels.json")],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        self.context = ssl.create_default_context(cafile=str(folder / "ca.crt"))
        coral_procs.wait_for(self._up, what="webhook serving")
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                           timeout=10)

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-2000:]
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, bytes]:
        conn = self._connect()
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request("POST", "/mutate", body=body,
                                  headers={"Content-Type": "application/json"})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = self._connect()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    hook = Served(tmp_path_factory.mktemp("webhook-fuzz"))
    yield hook
    hook.stop()


COUNT = {"n": 0}


@FUZZ
@given(body=server_fuzz.bodies)
def test_webhook_fuzz_10000_reviews_every_answer_valid(served: Served, body: bytes) -> None:
    """Issue 7 resilience: webhook fuzz, valid AdmissionReview or 400 for every review."""
    assert served.proc.poll() is None, f"webhook died: {served.log.read_text()[-2000:]}"
    server_fuzz.check_answer(*served.post(body), body)
    COUNT["n"] += 1


def test_webhook_fuzz_zero_crashes_server_alive_and_counted(served: Served) -> None:
    assert COUNT["n"] >= min(EXAMPLES, 1000), f"only {COUNT['n']} reviews were sent"
    assert served.proc.poll() is None
    assert served.get("/healthz") == (200, b"ok\n")
    status, metrics = served.get("/metrics")
    assert status == 200 and metrics
    time.sleep(0.1)
    assert "Traceback" not in served.log.read_text()
