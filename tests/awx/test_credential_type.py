"""Issue 16, item 9 (AWX parts): "the credential type ships as a file plus an
`awx.awx.credential_type` example; the inventory source documented with it". The shipped
file's injectors are rendered the way AWX renders them (tests/support/awx.py); the example
is checked against the options of the awx.awx modules it calls. test_awx_job.py runs a job
in the execution environment with exactly these injectors."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import yaml

from tests.support import awx

ROOT = pathlib.Path(__file__).resolve().parents[2]
CREDENTIAL_TYPE = ROOT / "extensions" / "awx" / "credential_type_coral.yml"
EXAMPLE = ROOT / "extensions" / "awx" / "credential_type.yml"
BIN = pathlib.Path(sys.executable).parent


def test_credential_type_injectors_render_like_awx(tmp_path):
    """The shipped credential type gives the CORAL_* variables coral_lib reads, the CA as a
    file inside the EE's /runner, and no client certificate when none is given."""
    private = tmp_path / "job"
    env = awx.inject(awx.load_credential_type(CREDENTIAL_TYPE),
                     {"address": "colony:9443", "ca": "PEM", "token": "t0k", "client_cert": ""},
                     private)
    assert env["CORAL_COLONY_ADDRESS"] == "colony:9443"
    assert env["CORAL_TOKEN"] == "t0k"
    assert env["CORAL_CA_FILE"].startswith("/runner/env/")
    assert awx.host_path(env["CORAL_CA_FILE"], private).read_text() == "PEM"
    assert env["CORAL_CLIENT_CERT"] == "" and env["CORAL_CLIENT_KEY"] == ""
    typ = awx.load_credential_type(CREDENTIAL_TYPE)
    secret = {f["id"] for f in typ["inputs"]["fields"] if f.get("secret")}
    assert secret == {"token", "client_key"}


def test_awx_credential_type_example_uses_the_shipped_file_and_real_options():
    """The awx.awx example creates the type from the shipped file, and every option it
    passes exists in the awx.awx module it calls (ansible-doc of the installed collection)."""
    plays = yaml.safe_load(EXAMPLE.read_text())
    assert "credential_type_coral.yml" in plays[0]["vars"]["coral_awx_type"]
    calls = [(key, task[key]) for task in plays[0]["tasks"] for key in task
             if key.startswith("awx.awx.")]
    doc = subprocess.run([str(BIN / "ansible-doc"), "-j", *sorted({m for m, _ in calls})],
                         capture_output=True, text=True, timeout=300)
    assert doc.returncode == 0, doc.stderr
    docs = json.loads(doc.stdout)
    for module, args in calls:
        options = docs[module]["doc"]["options"]
        assert set(args) <= set(options), (module, set(args) - set(options))
    syntax = subprocess.run([str(BIN / "ansible-playbook"),
                             "--syntax-check", str(EXAMPLE)], capture_output=True, text=True,
                            timeout=120, cwd=EXAMPLE.parent)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
