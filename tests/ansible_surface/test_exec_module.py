"""Issue 16, Ansible surface items 3-6 and 10 on coral.mesh.coral_exec, through real
ansible-playbook runs against a real colony and host agents."""

from __future__ import annotations

import pytest

from tests.ansible_surface.conftest import Approver, local_play


def _exec(name: str = "out", **options) -> dict:
    return {"coral.mesh.coral_exec": options, "register": name, "ignore_errors": True}


def test_item3_pending_approval_fails_at_once_with_error_kind_and_id_then_redeems(surface):
    """Item 3: "coral_exec hangs silently ... on pending, fail with error_kind:
    ApprovalPending and the id" (wait_for_approval defaults to false); the approved id is
    then redeemed with approval_id."""
    prefix = surface.work / "pending"
    run = surface.playbook(local_play([_exec("held", service="pay", command="echo paid")],
                                      save=["held"], prefix=prefix), env=surface.as_ops())
    assert run.returncode == 0, run.stdout[-3000:]
    held = surface.saved("pending")["held"]
    assert held["failed"] and held["error_kind"] == "ApprovalPending", held
    assert held["approval_id"] and held["approval_id"] in held["msg"]
    # held before Operate resolved: the module still says where it would run (issue 15)
    assert [t["service"] for t in held["targets"]] == ["pay"] and held["results"] == [], held
    with surface.colony.client_for("approver") as c:
        c.approve(held["approval_id"])
    prefix = surface.work / "redeemed"
    run = surface.playbook(local_play(
        [_exec("done", service="pay", command="echo paid", approval_id=held["approval_id"])],
        save=["done"], prefix=prefix), env=surface.as_ops())
    done = surface.saved("redeemed")["done"]
    assert not done.get("failed"), done
    assert [r["stdout"] for r in done["results"]] == ["paid\n"]
    assert done["targets"] == held["targets"]  # from the Operate call's own first event


def test_item3_wait_for_approval_times_out_with_the_id(surface):
    """Item 3: approval_timeout bounds the wait; the task then fails ApprovalPending."""
    prefix = surface.work / "timeout"
    run = surface.playbook(local_play(
        [_exec("held", service="pay", command="true", wait_for_approval=True,
               approval_timeout=1.5)], save=["held"], prefix=prefix), env=surface.as_ops())
    assert run.returncode == 0, run.stdout[-3000:]
    held = surface.saved("timeout")["held"]
    assert held["error_kind"] == "ApprovalPending" and held["approval_id"], held
    assert "still pending after" in held["msg"]


def test_item3_wait_for_approval_runs_once_another_identity_approves(surface):
    prefix = surface.work / "waited"
    with Approver(surface.colony) as approver:
        run = surface.playbook(local_play(
            [_exec("out", service="pay", command="echo approved", wait_for_approval=True,
                   approval_timeout=60)], save=["out"], prefix=prefix), env=surface.as_ops())
    out = surface.saved("waited")["out"]
    assert run.returncode == 0 and not out.get("failed"), out
    assert out["results"][0]["stdout_lines"] == ["approved"]
    assert approver.approved, "the run did not wait for an approval"


def test_item3_bad_approval_timeout_is_refused(surface):
    prefix = surface.work / "badtimeout"
    surface.playbook(local_play([_exec("out", service="api", command="true",
                                       approval_timeout=0)], save=["out"], prefix=prefix),
                     env=surface.as_ops())
    out = surface.saved("badtimeout")["out"]
    assert out["failed"] and "approval_timeout must be a positive" in out["msg"]


def test_item5_max_output_cuts_with_truncated_status_and_a_warning(surface):
    """Item 5: "Output is cut at 1 MiB with status ok and no warning": max_output, a
    warning naming the target and `truncated` in the result."""
    prefix = surface.work / "maxout"
    run = surface.playbook(local_play([
        _exec("small", service="api", command="yes a | head -c 5000",
              shell=True, max_output=1000),
        _exec("default", service="api", shell=True,
              command="yes b | head -c 1500000"),
        _exec("fits", service="api", command="echo short", max_output=1000),
    ], save=["small", "default", "fits"], prefix=prefix), env=surface.as_ops())
    assert run.returncode == 0, run.stdout[-3000:]
    out = surface.saved("maxout")
    small, default, fits = out["small"], out["default"], out["fits"]
    assert small["results"][0]["stdout"] == "a\n" * 500 and small["results"][0]["truncated"]
    assert small["truncated_targets"] == 1
    assert any("cut at max_output=1000" in w and "stage-1/api" in w
               for w in small["warnings"]), small.get("warnings")
    assert len(default["results"][0]["stdout"]) == 1 << 20
    assert default["truncated_targets"] == 1 and default["warnings"]
    assert "[WARNING]" in run.stderr and "max_output=1048576" in run.stderr
    assert not fits["results"][0]["truncated"] and not fits.get("warnings")
    assert fits["truncated_targets"] == 0


