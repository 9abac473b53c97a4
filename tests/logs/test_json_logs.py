"""Issue 13, "Logs": `--log-format json` on colony, agents and webhook with stable field
names (op id, identity, agent, target, outcome); never secrets.

A real colony and agent run with `--log-format json`: an exec whose argv carries a
password, a join with a forged token, a bearer token in a refused request. Every line each
process wrote is one JSON object with the documented names, and no token, join token or key
the processes hold appears anywhere in them.
"""

from __future__ import annotations

import io
import json
import logging
import pathlib
import subprocess
import sys
import time

import pytest

from coral_lib import client, logs
from tests.support import coral_procs
from tests.webhook import conftest as webhook_conftest

SECRET_ARG = "hunter2-not-for-logs"
FORGED_JOIN = "forged-join-token-0123456789abcdef"
BASE = {"ts", "level", "logger", "msg"}
NAMES = BASE | set(logs.FIELDS) | {"error"}


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    for line in parsed:
        assert BASE <= set(line) <= NAMES, line
    return parsed


def _key_material(path: pathlib.Path) -> list[str]:
    """The secret part of a key/token file: PEM body lines, or the whole value."""
    text = path.read_text()
    if "-----BEGIN" in text:
        return [line for line in text.splitlines() if line and not line.startswith("-----")]
    return [text.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logs")
    colony = coral_procs.Colony(tmp / "colony", args=("--log-format", "json")).start()
    agent = coral_procs.Agent(tmp / "agents", colony, agent_id="logged-1",
                              args=("--log-format", "json")).start()
    intruder = coral_procs.Agent(tmp / "agents", colony, agent_id="intruder-1",
                                 join_token=FORGED_JOIN, args=("--log-format", "json"))
    try:
        coral_procs.wait_registered(colony, ["logged-1"])
        with colony.client() as c:
            out = c.exec(client.Targeting(agent="logged-1"),
                         argv=["echo", f"--password={SECRET_ARG}"])
            assert out.results[0]["status"] == "ok"
        bad = coral_procs.coral("agents", env={**colony.operator_env,
                                               "CORAL_TOKEN": "wrong-bearer-token-value-xyz",
                                               "CORAL_TOKEN_FILE": ""})
        assert bad.returncode != 0
        intruder.start()
        coral_procs.wait_for(lambda: "refused" in colony.log_path.read_text(), timeout=30,
                             what="the forged join refused")
        time.sleep(0.5)
    finally:
        intruder.stop()
        agent.stop()
        colony.stop()
    join_tokens = [agent.token_path.read_text().strip()]
    secrets = [SECRET_ARG, FORGED_JOIN, "wrong-bearer-token-value-xyz", *join_tokens]
    for name in ("admin.token", "audit.key", "ca.key", "server.key", "checkpoint.key"):
        secrets += _key_material(colony.data_dir / name)
    secrets += _key_material(agent.state_dir / "logged-1.key")
    return {"colony": colony.log_path.read_text(), "agent": agent.log(),
            "intruder": intruder.log()}, secrets


def test_json_logs_have_stable_fields_and_no_secrets(run) -> None:
    texts, secrets = run
    colony = _json_lines(texts["colony"])
    agent = _json_lines(texts["agent"])
    _json_lines(texts["intruder"])
    finished = [line for line in colony if line.get("outcome") == "ok" and line.get("op_id")]
    assert finished, "the colony logs each target's outcome"
    line = finished[0]
    assert line["identity"] == "admin" and line["agent"] == "logged-1"
    assert line["target"] and line["op_id"].count("/") >= 1
    assert any(row.get("agent") == "logged-1" and row.get("outcome") == "linked"
               for row in colony)
    assert any(row.get("outcome") == "refused" for row in colony), "the forged join"
    assert any(row.get("target") == "host" and row.get("outcome") == "exit 0" for row in agent)
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret reached the {name} log"


def test_webhook_serves_with_json_logs(tmp_path) -> None:
    """`coral webhook serve --log-format json`: the listening line and one line per injected
    pod with the review uid (op_id), namespace/pod (target) and outcome."""
    subprocess.run([sys.executable, "-m", "coral_lib.cli", "webhook", "certs", "--ip",
                    "127.0.0.1", "--out", str(tmp_path)], check=True, capture_output=True)
    (tmp_path / "labels.yaml").write_text("shop:\n  coral.io/inject: 'true'\n")
    port = coral_procs.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coral_lib.cli", "webhook", "serve", "--log-format", "json",
         "--listen", f"127.0.0.1:{port}", "--cert", str(tmp_path / "tls.crt"), "--key",
         str(tmp_path / "tls.key"), "--namespace-labels", str(tmp_path / "labels.yaml")],
        stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        hook = webhook_conftest.Webhook(None, port, str(tmp_path / "ca.crt"), {})
        review = webhook_conftest.admission_review(
            webhook_conftest.load_case("simple").pod, namespace="shop")
        status, _ = hook.post(review)
        assert status == 200
        second = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    listening, reviewed = _json_lines(first + second)
    assert listening["msg"] == f"coral webhook listening on 127.0.0.1:{port}"
    assert reviewed["outcome"] == "injected" and reviewed["target"].startswith("shop/")
    assert reviewed["op_id"] == review["request"]["uid"]
    assert all(part not in first + second for part in _key_material(tmp_path / "tls.key"))


def _formatted(fmt: str, *args, extra=None, exc=None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    logger = logging.getLogger(f"tests.logs.{fmt}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error(*args, extra=extra, exc_info=exc)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_lines_are_redacted_in_both_formats(fmt) -> None:
    logs.known("registered-secret-value-123")
    try:
        raise ValueError("Authorization: Bearer abcdefgh12345678")
    except ValueError as exc:
        out = _formatted(fmt, "ran %s with %s", "mysql -phunter2", "registered-secret-value-123",
                         extra=logs.fields(op_id="op1", target="ns/p/c",
                                           outcome="token=zzz-secret"), exc=exc)
    for secret in ("hunter2", "registered-secret-value-123", "abcdefgh12345678", "zzz-secret"):
        assert secret not in out
    if fmt == "json":
        line = json.loads(out)
        assert line["op_id"] == "op1" and line["target"] == "ns/p/c" and "error" in line
    else:
        assert "op_id=op1 target=ns/p/c" in out


def test_unknown_log_format_is_refused() -> None:
    done = coral_procs.coral("colony", "start", "--log-format", "xml")
    assert done.returncode == 2 and "--log-format" in done.stderr
