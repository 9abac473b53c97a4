"""Acceptance (issue 4, "Real containerd"): pods created through CRI on the local containerd
from a locally built image, labelled as kubelet labels them; the harness cleans up."""

from __future__ import annotations

import os
import pathlib

import pytest

from coral_lib._proto.cri.runtime.v1 import api_pb2
from coral_lib.ops import cri
from tests.cri import conftest
from tests.support import containerd


def test_containerd_answers_cri_version(node):
    reply = node.runtime.Version(api_pb2.VersionRequest(version="v1"), timeout=5)
    assert reply.runtime_name == "containerd"
    assert reply.runtime_api_version.startswith("v1")
    assert 0 < node.startup_seconds < node.start_timeout
    print(f"containerd start -> CRI Version answered: {node.startup_seconds:.3f}s")


def test_probe_reports_running_runtime_and_rejects_other_paths(node, tmp_path):
    assert cri.probe(node.socket)
    assert not cri.probe(str(tmp_path / "absent.sock"))


def test_local_images_are_visible_to_cri(node):
    tags = {tag for image in node.images_service.ListImages(
        api_pb2.ListImagesRequest(), timeout=5).images for tag in image.repo_tags}
    assert {containerd.BUSYBOX_IMAGE, containerd.PAUSE_IMAGE} <= tags


def test_pod_created_through_cri_has_kubelet_labels(node, shop_pod):
    sandboxes = node.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(
        filter=api_pb2.PodSandboxFilter(id=shop_pod.sandbox_id)), timeout=5).items
    assert len(sandboxes) == 1 and sandboxes[0].state == api_pb2.SANDBOX_READY
    assert sandboxes[0].labels[cri.POD_UID_LABEL] == "uid-web-1"
    listed = node.runtime.ListContainers(api_pb2.ListContainersRequest(
        filter=api_pb2.ContainerFilter(pod_sandbox_id=shop_pod.sandbox_id)), timeout=5)
    by_name = {c.labels[cri.CONTAINER_NAME_LABEL]: c for c in listed.containers}
    assert set(by_name) == {"coral-agent", "app", "worker"}
    for container in by_name.values():
        assert container.state == api_pb2.CONTAINER_RUNNING
        assert container.labels[cri.POD_NAME_LABEL] == "web"
        assert container.labels[cri.POD_NAMESPACE_LABEL] == "shop"
        assert container.image.image == containerd.BUSYBOX_IMAGE


def test_container_cgroup_is_under_the_pod_cgroup_parent(backend, shop_pod):
    container_id = shop_pod.containers["app"]
    pid = backend.container_pid(container_id)
    assert pid > 0
    cgroup = pathlib.Path(f"/proc/{pid}/cgroup").read_text()
    assert f"0::/coral-cri-test/poduid-web-1/{container_id}" in cgroup.splitlines()


def test_remove_pod_stops_it_and_removes_cgroup_parents(node, backend):
    pod = node.run_pod("short", "tmp", "uid-short",
                       containers=[conftest.marker_container("c")],
                       cgroup_parent="/coral-cri-gc/poduid-short")
    pid = backend.container_pid(pod.containers["c"])
    assert os.path.isdir("/sys/fs/cgroup/unified/coral-cri-gc/poduid-short") or \
        os.path.isdir("/sys/fs/cgroup/memory/coral-cri-gc/poduid-short")
    node.remove_pod(pod)
    assert not os.path.exists(f"/proc/{pid}")
    for mount in containerd.cgroup_mounts():
        assert not os.path.exists(os.path.join(mount, "coral-cri-gc"))
    assert backend.list_pod_containers(namespace="tmp", pod_name="short") == []


def test_containerd_start_failure_raises_with_log_tail(tmp_path):
    """Robustness of the harness: a containerd that cannot start is an error carrying its
    log, and leaves nothing behind (here: a socket path longer than a unix socket allows)."""
    reason = conftest.why_not_runnable()
    if reason:
        pytest.skip(f"containerd cannot run here: {reason}")
    deep = tmp_path / ("x" * 100)
    deep.mkdir()
    with pytest.raises(RuntimeError) as err:
        with containerd.Containerd(deep, start_timeout=15):
            pass
    assert "containerd exited" in str(err.value)
    assert "socket path too long" in str(err.value)
    assert list(deep.iterdir()) == []
