"""Issue 6, "Connection plugin coral.mesh.coral: lets ordinary Ansible tasks (command, copy,
slurp, setup) run inside a pod's container through the agent, with the same RBAC and audit
as coral exec" -- through a real ansible-playbook with the coral.mesh.colony inventory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket

import pytest

from tests.ansible_fleet.conftest import save_results

# pod-harness containers have no HOME, so `~` does not expand: keep Ansible's remote temp
# directory absolute (real container runtimes set HOME)
REMOTE_TMP = "/tmp/.ansible-coral-test"


@pytest.fixture(scope="module")
def pod_play(fleet):
    """One playbook over the pod host: setup (min), command, copy (small + multi-chunk
    binary), slurp, fetch; results saved per host."""
    big = fleet.work / "big.bin"
    big.write_bytes(os.urandom(300_000))  # > 3 put chunks of 90,000 bytes
    fetched = fleet.work / "fetched"
    tasks = [
        {"ansible.builtin.setup": {"gather_subset": ["min"]}, "register": "facts"},
        {"ansible.builtin.command": "cat /srv/coral-marker", "register": "marker"},
        {"ansible.builtin.copy": {"content": "hello from ansible\n",
                                  "dest": "/tmp/coral-fleet-copy.txt"}, "register": "copied"},
        {"ansible.builtin.copy": {"src": str(big), "dest": "/tmp/coral-fleet-big.bin"},
         "register": "copied_big"},
        {"ansible.builtin.slurp": {"src": "/srv/coral-marker"}, "register": "slurped"},
        {"ansible.builtin.fetch": {"src": "/tmp/coral-fleet-big.bin", "dest": f"{fetched}/",
                                   "flat": False}, "register": "fetched"},
        {"ansible.builtin.command": "cat /tmp/coral-fleet-copy.txt", "register": "readback"},
    ]
    names = [t["register"] for t in tasks]
    source = fleet.inventory_file("conn", namespaces=["payments"])
    run = fleet.playbook([{"hosts": "namespace_payments", "gather_facts": False,
                           "vars": {"ansible_remote_tmp": REMOTE_TMP},
                           "tasks": [*tasks, save_results(names, fleet.work / "pod")]}],
                         inventory=source, name="pod-play")
    return run, big, fetched


def test_tasks_run_inside_the_pods_container(fleet, pod_play):
    """command/setup/slurp see the container-only /srv/coral-marker and the pod hostname."""
    run, _, _ = pod_play
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    out = fleet.results("pod", "shop-7d9f.payments")
    assert out["marker"]["stdout"] == "web"
    assert base64.b64decode(out["slurped"]["content"]) == b"web"
    assert out["facts"]["ansible_facts"]["ansible_hostname"] == "shop-7d9f"
    assert out["readback"]["stdout"] == "hello from ansible"
    assert not os.path.exists("/srv/coral-marker") or \
        open("/srv/coral-marker").read() != "web"  # the controller cannot see it


def test_copy_and_fetch_of_a_multi_chunk_binary_file(fleet, pod_play):
    run, big, fetched = pod_play
    assert run.returncode == 0, run.stdout[-4000:]
    out = fleet.results("pod", "shop-7d9f.payments")
    assert out["copied_big"]["checksum"] == hashlib.sha1(big.read_bytes()).hexdigest()
    got = fetched / "shop-7d9f.payments" / "tmp" / "coral-fleet-big.bin"
    assert got.read_bytes() == big.read_bytes()


def test_every_connection_command_is_in_the_colony_audit(fleet, pod_play):
    """Each module run (and every put/fetch chunk) is a started+finished pair, requester
    admin, verb exec, on the sidecar agent and the web container."""
    run, _, _ = pod_play
    assert run.returncode == 0
    started = [r for r in fleet.audit(kind="started", agent="pod-payments.shop-7d9f")
               if REMOTE_TMP in r["command"] or "coral-put" in r["command"]
               or "coral-fetch" in r["command"]]
    commands = " ".join(r["command"] for r in started)
    for module in ("setup", "command", "copy", "slurp", "stat"):
        assert f"AnsiballZ_{module}.py" in commands, module
    assert commands.count("coral-fetch") >= 4  # 300,000 bytes in 90,000-byte chunks
    assert {(r["requester"], r["verb"]) for r in started} == {("admin", "exec")}
    assert all(r["op_id"].endswith("/web") for r in started)
    finished = {r["op_id"] for r in fleet.audit(kind="finished")}
    assert all(r["op_id"] in finished for r in started)


def test_copied_file_contents_stay_out_of_the_audit_log(fleet, pod_play):
    """Files travel as stdin, which is not audited: a copied secret must not land there."""
    run, _, _ = pod_play
    assert run.returncode == 0
    everything = json.dumps(fleet.audit())
    assert "coral-put" in everything
    for form in (b"hello from ansible", base64.b64encode(b"hello from ansible")):
        assert form.decode() not in everything


def test_tasks_on_a_host_agent(fleet):
    source = fleet.inventory_file("hostconn", host_per="agent", agents=["host-1"])
    tasks = [{"ansible.builtin.setup": {"gather_subset": ["min"]}, "register": "facts"},
             {"ansible.builtin.stat": {"path": "/srv/coral-marker"}, "register": "marker"}]
    # the host agent inherits this test's PATH (which may hold pyenv shims): name the system
    # Python instead of relying on interpreter discovery
    run = fleet.playbook([{"hosts": "host-1", "gather_facts": False,
                           "vars": {"ansible_python_interpreter": "/usr/bin/python3"},
                           "tasks": [*tasks, save_results(["facts", "marker"],
                                                          fleet.work / "host")]}],
                         inventory=source, name="host-play")
    assert run.returncode == 0, run.stdout[-4000:]
    out = fleet.results("host", "host-1")
    assert out["facts"]["ansible_facts"]["ansible_hostname"] == socket.gethostname().split(".")[0]
    assert out["marker"]["stat"]["exists"] == os.path.exists("/srv/coral-marker")
    assert any("AnsiballZ_stat.py" in r["command"]
               for r in fleet.audit(kind="started", agent="host-1"))


def test_rbac_denial_through_the_connection_plugin(fleet):
    """A read-only identity cannot run tasks: the colony refuses exec and audits it."""
    source = fleet.inventory_file("viewer", namespaces=["payments"])
    env = {"CORAL_TOKEN": fleet.colony.tokens["viewer"]}
    run = fleet.playbook([{"hosts": "namespace_payments", "gather_facts": False,
                           "vars": {"ansible_remote_tmp": REMOTE_TMP},
                           "tasks": [{"ansible.builtin.command": "cat /srv/coral-marker"}]}],
                         inventory=source, name="viewer-play", env=env)
    assert run.returncode != 0
    assert "UNREACHABLE" in run.stdout and "shop-7d9f.payments" in run.stdout
    assert "exec" in run.stdout and "viewer" in run.stdout, run.stdout[-3000:]
    refused = [r for r in fleet.audit(requester="viewer") if r["kind"] != "started"]
    assert refused, "the colony did not audit the refusal"
