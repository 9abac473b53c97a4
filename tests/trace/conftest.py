"""Fixtures for trace tests: bcc availability, a scratch cgroup v2, marker executables."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import time
import uuid

import pytest

from coral_lib.ops import trace

_counter = itertools.count()


@pytest.fixture(scope="session")
def bcc():
    """Skip (with the precise reason) where bcc tracepoint programs cannot load.
    tools/setup_bcc.sh prepares a Debian machine (CI runs it before the tests)."""
    ok, reason = trace.available()
    if not ok:
        pytest.skip(reason)


@pytest.fixture
def cgroup_dir():
    """A fresh cgroup v2 directory; removed afterwards (its processes have exited)."""
    with open("/proc/self/mountinfo") as f:
        mount = trace.cgroup2_mount(f.read())
    if mount is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    path = os.path.join(mount, f"coral-trace-{os.getpid()}-{next(_counter)}")
    os.mkdir(path)
    yield path
    for _ in range(50):
        try:
            for sub in sorted(os.listdir(path)):
                if os.path.isdir(os.path.join(path, sub)):
                    os.rmdir(os.path.join(path, sub))
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.1)  # exiting tasks leave the cgroup a moment after they are reaped


@pytest.fixture
def markers(tmp_path):
    """Distinctly named symlinks to /bin/true: exec events report the path as given."""
    def make(label: str) -> str:
        link = tmp_path / f"coral-{label}-{uuid.uuid4().hex[:8]}"
        link.symlink_to("/bin/true")
        return str(link)
    return make


@dataclasses.dataclass
class Tracing:
    thread: threading.Thread
    ready: threading.Event
    stop: threading.Event
    events: list[dict]
    result: dict

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        """Wait until predicate(events) holds, then a little longer for stray events."""
        deadline = time.monotonic() + timeout
        while not predicate(list(self.events)) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)

    def finish(self) -> trace.TraceSummary:
        self.stop.set()
        return self.join()

    def join(self) -> trace.TraceSummary:
        self.thread.join(60)
        assert not self.thread.is_alive(), "trace did not end"
        if "error" in self.result:
            raise self.result["error"]
        return self.result["summary"]


@pytest.fixture
def start_trace():
    """Start trace.run on a thread and wait until its program is attached."""
    started: list[Tracing] = []

    def start(kind: str, **kwargs) -> Tracing:
        handle = Tracing(thread=None, ready=threading.Event(), stop=threading.Event(),
                         events=[], result={})

        def body():
            try:
                handle.result["summary"] = trace.run(
                    kind, on_event=handle.events.append, stop=handle.stop,
                    on_ready=handle.ready.set, **kwargs)
            except Exception as exc:  # handed to the test thread by join()
                handle.result["error"] = exc
            finally:
                handle.ready.set()

        handle.thread = threading.Thread(target=body, daemon=True)
        handle.thread.start()
        started.append(handle)
        assert handle.ready.wait(150)
        if "error" in handle.result:
            raise handle.result["error"]
        return handle

    yield start
    for handle in started:
        handle.stop.set()
        handle.thread.join(30)
