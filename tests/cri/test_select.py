"""Pure decisions of the CRI backend: container choice, argv shaping, output cap, pid info."""

from __future__ import annotations

import json

import pytest

from coral_lib.ops import base, cri


def c(name: str, created: int) -> dict:
    return {"id": f"id-{name}", "name": name, "created_at": created}


PODS = [c("coral-agent", 1), c("app", 2), c("worker", 3)]


@pytest.mark.parametrize("containers,name,default,expected", [
    (PODS, "", "", "app"),                    # first non-sidecar
    (PODS, "worker", "", "worker"),           # explicit name
    (PODS, "", "worker", "worker"),           # default-container annotation
    (PODS, "coral-agent", "", "coral-agent"),  # asking for the sidecar by name is allowed
    (list(reversed(PODS)), "", "", "app"),    # creation order, not listing order
    ([c("only", 1)], "", "", "only"),
])
def test_choose_container(containers, name, default, expected):
    chosen = cri.choose_container(containers, pod="ns/p", container_name=name,
                                  default_container=default)
    assert chosen["name"] == expected


@pytest.mark.parametrize("containers,name,message", [
    (PODS, "nope", "container 'nope' not found in pod ns/p; running containers: "
                   "coral-agent, app, worker"),
    ([c("coral-agent", 1)], "", "pod ns/p has no running application container; "
                                "running containers: coral-agent"),
    ([], "x", "running containers: none"),
])
def test_choose_container_errors_list_the_pods_containers(containers, name, message):
    with pytest.raises(base.OperationError) as err:
        cri.choose_container(containers, pod="ns/p", container_name=name)
    assert message in str(err.value)


@pytest.mark.parametrize("kw,expected", [
    ({"argv": ["ls", "-l"]}, ["ls", "-l"]),
    ({"argv": ["echo $X"], "shell": True}, ["/bin/sh", "-c", "echo $X"]),
    ({"argv": ["id"], "env": {"A": "1"}}, ["env", "A=1", "id"]),
    ({"argv": ["pwd"], "cwd": "/tmp"}, ["/bin/sh", "-c", 'cd "$0" && exec "$@"', "/tmp", "pwd"]),
])
def test_exec_argv(kw, expected):
    assert cri.exec_argv(base.ExecRequest(**kw)) == expected


def test_cap():
    assert cri.cap(b"abcdef", 3) == (b"abc", True)
    assert cri.cap(b"abc", 3) == (b"abc", False)


@pytest.mark.parametrize("info,pid", [
    ({"info": json.dumps({"pid": 4242, "sandboxID": "x"})}, 4242),
    ({"info": "not json"}, 0),
    ({"info": json.dumps({"pid": 0})}, 0),
    ({"info": json.dumps(["list"])}, 0),
    ({}, 0),
])
def test_pid_from_info(info, pid):
    assert cri.pid_from_info(info) == pid


def test_default_socket_paths_honour_runtime_endpoint(monkeypatch):
    monkeypatch.delenv("CONTAINER_RUNTIME_ENDPOINT", raising=False)
    assert cri.default_socket_paths()[0] == "/run/containerd/containerd.sock"
    monkeypatch.setenv("CONTAINER_RUNTIME_ENDPOINT", "unix:///run/crio/crio.sock")
    paths = cri.default_socket_paths()
    assert paths[0] == "/run/crio/crio.sock" and paths.count("/run/crio/crio.sock") == 1
