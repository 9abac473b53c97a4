"""Process supervisor for hosts without systemd (issue 2: "otherwise as a supervised
background process with a pid file")."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from coral_lib import supervise


def _wait_for(predicate, *, timeout: float = 30.0):  # only a failure waits that long
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _child_of(pid: int, argv: list[str]) -> psutil.Process:
    """pid's child once it runs argv (right after the fork it still shows the supervisor's
    command line)."""
    def running() -> psutil.Process | None:
        for child in psutil.Process(pid).children():
            try:
                if child.cmdline() == argv:
                    return child
            except psutil.Error:  # gone or a zombie meanwhile
                pass
        return None
    return _wait_for(running)


# ---- pure decisions --------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "code", "expected"), [
    ("always", 0, True), ("always", 1, True),
    ("on-failure", 0, False), ("on-failure", 1, True), ("on-failure", 137, True),
    ("never", 0, False), ("never", 1, False),
])
def test_restart_policy_table(policy, code, expected):
    assert supervise.should_restart(policy=policy, exit_code=code) is expected


def test_unknown_restart_policy_names_accepted_values():
    with pytest.raises(ValueError, match="on-failure"):
        supervise.should_restart(policy="sometimes", exit_code=1)


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0),
                                                 (7, 30.0), (1000, 30.0)])
def test_backoff_grows_exponentially_and_is_capped(failures, delay):
    assert supervise.backoff(failures) == delay


@pytest.mark.parametrize(("cmdline", "argv", "grace"), [
    (["py", "-m", "coral_lib.cli", "daemon", "run", "--", "sleep", "1"], ("sleep", "1"), 10.0),
    (["py", "run", "--stop-grace", "2.5", "--", "a", "--", "--stop-grace", "9"],
     ("a", "--", "--stop-grace", "9"), 2.5),
    (["py", "run"], (), 10.0),
])
def test_cmdline_parsing(cmdline, argv, grace):
    assert supervise.supervised_argv(cmdline) == argv
    assert supervise.recorded_grace(cmdline) == grace


# ---- real processes --------------------------------------------------------------------


def test_start_writes_pid_file_and_stop_removes_it_and_the_child(run_dir):
    pid_file, log = str(run_dir / "a.pid"), str(run_dir / "a.log")
    state, changed = supervise.start(name="a", argv=["sleep", "300"], pid_file=pid_file,
                                     log_file=log)
    assert changed and state.running and state.argv == ("sleep", "300")
    assert int(open(pid_file).read()) == state.pid
    child = _child_of(state.pid, ["sleep", "300"])
    assert supervise.stop(pid_file) is True
    assert not os.path.exists(pid_file)
    assert not psutil.pid_exists(state.pid) and not child.is_running()
    assert supervise.status(pid_file).running is False
    assert supervise.stop(pid_file) is False  # nothing left to stop


def test_start_is_idempotent_and_restarts_on_a_new_command(run_dir):
    pid_file, log = str(run_dir / "b.pid"), str(run_dir / "b.log")
    first, _ = supervise.start(name="b", argv=["sleep", "300"], pid_file=pid_file, log_file=log)
    again, changed = supervise.start(name="b", argv=["sleep", "300"], pid_file=pid_file,
                                     log_file=log)
    assert (changed, again.pid) == (False, first.pid)
    other, changed = supervise.start(name="b", argv=["sleep", "301"], pid_file=pid_file,
                                     log_file=log)
    assert changed and other.pid != first.pid and other.argv == ("sleep", "301")
    assert not psutil.pid_exists(first.pid)


def test_child_that_dies_is_restarted_with_its_output_in_the_log(run_dir):
    pid_file, log = str(run_dir / "c.pid"), str(run_dir / "c.log")
    state, _ = supervise.start(name="c", argv=["sh", "-c", "echo ran-once; sleep 300"],
                               pid_file=pid_file, log_file=log)
    # killed before its echo (a loaded machine), the first run would print nothing
    _wait_for(lambda: "ran-once" in open(log).read().splitlines())
    (first,) = psutil.Process(state.pid).children()
    first.kill()
    second = _wait_for(lambda: [c for c in psutil.Process(state.pid).children()
                                if c.pid != first.pid])[0]
    assert second.is_running()
    _wait_for(lambda: open(log).read().splitlines().count("ran-once") == 2)
    assert "exited with code 137" in open(log).read()


def test_on_failure_policy_stops_after_a_clean_exit_and_releases_the_pid_file(run_dir):
    pid_file, log = str(run_dir / "d.pid"), str(run_dir / "d.log")
    counter = run_dir / "count"
    script = f"echo x >> {counter}; test $(wc -l < {counter}) -ge 3"
    supervise.start(name="d", argv=["sh", "-c", script], pid_file=pid_file, log_file=log,
                    restart="on-failure")
    # two failures (backoff 0.5 s, 1 s), then exit 0 ends the supervisor
    _wait_for(lambda: not os.path.exists(pid_file), timeout=15)
    assert counter.read_text().count("x") == 3
    assert "restarting in 0.5s" in open(log).read()


def test_stale_pid_file_is_not_mistaken_for_a_running_supervisor(run_dir):
    pid_file = run_dir / "e.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # a live pid, but nobody holds the lock
    assert supervise.status(str(pid_file)) == supervise.Status(running=False, pid=os.getpid())
    state, changed = supervise.start(name="e", argv=["sleep", "300"], pid_file=str(pid_file),
                                     log_file=str(run_dir / "e.log"))
    assert changed and state.pid != os.getpid()


def test_second_supervisor_on_the_same_pid_file_is_refused(run_dir):
    pid_file = str(run_dir / "f.pid")
    state, _ = supervise.start(name="f", argv=["sleep", "300"], pid_file=pid_file,
                               log_file=str(run_dir / "f.log"))
    with pytest.raises(supervise.SupervisorError, match="held by a running supervisor"):
        supervise.run_supervisor(name="f2", argv=["sleep", "1"], pid_file=pid_file)
    assert supervise.status(pid_file).pid == state.pid


def test_child_ignoring_term_is_killed_after_the_grace_period(run_dir):
    pid_file = str(run_dir / "g.pid")
    state, _ = supervise.start(name="g", argv=["sh", "-c", "trap '' TERM; sleep 300 & wait"],
                               pid_file=pid_file, log_file=str(run_dir / "g.log"),
                               stop_grace=0.5)
    family = _wait_for(lambda: psutil.Process(state.pid).children(recursive=True)
                       if len(psutil.Process(state.pid).children(recursive=True)) == 2 else None)
    started = time.monotonic()
    assert supervise.stop(pid_file) is True
    assert time.monotonic() - started < 5
    assert not any(p.is_running() for p in family)


def test_command_that_cannot_start_is_retried_and_logged(run_dir):
    pid_file, log = str(run_dir / "h.pid"), str(run_dir / "h.log")
    supervise.start(name="h", argv=["/nonexistent/coral"], pid_file=pid_file, log_file=log)
    _wait_for(lambda: "cannot start '/nonexistent/coral'" in open(log).read())
    assert supervise.status(pid_file).running


def test_unwritable_pid_file_fails_with_the_path(run_dir):
    with pytest.raises(supervise.SupervisorError, match="cannot prepare /proc/nope"):
        supervise.start(name="i", argv=["sleep", "1"], pid_file="/proc/nope/x.pid",
                        log_file=str(run_dir / "i.log"))


# ---- the CLI ---------------------------------------------------------------------------


def test_cli_start_status_stop_round_trip(run_dir, coral_cli):
    pid_file, log = str(run_dir / "j.pid"), str(run_dir / "j.log")
    start = ["daemon", "start", "--name", "j", "--pid-file", pid_file, "--log-file", log,
             "--restart", "on-failure", "--", "sleep", "300"]
    out = coral_cli(*start)
    assert out.returncode == 0, out.stdout + out.stderr
    first = json.loads(out.stdout)
    assert first["changed"] is True and first["running"] is True
    assert json.loads(coral_cli(*start).stdout)["changed"] is False
    status = coral_cli("daemon", "status", "--pid-file", pid_file)
    assert status.returncode == 0
    assert json.loads(status.stdout) == {"running": True, "pid": first["pid"],
                                         "argv": ["sleep", "300"]}
    restart = json.loads(coral_cli(*["restart" if a == "start" else a for a in start]).stdout)
    assert restart["changed"] is True and restart["pid"] != first["pid"]
    stop = coral_cli("daemon", "stop", "--pid-file", pid_file)
    assert json.loads(stop.stdout) == {"changed": True, "running": False}
    status = coral_cli("daemon", "status", "--pid-file", pid_file)
    assert status.returncode == 3 and json.loads(status.stdout)["running"] is False


def test_cli_start_without_a_command_fails_clearly(run_dir, coral_cli):
    out = coral_cli("daemon", "start", "--name", "k", "--pid-file", str(run_dir / "k.pid"),
                    "--log-file", str(run_dir / "k.log"))
    assert out.returncode == 1
    assert "no command given" in json.loads(out.stdout)["msg"]


def test_supervisor_survives_hup_and_stops_on_term(run_dir):
    pid_file = str(run_dir / "l.pid")
    state, _ = supervise.start(name="l", argv=["sleep", "300"], pid_file=pid_file,
                               log_file=str(run_dir / "l.log"))
    os.kill(state.pid, signal.SIGHUP)
    time.sleep(0.3)
    assert supervise.status(pid_file).running
    os.kill(state.pid, signal.SIGTERM)
    _wait_for(lambda: not psutil.pid_exists(state.pid) or
              psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE)
    assert not os.path.exists(pid_file)
