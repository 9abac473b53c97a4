"""Direct unit tests of plugins/module_utils/coral.py (issue 15): argument specs and result
shaping live there; connecting and targeting are coral_lib.operator's."""

from __future__ import annotations

import pytest

from coral_lib import errors
from coral_lib.operator import connect
from tests.plugins.conftest import plugin


@pytest.fixture(scope="module")
def utils():
    return plugin("module_utils.coral")


def test_specs_are_fresh_copies_and_carry_no_default_address(utils):
    spec = utils.connection_spec()
    spec["colony_token"]["no_log"] = False
    assert utils.connection_spec()["colony_token"]["no_log"] is True  # no shared mutation
    assert "default" not in utils.connection_spec()["colony_address"]  # connect decides
    assert set(utils.targeting_spec()) == {"service", "agent", "selector", "all", "pod",
                                           "namespace", "container", "node"}


def test_connect_kwargs_map_module_options_onto_operator_connect(utils, tmp_path):
    params = {"colony_address": "colony:1", "colony_ca_file": "", "colony_token": "t",
              "colony_token_file": None, "other": "x"}
    kwargs = utils.connect_kwargs(params.get)
    assert kwargs == {"address": "colony:1", "ca_file": None, "token": "t", "token_file": None,
                      "client_cert": None, "client_key": None, "tls_server_name": None,
                      "connect_timeout": None}
    settings = connect.resolve(**kwargs, environ={"CORAL_CA_FILE": "/env/ca.crt"})
    assert (settings.address, settings.ca_file, settings.token) == ("colony:1", "/env/ca.crt",
                                                                    "t")


def test_module_targeting_is_the_operator_builder(utils):
    params = dict.fromkeys(utils.targeting_spec())
    params.update(service="api", all=True, node="node-a")
    built = utils.targeting(params)
    assert (built.service, built.all, built.node) == ("api", True, "node-a")
    params.update(service=None, all=False, node=None, container="app")
    with pytest.raises(errors.NoTargets, match="no targeting given"):
        utils.targeting(params)
    params.update(container=None, namespace="shop")  # issue 16: --namespace alone works
    assert utils.targeting(params).namespace == "shop"


def test_result_rows_keep_the_documented_keys_and_fill_status(utils):
    raw = {"agent": "web-1", "service": "api", "namespace": "", "pod": "", "container": "",
           "node": "n", "rc": 0, "stdout": "hi\n", "stderr": "", "duration": 0.1,
           "truncated": False, "timed_out": False, "error": None, "status": "",
           "audit_id": 7, "secret_field": "dropped"}
    row = utils.result_row(raw)
    assert set(row) == set(utils.RESULT_KEYS) | {"stdout_lines", "stderr_lines"}
    assert row["status"] == "ok" and row["error"] == ""
    assert (row["stdout_lines"], row["stderr_lines"], row["finished_audit_id"]) == (["hi"], [], 0)
    bad = utils.result_row(dict(raw, rc=2))
    timed = utils.result_row(dict(raw, agent="db-1", service="", rc=-1, timed_out=True,
                                  status="timeout"))
    assert bad["status"] == "failed"
    failed = utils.failed_rows([row, bad, timed])
    assert failed == [bad, timed]
    assert utils.failure_message(failed, 3) == \
        "2 of 3 targets failed: web-1/api: rc=2; db-1: timed out"


def test_target_row_keeps_the_documented_keys_of_the_client_target_shape(utils):
    """The modules return targets in the client's one shape (coral_lib.client.target_dict)."""
    from coral_lib import client
    from coral_lib._proto.coral.colony.v1 import colony_pb2
    target = client.target_dict(colony_pb2.Target(agent_id="web-1", pod="p"))
    assert utils.target_row(target) == dict(
        agent="web-1", service="", node="", namespace="", pod="p", container="")
    assert utils.target_row(dict(target, extra="x")) == utils.target_row(target)


def test_item7_collection_and_coral_lib_versions_are_one(utils):
    """Issue 16 item 7: "check that coral_lib's version matches the collection's"."""
    import pathlib

    import yaml

    import coral_lib

    root = pathlib.Path(__file__).resolve().parents[2]
    galaxy = yaml.safe_load((root / "galaxy.yml").read_text())["version"]
    assert utils.COLLECTION_VERSION == galaxy == coral_lib.__version__
    assert utils.version_problem(galaxy) == ""
    assert "coral-lib 0.0.9 is installed but this coral.mesh collection is " + galaxy in \
        utils.version_problem("0.0.9")
    hint = utils.INSTALL_HINT % "/usr/bin/python3"
    assert "/usr/bin/python3 -m pip install /tmp/coral-lib-src" in hint
