"""Issue 3 acceptance, end to end: a sidecar agent process in a real pod, through the colony."""

from __future__ import annotations

import json
import os
import signal

from coral_lib import client
from coral_lib._proto.coral.agent.v1 import agent_pb2
from tests.support import coral_procs


def services(colony, agent_id: str) -> set[tuple[str, int, str]]:
    with colony.client() as c:
        return {(s["component_name"], s["port"], s["container_name"])
                for s in c.list_services(agent=agent_id)}


def exec_json(colony, *args) -> dict:
    run = coral_procs.coral("exec", "-o", "json", *args, env=colony.operator_env)
    return json.loads(run.stdout)["results"][0] if run.stdout.strip() else {"stderr": run.stderr}


def test_discovery_finds_exactly_the_app_containers_and_their_ports(colony, shop):
    pod, agent = shop
    assert services(colony, agent.agent_id) == {
        ("checkout", 8080, "web"), ("cache", 9090, "cache"), ("worker", 0, "worker")}
    with colony.client() as c:
        row = c.list_services(agent=agent.agent_id, name="checkout")[0]
        (mode,) = [a["runtime_mode"] for a in c.list_agents() if a["agent_id"] == agent.agent_id]
    assert (row["namespace"], row["pod_name"], row["provenance"]) == (
        "payments", "shop-7d9f", "discovered")
    assert mode == "k8s_sidecar"


def test_exec_runs_inside_the_chosen_container(colony, shop):
    pod, agent = shop
    web = exec_json(colony, "--agent", agent.agent_id, "-c", "web", "--shell", "--",
                    "cat /srv/coral-marker; echo; hostname")
    assert web["stdout"] == "web\nshop-7d9f\n", web
    cache = exec_json(colony, "--service", "cache", "--", "cat", "/srv/coral-marker")
    assert cache["stdout"] == "cache" and cache["container"] == "cache"


def test_unknown_container_lists_the_pods_containers(colony, shop):
    pod, agent = shop
    row = exec_json(colony, "--agent", agent.agent_id, "-c", "nope", "--", "true")
    assert "no container 'nope'" in row["error"]
    for name in ("web", "cache", "worker"):
        assert name in row["error"]


def test_target_outside_the_pod_is_refused_and_recorded(colony, shop):
    pod, agent = shop
    row = exec_json(colony, "--agent", agent.agent_id, "--pod", "other-pod", "-n", "payments",
                    "--", "true")
    assert row["status"] == "refused" and "serves pod payments/shop-7d9f only" in row["error"]
    with colony.client() as c:
        ends = [r for r in c.audit(kind="finished") if r["status"] == "refused"]
    assert ends and "other-pod" in ends[-1]["error"]


def test_container_started_later_is_found_and_exited_one_removed(colony, shop):
    pod, agent = shop
    pod.add_container("late", ["python3", "-m", "http.server", "7070", "--bind", "127.0.0.1"],
                      port=7070)
    coral_procs.wait_for(lambda: ("late", 7070, "late") in services(colony, agent.agent_id),
                         timeout=5, what="late container registered")
    pod.stop_container("late")
    coral_procs.wait_for(lambda: ("late", 7070, "late") not in services(colony, agent.agent_id),
                         timeout=5, what="late container removed")


def test_shell_in_the_app_container(colony, shop):
    pod, agent = shop

    def inputs():
        yield agent_pb2.ShellInput(stdin=b"cat /srv/coral-marker; echo; exit 5\n")

    data, code = b"", None
    with colony.client() as c:
        for out in c.shell(client.Targeting(agent=agent.agent_id, container="web"),
                           inputs=inputs()):
            data += out.data
            code = out.exit_code if out.WhichOneof("output") == "exit_code" else code
    assert b"web" in data and code == 5


def test_agent_status_reports_sidecar_context(colony, shop):
    pod, agent = shop
    run = coral_procs.coral("agent", "status", "--socket", str(agent.work / "agent.sock"))
    body = json.loads(run.stdout)
    assert body["mode"] == "k8s_sidecar" and body["visibility"] == "own_pod"
    assert body["exec_backend"] == "chroot" and body["source"].startswith("agent at")


def test_sidecar_agent_deregisters_on_sigterm_with_an_audit_record(colony, shop):
    """Issue 16, "Agents that go away leave": the pod is deleted, kubelet sends SIGTERM to
    its native sidecar, the agent deregisters and its services leave the registry."""
    pod, agent = shop
    # kubelet signals the container's own process; the harness's nsenter parent does not
    # forward signals, so signal the agent process in the sidecar's cgroup directly.
    (pid,) = [int(p) for p in open(f"{agent.cgroup}/cgroup.procs").read().split()]
    os.kill(pid, signal.SIGTERM)
    coral_procs.wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=15,
                         what="the sidecar agent stopped")
    with colony.client() as c:
        assert agent.agent_id not in {a["agent_id"] for a in c.list_agents()}, agent.log()
        assert c.list_services(agent=agent.agent_id) == []
        (record,) = [r for r in c.audit(kind="agent") if r["event"] == "deregistered"]
    assert (record["agent_id"], record["by"]) == (agent.agent_id, f"agent:{agent.agent_id}")
