"""Issue 15, "A leaner agent": the DaemonSet manifest runs the agent with PYTHONOPTIMIZE=2
(docstrings and asserts compiled out; what it buys is read in bench pod_memory). The agent
must do its whole job that way: join, discover, exec through CRI, and refuse a bad config
with the same message as without it (its config is validated in a forked child that loads
pydantic under the same flag). The image's optimization-2 bytecode is checked by
tests/image/test_image_cri.py."""

from __future__ import annotations

import pathlib

from coral_lib import manifests
from coral_lib.manifests import daemonset
from coral_lib.manifests import settings as settings_mod
from tests.daemonset.conftest import registry
from tests.daemonset.test_cri_exec import _exec, runtime, web_pod  # noqa: F401
from tests.daemonset.test_node_config import _exit
from tests.support import coral_procs
from tests.support.coral_procs import wait_for


def _environ(pid: int) -> dict[str, str]:
    raw = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_daemonset_manifest_runs_the_agent_with_python_optimize_2():
    for overrides in ({}, {"observe_only": True}):
        objects = manifests.render("daemonset", settings_mod.build(overrides))
        (ds,) = [o for o in objects if o["kind"] == "DaemonSet"]
        (agent,) = ds["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in agent["env"]}
        assert env["PYTHONOPTIMIZE"] == "2", overrides
    assert daemonset.OPTIMIZE_ENV == {"name": "PYTHONOPTIMIZE", "value": "2"}


def test_optimized_daemonset_agent_joins_discovers_and_execs_through_cri(
        kubeapi, colony, node_agents, runtime, web_pod, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PYTHONOPTIMIZE", "2")  # as the manifest sets it (agent and CLI)
    agent = node_agents("node-a", flags=["--cri-socket", runtime.socket])
    coral_procs.wait_registered(colony, ["node-node-a"], timeout=60)
    assert _environ(agent.proc.pid)["PYTHONOPTIMIZE"] == "2"  # read once it has exec'd
    wait_for(lambda: {s["pod_name"] for s in registry(colony)} == {"web"}, timeout=30,
             what="pod web discovered")
    marker = _exec(colony, "--", "cat", "/tmp/marker")
    assert (marker["agent"], marker["rc"], marker["stdout"]) == ("node-node-a", 0, "in-app\n"), \
        (marker, agent.log()[-2000:])
    failing = _exec(colony, "--shell", "--", "echo oops >&2; exit 3")
    assert (failing["rc"], failing["stderr"]) == (3, "oops\n"), failing
    assert agent.proc.poll() is None, agent.log()[-3000:]


def test_optimized_agent_refuses_a_bad_config_with_the_same_message(
        kubeapi, colony, node_agents, monkeypatch):
    bad = {"discovery": {"kubernetes": {"pollInterval": "0s"}}}
    plain_code, plain_log = _exit(node_agents("node-b", extra=bad))
    monkeypatch.setenv("PYTHONOPTIMIZE", "2")
    code, log = _exit(node_agents("node-b", extra=bad))  # same file name
    assert (code, plain_code) == (2, 2), log
    # one log file per node, appended: the second run's message is its last line
    (plain,) = [line for line in plain_log.splitlines() if "coral: error:" in line]
    message = [line for line in log.splitlines() if "coral: error:" in line][-1]
    assert "discovery.kubernetes.pollInterval" in message and message == plain, log


def test_no_coral_module_relies_on_a_docstring_or_an_assert():
    """-OO drops docstrings and asserts: no coral_lib module may read a __doc__ or check
    anything a colony, a pod or a config can send with an assert. The one assert guards a
    call order inside the agent (a programming error)."""
    root = pathlib.Path(__file__).resolve().parents[2] / "coral_lib"
    asserts, docs = [], []
    for path in sorted(root.rglob("*.py")):
        if "_proto" in path.parts:
            continue
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("assert "):
                asserts.append(f"{path.relative_to(root)}: {line.strip()}")
            if "__doc__" in line:
                docs.append(f"{path.relative_to(root)}: {line.strip()}")
    assert docs == []
    assert asserts == ['agent/credentials.py: assert held is not None, "renew() before ensure()"']
