"""Issue 3 acceptance: runtime detection over recorded fixture trees (all four contexts,
cgroup v1/v2, containerd / CRI-O / docker / podman formats), forced-mode warnings, and
the pure cgroup parsers."""

from __future__ import annotations

import json
import logging
import pathlib

import hypothesis
import pytest
from hypothesis import strategies as st

from coral_lib import capabilities, runtime
from tests.runtime import conftest, make_fixtures

CID = "0123456789abcdef" * 4


def test_detection_over_fixture_tree_matches_expectation(case):
    """Each recorded tree (native, container, daemonset, sidecar; v1/v2) detects as expected."""
    ctx = conftest.detect_case(case)
    data = ctx.to_dict()
    expect = conftest.case_meta(case)["expect"]
    if "cri_socket" in expect:
        expect = {**expect, "cri_socket": str(conftest.TESTDATA / case / expect["cri_socket"])}
    assert {key: data[key] for key in expect} == expect
    if "warnings" not in expect:
        assert data["warnings"] == []


def test_fixture_trees_cover_all_four_modes_and_both_cgroup_versions():
    modes = {conftest.case_meta(c)["expect"]["mode"] for c in conftest.CASES}
    assert modes == {"NATIVE", "CONTAINER", "K8S_DAEMONSET", "K8S_SIDECAR"}
    assert any(c.endswith("_v1") for c in conftest.CASES)
    assert any("_v2" in c for c in conftest.CASES)


def test_fixture_trees_are_what_the_generator_writes(tmp_path):
    """The committed trees and make_fixtures.py agree (rerun it after changing a case)."""
    make_fixtures.main(tmp_path)

    def listing(base: pathlib.Path) -> dict[str, str]:
        return {str(p.relative_to(base)): (str(p.readlink()) if p.is_symlink() else
                                           p.read_text() if p.is_file() else "")
                for p in sorted(base.rglob("*"))}

    assert listing(tmp_path) == listing(conftest.TESTDATA)


def test_to_dict_is_json_and_names_reasons():
    ctx = conftest.detect_case("daemonset_unprivileged")
    data = json.loads(json.dumps(ctx.to_dict()))
    assert data["mode"] == "K8S_DAEMONSET" and data["can_exec"] is False
    assert "CAP_SYS_ADMIN" in data["exec_reason"] and "CAP_SYS_PTRACE" in data["exec_reason"]
    assert "CAP_SYS_ADMIN" in data["tap_reason"]
    assert "CAP_BPF" in data["trace_reason"]
    assert data["capabilities"] == ["CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_CHROOT"]
    assert ctx.details()["capabilities"] == "CAP_NET_RAW,CAP_SETGID,CAP_SETUID,CAP_SYS_CHROOT"


def test_forced_mode_contradiction_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="coral_lib.runtime"):
        ctx = conftest.detect_case("forced_daemonset_in_sidecar")
    assert ctx.warnings and ctx.warnings[0] in caplog.text
    assert "hostPID" in caplog.text


def test_forced_mode_that_agrees_has_no_warning():
    ctx = conftest.detect_case("sidecar_containerd_v1",
                               environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1",
                                        "CORAL_AGENT_MODE": "Sidecar"})
    assert ctx.mode is runtime.Mode.K8S_SIDECAR and ctx.forced and ctx.warnings == []


def test_cri_socket_absent_falls_back_to_nsenter():
    ctx = conftest.detect_case("daemonset_containerd_v1", cri_sockets=["/nonexistent.sock"])
    assert ctx.exec_backend is runtime.ExecBackendKind.NSENTER and ctx.can_exec


def test_mode_numbers_match_agent_proto():
    assert [(m.name, m.value) for m in runtime.Mode] == [
        ("UNKNOWN", 0), ("NATIVE", 1), ("CONTAINER", 2), ("K8S_DAEMONSET", 3), ("K8S_SIDECAR", 4)]