def test_item6_operation_id_finds_its_audit_records(surface):
    """Item 6: "the operation_id returned cannot find its audit records
    (coral_audit_info op_id= returns [])": it finds them; started and finished ids are
    returned."""
    prefix = surface.work / "opid"
    run = surface.playbook(local_play([
        _exec("ran", selector={"env": "staging"}, command="echo audited"),
        {"coral.mesh.coral_audit_info": {"op_id": "{{ ran.operation_id }}"},
         "register": "records"},
    ], save=["ran", "records"], prefix=prefix), env=surface.as_ops())
    assert run.returncode == 0, run.stdout[-3000:]
    out = surface.saved("opid")
    ran, records = out["ran"], out["records"]["records"]
    assert ran["operation_id"] and len(ran["audit_ids"]) == 1
    assert len(ran["finished_audit_ids"]) == 1
    row = ran["results"][0]
    assert (row["audit_id"], row["finished_audit_id"]) == (ran["audit_ids"][0],
                                                           ran["finished_audit_ids"][0])
    by_kind = {r["kind"]: r for r in records}
    assert by_kind["started"]["id"] == row["audit_id"]
    assert by_kind["finished"]["id"] == row["finished_audit_id"]
    assert all(r["op_id"].startswith(ran["operation_id"] + "/") for r in records)
    # one target's own key still finds exactly its records, and a prefix of the id finds none
    with surface.colony.client() as c:
        assert {r["id"] for r in c.audit(op_id=by_kind["started"]["op_id"])} == {
            r["id"] for r in records}
        assert c.audit(op_id=ran["operation_id"][:-1]) == []


@pytest.mark.parametrize("selector,expected", [({"env": "staging"}, True),
                                               ({"env": "nowhere"}, None)])
def test_item4_check_mode_predicts_what_the_real_run_reports(surface, selector, expected):
    """Item 4: "check mode predicts changed: false but the real run reports true"."""
    tasks = [_exec("checked", selector=selector, command="echo hi"),
             _exec("real", selector=selector, command="echo hi")]
    tasks[0]["check_mode"] = True
    prefix = surface.work / f"check-{expected}"
    surface.playbook(local_play(tasks, save=["checked", "real"], prefix=prefix),
                     env=surface.as_ops())
    out = surface.saved(f"check-{expected}")
    checked, real = out["checked"], out["real"]
    assert checked["changed"] == real["changed"]
    assert checked.get("failed", False) == real.get("failed", False)
    if expected:
        assert checked["targets"] == real["targets"] and checked["results"] == []


def test_item10_stdout_lines_stderr_lines_and_pod_options(surface):
    """Item 10: stdout_lines/stderr_lines; pod/namespace/container/node are options."""
    prefix = surface.work / "lines"
    surface.playbook(local_play([
        _exec("out", service="api", command="printf 'a\\nb\\n'; echo err >&2", shell=True),
        _exec("nopod", agent="stage-1", pod="nothere", namespace="nowhere",
              container="c", command="true"),
    ], save=["out", "nopod"], prefix=prefix))  # as admin: pod targeting on a host agent
    out = surface.saved("lines")
    row = out["out"]["results"][0]
    assert (row["stdout_lines"], row["stderr_lines"]) == (["a", "b"], ["err"]), out["out"]
    nopod = out["nopod"]  # the options reach the colony and the agent, which refuses them
    assert nopod["failed"] and "not in pods or containers" in nopod["msg"]
    assert [(t["namespace"], t["pod"], t["container"]) for t in nopod["targets"]] == [
        ("nowhere", "nothere", "c")]
