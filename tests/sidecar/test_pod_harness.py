"""The pod harness itself: it must start pods in a test process that is busy in gRPC, and a
pod must die with the process that started it.

Stop 23's CI lost a module of sidecar tests to `unshare exited -6`: the harness started
unshare with a Python preexec_fn, which makes subprocess fork (not vfork), and grpcio's
fork handlers abort, crash or hang a child forked while other threads are in gRPC
(measured here: 256 of 3,047 such children died of SIGABRT in a minute)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

from tests.sidecar.conftest import REPO, _require
from tests.support import grpcbusy, podharness

PODS_WHILE_BUSY = 100


def test_pods_start_while_other_threads_are_in_grpc():
    _require()
    started = 0
    with grpcbusy.busy():
        for i in range(PODS_WHILE_BUSY):
            with podharness.Pod(f"busy-{i}", "lab") as pod:
                assert pod.pause_pid
                started += 1
    assert started == PODS_WHILE_BUSY


def test_a_pod_dies_with_the_process_that_started_it():
    """The parent-death signal the harness asks of setpriv: a test process killed before
    its cleanup leaves no pause process behind."""
    _require()
    script = textwrap.dedent("""
        import time
        from tests.support import podharness
        pod = podharness.Pod("orphan-1", "lab").start()
        print(pod.pause_pid, pod.cgroup, pod._tmp, flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    pause_pid, cgroup, tmp = owner.stdout.readline().split()
    try:
        assert os.path.exists(f"/proc/{pause_pid}")
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        podharness._wait_for("the orphaned pause process to die",
                             lambda: not os.path.exists(f"/proc/{pause_pid}"), timeout=10)
    finally:
        owner.kill()
        podharness.remove_pod_cgroup(cgroup)  # the owner never ran its cleanup
        shutil.rmtree(tmp, ignore_errors=True)