@pytest.mark.parametrize("text, expected", [
    (f"0::/kubepods/besteffort/pod{make_fixtures.UID}/{CID}\n", CID),  # containerd cgroupfs v2
    (f"4:memory:/kubepods/burstable/pod{make_fixtures.UID}/{CID}\n", CID),  # containerd v1
    (f"0::/k8s.io/{CID}\n", CID),  # containerd without a cgroup parent
    ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod3f1c5b2e_8a7d_4c61"
     f"_9e2f_0b4a6d8c1e57.slice/cri-containerd-{CID}.scope\n", CID),  # containerd systemd
    (f"0::/kubepods.slice/kubepods-pod1.slice/crio-{CID}.scope\n", CID),  # CRI-O
    (f"0::/kubepods.slice/kubepods-pod1.slice/crio-{CID}.scope/container\n", CID),
    (f"0::/kubepods.slice/crio-conmon-{CID}.scope\n", None),  # CRI-O's monitor, not the container
    (f"0::/system.slice/docker-{CID}.scope\n", CID),  # docker systemd
    (f"12:pids:/docker/{CID}\n11:memory:/docker/{CID}\n", CID),  # docker cgroupfs v1
    (f"0::/../{CID}\n", CID),  # another container seen through a private cgroup namespace
    (f"0::/machine.slice/libpod-{CID}.scope/container\n", CID),  # podman
    (f"0::/docker/{'1' * 64}/kubepods/pod{make_fixtures.UID}/{CID}\n", CID),  # kind: deepest
    ("4:memory:/process_api/4be8dd23f47dcbc2c17e991a2e97af1f\n0::/\n", None),  # 32 hex: no
    ("0::/init.scope\n", None),
    ("0::/\n", None),
    ("", None),
    (f"0::/kubepods/{CID}x\n", None),  # not a whole path component
])
def test_container_id_from_cgroup(text, expected):
    assert runtime.container_id_from_cgroup(text) == expected


@pytest.mark.parametrize("text, expected", [
    (f"0::/kubepods/besteffort/pod{make_fixtures.UID}/{CID}\n", make_fixtures.UID),
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c5b2e_8a7d_4c61_9e2f"
     f"_0b4a6d8c1e57.slice/crio-{CID}.scope\n", make_fixtures.UID),
    (f"0::/docker/{CID}\n", None),
    ("0::/\n", None),
])
def test_pod_uid_from_cgroup(text, expected):
    assert runtime.pod_uid_from_cgroup(text) == expected


@pytest.mark.parametrize("signals, mode", [
    (runtime.Signals(), runtime.Mode.NATIVE),
    (runtime.Signals(self_container_id=CID, pid1_container_id=CID, pid1_shares_self_mntns=True),
     runtime.Mode.CONTAINER),
    (runtime.Signals(self_container_id=CID, pid1_shares_self_mntns=True), runtime.Mode.CONTAINER),
    (runtime.Signals(sa_dir_present=True, pid1_cmdline=("/sbin/init",)),
     runtime.Mode.K8S_DAEMONSET),
    (runtime.Signals(kubernetes_service_host="10.0.0.1", pid1_cmdline=("/pause",)),
     runtime.Mode.K8S_SIDECAR),
])
def test_decide_is_a_pure_function_of_signals(signals, mode):
    assert runtime.decide(signals).mode is mode


def test_capability_mask_parsing():
    mask = capabilities.parse_status("Name:\tx\nCapEff:\t0000000000200000\n")
    assert capabilities.names(mask) == ["CAP_SYS_ADMIN"]
    assert capabilities.missing(mask, ["CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]) == ["CAP_SYS_PTRACE"]


def test_live_detection_on_this_machine_is_not_kubernetes(tmp_path):
    """Against the real /proc with no pod signals: a host or plain container, never k8s."""
    ctx = runtime.detect(environ={}, sa_dir=str(tmp_path / "none"), cri_sockets=[])
    assert ctx.mode in (runtime.Mode.NATIVE, runtime.Mode.CONTAINER)
    assert ctx.exec_backend is runtime.ExecBackendKind.LOCAL and ctx.can_exec


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(text=st.text(alphabet=st.sampled_from("0123456789abcdef:/-_.\nkubepodscrio"),
                               max_size=300))
def test_cgroup_parsers_never_crash_and_return_well_formed_ids(text):
    cid = runtime.container_id_from_cgroup(text)
    assert cid is None or (len(cid) == 64 and cid in text)
    uid = runtime.pod_uid_from_cgroup(text)
    assert uid is None or len(uid) == 36


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(signals=st.builds(
    runtime.Signals, sa_dir_present=st.booleans(), kubernetes_service_host=st.text(max_size=5),
    forced_mode=st.sampled_from(["", "host", "sidecar", "daemonset", "bogus"]),
    self_container_id=st.none() | st.just(CID), pid1_cmdline=st.sampled_from(
        [(), ("/pause",), ("/sbin/init",), ("nginx",)]),
    pid1_container_id=st.none() | st.just(CID), pid1_shares_self_mntns=st.booleans(),
    other_containers=st.integers(0, 3), cap_eff=st.integers(0, (1 << 41) - 1),
    cri_sockets=st.sampled_from([(), ("/run/containerd/containerd.sock",)])))
def test_decide_always_gives_reasons_for_what_it_cannot_do(signals):
    ctx = runtime.decide(signals)
    for what in ("exec", "shell", "tap", "trace"):
        assert getattr(ctx, f"can_{what}") == (getattr(ctx, f"{what}_reason") == "")
    assert ctx.mode is not runtime.Mode.UNKNOWN
    json.dumps(ctx.to_dict())
