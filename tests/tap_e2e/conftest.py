"""Fixtures: a network namespace made by the test, a colony reachable from it over a veth
pair, and a host agent started inside the namespace (`ip netns exec`), so the agent's host
network namespace is the test's."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import uuid

import pytest
import yaml

from coral_lib.colony import pki
from tests.security import conftest as security
from tests.support import coral_procs

COLONY_NAME = "coral-colony.test"  # in the server certificate and the namespace's hosts


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def netns():
    """(namespace name, colony-side address): lo up, a veth pair 10.213.x.1 <-> .2."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2")
    name = f"coral-tap-{uuid.uuid4().hex[:6]}"
    outer, inner = f"ct{name[-6:]}o", f"ct{name[-6:]}i"
    subnet = f"10.213.{int(name[-2:], 16)}"
    _ip("netns", "add", name)
    etc = pathlib.Path("/etc/netns") / name
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", name)
        _ip("addr", "add", f"{subnet}.1/30", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("-n", name, "addr", "add", f"{subnet}.2/30", "dev", inner)
        _ip("-n", name, "link", "set", inner, "up")
        etc.mkdir(parents=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{subnet}.1 {COLONY_NAME}\n")
        yield name, f"{subnet}.1"
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class NetnsAgent(coral_procs.Agent):
    """A host agent process inside a network namespace, dialling the colony by name."""

    def __init__(self, work_dir, colony, *, netns: str, **kwargs) -> None:
        super().__init__(work_dir, colony, **kwargs)
        self.netns = netns
        body = yaml.safe_load(self.config_path.read_text())
        body["colony"]["address"] = f"{COLONY_NAME}:{colony.port}"
        self.config_path.write_text(yaml.safe_dump(body))

    def start(self) -> NetnsAgent:
        if not self.cert_path.exists():  # its identity: a join token, as coral_procs.Agent
            self.token_path.write_text(self.create_join_token() + "\n")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *coral_procs.CORAL, "agent", "start",
             "--config", str(self.config_path),
             "--state-dir", str(self.work_dir / f"{self.agent_id}-state"),
             "--socket", str(self.socket_path)],
            stdout=log, stderr=subprocess.STDOUT)
        return self


def colony_for_netns(tmp: pathlib.Path, *, args: tuple[str, ...] = ()) -> security.PolicyColony:
    data_dir = tmp / "colony"
    pki.ensure(data_dir, hostnames=(COLONY_NAME,))
    colony = security.PolicyColony(data_dir)
    colony.args = ("--listen", f"0.0.0.0:{colony.port}", *args)
    return colony.start()


@pytest.fixture(scope="module")
def tapped(tmp_path_factory, netns):
    """(colony, namespace): one host agent `ns-agent` living in the test's namespace."""
    tmp = tmp_path_factory.mktemp("tap")
    colony = colony_for_netns(tmp)
    agent = NetnsAgent(tmp / "agents", colony, netns=netns[0], agent_id="ns-agent",
                       services=[{"name": "echo", "port": 9999},
                                 {"name": "quiet", "port": 9997,
                                  "labels": {"coral.io/observe-only": "true"}}]).start()
    try:
        coral_procs.wait_registered(colony, ["ns-agent"])
        yield colony, netns[0]
    finally:
        agent.stop()
        colony.stop()
