"""`coral webhook certs|serve` as real processes: the rendered settings ConfigMap and a
labels file drive a served AdmissionReview end to end."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time

import pytest

from coral_lib import manifests
from tests.webhook import conftest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    subprocess.run([sys.executable, "-m", "coral_lib.cli", "webhook", "certs", "--ip",
                    "127.0.0.1", "--out", str(tmp_path)], check=True)
    settings = manifests.ManifestSettings(kubernetes_version="1.28", cert_mode="cert-manager")
    cm = next(o for o in manifests.render("webhook", settings) if o["kind"] == "ConfigMap")
    (tmp_path / "settings.json").write_text(cm["data"]["settings.json"])
    (tmp_path / "labels.yaml").write_text("shop:\n  coral.io/inject: 'true'\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coral_lib.cli", "webhook", "serve", "--listen",
         f"127.0.0.1:{port}", "--cert", str(tmp_path / "tls.crt"), "--key",
         str(tmp_path / "tls.key"), "--settings", str(tmp_path / "settings.json"),
         "--namespace-labels", str(tmp_path / "labels.yaml")],
        stderr=subprocess.PIPE,
    )
    hook = conftest.Webhook(None, port, str(tmp_path / "ca.crt"), {})
    for _ in range(100):
        try:
            if hook.get("/healthz")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    yield hook, proc
    proc.terminate()
    proc.wait(timeout=10)


def test_cli_serve_uses_settings_file_and_labels_file(served) -> None:
    hook, proc = served
    review = conftest.admission_review(conftest.load_case("simple").pod, namespace="shop")
    status, body = hook.post(review)
    assert status == 200
    patch = json.loads(base64.b64decode(json.loads(body)["response"]["patch"]))
    assert patch[-1]["path"] == "/spec/containers/-"  # kubernetes_version 1.28 from the file
    assert proc.poll() is None


@pytest.mark.parametrize("argv,message", [
    (["--listen", "nowhere"], b"HOST:PORT"),
    (["--settings", "/nonexistent.yaml"], b"settings file /nonexistent.yaml"),
    (["--cert", "/nonexistent.crt"], b"cannot start webhook"),
])
def test_cli_serve_bad_input_exits_2_with_message(tmp_path, argv, message) -> None:
    subprocess.run([sys.executable, "-m", "coral_lib.cli", "webhook", "certs",
                    "--out", str(tmp_path)], check=True)
    base = {"--listen": "127.0.0.1:0", "--cert": str(tmp_path / "tls.crt"),
            "--key": str(tmp_path / "tls.key")}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    args = [item for pair in base.items() for item in pair]
    done = subprocess.run([sys.executable, "-m", "coral_lib.cli", "webhook", "serve", *args],
                          capture_output=True, timeout=30)
    assert done.returncode == 2
    assert message in done.stderr
