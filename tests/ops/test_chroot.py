"""The sidecar's chroot backend (issue 14, least privilege): its pure parts."""

from __future__ import annotations

import pytest

from coral_lib.ops import base, chroot

STATUS = ("Name:\tsleep\nUid:\t1000\t1001\t1001\t1001\nGid:\t0\t2000\t2000\t2000\n"
          "Groups:\t10 20 \nCapEff:\t0000000000000000\n")


def test_owner_is_the_effective_uid_gid_and_groups():
    assert chroot.parse_owner(STATUS) == chroot.Owner(uid=1001, gid=2000, groups=(10, 20))
    assert chroot.parse_owner(STATUS.replace("Groups:\t10 20 ", "Groups:\t")).groups == ()


def test_unreadable_status_is_an_operation_error():
    with pytest.raises(base.OperationError, match="unreadable process status"):
        chroot.parse_owner("Name:\tx\n")


def test_setpriv_keeps_only_sys_chroot_ambient():
    argv = chroot.setpriv_argv(chroot.Owner(uid=1000, gid=1000, groups=()))
    assert argv[1:] == ["--reuid=1000", "--regid=1000", "--clear-groups",
                        "--inh-caps=-all,+sys_chroot", "--ambient-caps=+sys_chroot", "--"]
    plain = chroot.setpriv_argv(chroot.Owner(uid=0, gid=0, groups=(1, 2)), keep_chroot=False)
    assert plain[1:] == ["--reuid=0", "--regid=0", "--groups=1,2", "--"]


def test_helper_failures_are_told_apart_from_the_commands_output():
    denied = chroot.failure(b"coral-chroot: cannot enter the container of pid 7: "
                            b"[Errno 13] Permission denied: '/proc/7/cwd'\n")
    assert "Permission denied" in denied and "coral.io/sidecar-ptrace" in denied
    assert chroot.failure(b"coral-chroot: cannot run 'nope': No such file or directory") == \
        "cannot run 'nope': No such file or directory"
    assert chroot.failure(b"setpriv: setresuid failed: Operation not permitted") \
        .startswith("setpriv: ")
    assert chroot.failure(b"grep: no match\n") == ""


def test_a_target_pid_is_required():
    with pytest.raises(base.OperationError, match="needs a target pid"):
        chroot.prepare(0, env={})
