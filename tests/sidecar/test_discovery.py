"""Issue 3 acceptance: sidecar discovery finds exactly the app containers and their ports,
keeps up with container starts and exits, and names an unknown --container clearly."""

from __future__ import annotations

import time

import pytest

from coral_lib import service
from coral_lib.discovery import procfs
from tests.runtime import conftest as runtime_fixtures
from tests.sidecar import conftest


def _by_name(containers):
    return {c.name: c for c in containers}


def test_discovery_finds_exactly_the_app_containers_and_their_ports(shop_pod):
    found = procfs.scan(proc_root=shop_pod.proc_root)
    worker_id = shop_pod.containers["worker"].container_id
    by_name = _by_name(found)
    assert set(by_name) == {"web", "cache", worker_id[:12]}  # never the pause process
    assert by_name["web"].ports == (8080,)  # listener held by a child of the first process
    assert len(by_name["web"].pids) == 2
    assert by_name["cache"].ports == (9090,)
    assert by_name[worker_id[:12]].ports == ()
    for name, c in by_name.items():
        spec = shop_pod.containers.get(name) or shop_pod.containers["worker"]
        assert c.container_id == spec.container_id
        assert c.pod_uid == shop_pod.uid


def test_service_names_follow_otel_then_container_name_then_id_prefix(shop_pod):
    infos = procfs.services(procfs.scan(proc_root=shop_pod.proc_root), node_name="node-a",
                            namespace="shop", pod_name="shop-7d9f")
    worker_id = shop_pod.containers["worker"].container_id
    assert sorted((i.component_name, i.container_name, i.port) for i in infos) == sorted([
        ("checkout", "web", 8080), ("cache", "cache", 9090),
        (worker_id[:12], worker_id[:12], 0)])
    for info in infos:
        assert info.provenance is service.Provenance.DISCOVERED
        assert (info.node_name, info.namespace, info.pod_name) == ("node-a", "shop", "shop-7d9f")
        assert info.pid > 1


def test_names_from_cri_win_over_the_env(shop_pod):
    worker_id = shop_pod.containers["worker"].container_id
    names = {worker_id: "batch-worker", shop_pod.containers["cache"].container_id: "redis"}
    by_name = _by_name(procfs.scan(proc_root=shop_pod.proc_root, names=names))
    assert set(by_name) == {"web", "redis", "batch-worker"}
    assert by_name["web"].service_name == "checkout"


def test_agent_inside_the_pod_skips_its_own_container(shop_pod):
    """Scanning from a sidecar process (its /proc/self, the pod's /proc)."""
    answer = conftest.run_probe(shop_pod, "scan")
    names = sorted(c["name"] for c in answer["containers"])
    worker_id = shop_pod.containers["worker"].container_id
    assert names == sorted(["web", "cache", worker_id[:12]])
    ports = {c["name"]: c["ports"] for c in answer["containers"]}
    assert ports["web"] == [8080] and ports["cache"] == [9090]


def test_container_started_after_a_scan_is_found_and_an_exited_one_disappears(pod):
    pod.add_container("api", ["busybox", "httpd", "-f", "-p", "8000"], port=8000)
    assert [c.name for c in procfs.scan(proc_root=pod.proc_root)] == ["api"]
    pod.add_container("late", ["busybox", "httpd", "-f", "-p", "8001"], port=8001)
    found = _by_name(procfs.scan(proc_root=pod.proc_root))
    assert set(found) == {"api", "late"} and found["late"].ports == (8001,)
    pod.stop_container("api")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the kernel needs a moment to release the pids
        names = [c.name for c in procfs.scan(proc_root=pod.proc_root)]
        if names == ["late"]:
            break
        time.sleep(0.05)
    assert names == ["late"]


def test_unknown_container_error_lists_the_pods_containers(shop_pod):
    found = procfs.scan(proc_root=shop_pod.proc_root)
    with pytest.raises(procfs.ContainerNotFound) as err:
        procfs.select_container(found, "nginx")
    worker_id = shop_pod.containers["worker"].container_id
    assert str(err.value) == (
        f"no container 'nginx' in this pod; containers: web, cache, {worker_id[:12]}")


def test_select_container_by_name_id_prefix_and_default(shop_pod):
    found = procfs.scan(proc_root=shop_pod.proc_root)
    cache_id = shop_pod.containers["cache"].container_id
    assert procfs.select_container(found, "cache").container_id == cache_id
    assert procfs.select_container(found, cache_id[:12]).name == "cache"
    assert procfs.select_container(found).name == "web"  # first app container by start
    assert procfs.select_container(found, default="cache").name == "cache"
    assert procfs.select_container(found, default="gone").name == "web"


def test_missing_proc_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot list the /proc root"):
        procfs.scan(proc_root=str(tmp_path / "nope"))


def test_no_visible_container_is_a_clear_error():
    with pytest.raises(procfs.ContainerNotFound, match="shareProcessNamespace"):
        procfs.select_container([], "web")


def test_scan_of_a_recorded_sidecar_tree_skips_pause_and_self():
    root = runtime_fixtures.TESTDATA / "sidecar_containerd_v1" / "proc"
    found = procfs.scan(proc_root=str(root))
    assert [(c.name, c.pids) for c in found] == [("bbbbbbbbbbbb", (7,)), ("cccccccccccc", (9,))]


def test_scan_groups_by_mount_namespace_without_container_ids():
    root = runtime_fixtures.TESTDATA / "sidecar_cgroupns_v2" / "proc"
    found = procfs.scan(proc_root=str(root))
    assert [(c.key, c.pids, c.container_id) for c in found] == [("mnt:[4026531851]", (7,), "")]


def test_listen_table_parser():
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
            "  timeout inode\n"
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
            "        0 12345 1 0000000000000000 100 0 0 10 0\n"
            "   1: 0100007F:1F91 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0"
            "        0 12346 1 0000000000000000 100 0 0 10 0\n")
    assert procfs.parse_listen_inodes(text) == {12345: 8080}
