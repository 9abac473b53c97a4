"""pods/exec over WebSocket with the real client (`kubernetes.stream.stream`): stdout,
stderr, exit codes on the status channel, stdin, v4 and v5 subprotocols, and a pluggable
exec handler."""

from __future__ import annotations

import subprocess

import pytest
from kubernetes.stream import stream

from tests.kubeapi.conftest import pod


@pytest.fixture
def target(core, ns):
    core.create_namespaced_pod(ns, pod("sh"))
    return ns


def _run(core, ns, argv, *, stdin: bytes | None = None, headers=None):
    resp = stream(core.connect_get_namespaced_pod_exec, "sh", ns, command=argv,
                  stderr=True, stdin=stdin is not None, stdout=True, tty=False,
                  _preload_content=False)
    if stdin is not None:
        resp.write_stdin(stdin.decode())
        resp.close_channel(0)  # v5: [255, 0] closes the process's stdin
    out, err = [], []
    while resp.is_open():
        resp.update(timeout=1)
        if resp.peek_stdout():
            out.append(resp.read_stdout())
        if resp.peek_stderr():
            err.append(resp.read_stderr())
    resp.close()
    return "".join(out), "".join(err), resp.returncode


@pytest.mark.parametrize("rc", [0, 1, 3, 42])
def test_exec_exit_codes(core, target, rc):
    out, err, code = _run(core, target, ["sh", "-c", f"echo out; echo err >&2; exit {rc}"])
    assert (out, err, code) == ("out\n", "err\n", rc)


def test_exec_preloaded_output(core, target):
    out = stream(core.connect_get_namespaced_pod_exec, "sh", target,
                 command=["echo", "hello world"], stderr=True, stdin=False, stdout=True,
                 tty=False)
    assert out == "hello world\n"


def test_exec_large_output(core, target):
    out, _err, code = _run(core, target, ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x"])
    assert code == 0 and len(out) == 300000


def test_exec_stdin_and_v5_close(core, target):
    out, _err, code = _run(core, target, ["cat"], stdin=b"piped input\n")
    assert out == "piped input\n" and code == 0


def test_exec_missing_binary_is_exit_126(core, target):
    _out, err, code = _run(core, target, ["/no/such/binary"])
    assert code == 126 and "/no/such/binary" in err


def test_exec_unknown_container_is_400(core, target):
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as err:
        stream(core.connect_get_namespaced_pod_exec, "sh", target, command=["true"],
               container="nope", stderr=True, stdin=False, stdout=True, tty=False)
    # the WebSocket client reports the refused upgrade as "Handshake status 400 ..."
    assert "400" in str(err.value) and "container nope is not valid" in str(err.value)


def test_exec_v4_subprotocol_only(server, target):
    """A v4-only client (no close channel) still gets output and the status channel."""
    import json
    import ssl

    import websocket

    ws = websocket.create_connection(
        f"wss://127.0.0.1:{server.port}/api/v1/namespaces/{target}/pods/sh/exec?"
        "command=sh&command=-c&command=echo%20v4%3B%20exit%205&stdout=true&stderr=true",
        header=[f"Authorization: Bearer {server.token}"], subprotocols=["v4.channel.k8s.io"],
        sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": server.ca_path})
    assert ws.subprotocol == "v4.channel.k8s.io"
    frames = {}
    while True:
        op, data = ws.recv_data(control_frame=False)
        if op == 8:
            break
        frames.setdefault(data[0], b"")
        frames[data[0]] += data[1:]
    assert frames[1] == b"v4\n"
    status = json.loads(frames[3])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]


def test_exec_handler_is_pluggable(core, target, server):
    seen = []

    def handler(pod_obj, container, argv):
        seen.append((pod_obj["metadata"]["name"], container, argv))
        return subprocess.Popen(["sh", "-c", "echo from-harness; exit 7"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    server.exec_handler = handler
    try:
        out, _err, code = _run(core, target, ["ignored"])
    finally:
        from tests.support.kubeapi import exec_ws

        server.exec_handler = exec_ws.local_exec
    assert (out, code) == ("from-harness\n", 7)
    assert seen == [("sh", "app", ["ignored"])]
