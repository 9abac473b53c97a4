"""Issue 16, Guides: "a troubleshooting guide (each common failure: the message the user
sees, the cause, the fix), checked against the real messages by tests".

Every entry of docs/troubleshooting.md quotes one or more messages. For each entry a
provocation below causes that failure against real processes (a colony with a policy, real
host agents with join tokens, a second colony for a foreign CA, the `coral` CLI as users run
it) and the test asserts each quoted message appears verbatim in the real output, with the
quote's `<...>` parts standing for whatever varies. An entry without a provocation, or a
provocation without an entry, fails `test_every_entry_has_a_provocation`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import time
from collections.abc import Callable

import pytest
import yaml

from tests.support import coral_procs

GUIDE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"

POLICY = """
rules:
  - {name: admin-all, identities: [admin],
     verbs: [read, exec, shell, tap, trace, approve, admin]}
  - {name: alice-read, identities: [alice], verbs: [read]}
  - {name: alice-api-approved, identities: [alice], verbs: [exec], scope: {service: [api]},
     requireApproval: true}
"""


def guide_entries(text: str) -> dict[str, list[str]]:
    """`## Title` -> the ```text blocks quoted under it."""
    entries: dict[str, list[str]] = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = section.partition("\n")
        entries[title.strip()] = re.findall(r"^```text\n(.*?)\n```", body, flags=re.M | re.S)
    return entries


def quote_pattern(quote: str) -> re.Pattern[str]:
    """The quote as a regex: literal text, each `<placeholder>` any non-empty text."""
    parts = re.split(r"<[^<>\s]+>", quote)
    return re.compile(".+?".join(re.escape(part) for part in parts))


def test_quote_pattern_is_literal_apart_from_placeholders():
    pattern = quote_pattern("unknown service '<name>'; did you mean: <names>")
    assert pattern.search("coral: error: unknown service 'apx'; did you mean: api")
    assert not pattern.search("unknown service apx; did you mean: api")
    assert not quote_pattern("retry in 1.0s (x)").search("retry in 1.0s x")


@dataclasses.dataclass
class Fleet:
    colony: coral_procs.Colony
    work: pathlib.Path
    alice_token: str
    agents: list[coral_procs.Agent] = dataclasses.field(default_factory=list)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> str:
        run = coral_procs.coral(*args, env={**self.colony.operator_env, **(env or {})})
        return run.stdout + run.stderr

    def as_alice(self, *args: str) -> str:
        return self.cli(*args, env={"CORAL_TOKEN_FILE": "", "CORAL_TOKEN": self.alice_token})

    def agent(self, agent_id: str, **kwargs) -> coral_procs.Agent:
        agent = coral_procs.Agent(self.work / "agents", self.colony, agent_id=agent_id, **kwargs)
        self.agents.append(agent)
        return agent


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A colony with a policy (admin: everything; alice: read, and exec on `api` only after
    approval), alice's token added before it starts, and host agent web-1 serving `api`."""
    work = tmp_path_factory.mktemp("guide")
    data = work / "colony"
    data.mkdir()
    added = coral_procs.coral("colony", "token", "add", "--data-dir", str(data),
                              "--identity", "alice", check=True)
    (work / "policy.yaml").write_text(POLICY)
    # Shortcut: every process here shares one loopback address, so the failed-login
    # throttle (its own entry, provoked on a colony of its own) is raised on this one.
    (work / "colony.yaml").write_text('{"limits": {"loginFailures": 1000}}')
    colony = coral_procs.Colony(data, args=("--policy", str(work / "policy.yaml"),
                                            "--config", str(work / "colony.yaml"))).start()
    fleet = Fleet(colony, work, added.stdout.strip().splitlines()[-1])
    try:
        fleet.agent("web-1", services=[{"name": "api", "port": coral_procs.free_port()}]).start()
        coral_procs.wait_registered(colony, ["web-1"])
        yield fleet
    finally:
        for agent in fleet.agents:
            agent.stop()
        colony.stop()


def agent_log_once(agent: coral_procs.Agent, quotes: list[str], timeout: float = 30) -> str:
    """Wait until every quoted message is in the agent's log; return the log."""
    coral_procs.wait_for(lambda: all(quote_pattern(q).search(agent.log()) for q in quotes),
                         timeout=timeout, what=f"{quotes} in {agent.log_path}")
    return agent.log()


def other_colony(fleet: Fleet) -> coral_procs.Colony:
    return coral_procs.Colony(fleet.work / f"other-{time.monotonic_ns()}").start()


# --- provocations: entry title -> (fleet, quotes) -> the real output --------------------

def unreachable(fleet: Fleet, quotes: list[str]) -> str:
    closed = f"127.0.0.1:{coral_procs.free_port()}"
    return fleet.cli("services", env={"CORAL_COLONY_ADDRESS": closed})


def foreign_colony_ca(fleet: Fleet, quotes: list[str]) -> str:
    other = other_colony(fleet)
    try:
        return fleet.cli("services", env={"CORAL_CA_FILE": str(other.data_dir / "ca.crt")})
    finally:
        other.stop()


def agent_foreign_ca(fleet: Fleet, quotes: list[str]) -> str:
    other = other_colony(fleet)
    try:
        agent = fleet.agent("web-ca")
        config = yaml.safe_load(agent.config_path.read_text())
        config["colony"]["caFile"] = str(other.data_dir / "ca.crt")
        agent.config_path.write_text(yaml.safe_dump(config))
        agent.start()
        return agent_log_once(agent, quotes)
    finally:
        other.stop()


def no_token(fleet: Fleet, quotes: list[str]) -> str:
    return fleet.cli("services", env={"CORAL_TOKEN_FILE": "", "CORAL_TOKEN": "",
                                      "CORAL_COLONY_DATA_DIR": str(fleet.work / "nowhere")})


def unknown_token(fleet: Fleet, quotes: list[str]) -> str:
    return fleet.cli("services", env={"CORAL_TOKEN_FILE": "", "CORAL_TOKEN": "not-a-token"})


def rbac_denied(fleet: Fleet, quotes: list[str]) -> str:
    return fleet.as_alice("exec", "--agent", "web-1", "--", "true")


def approval_pending(fleet: Fleet, quotes: list[str]) -> str:
    return fleet.as_alice("exec", "--service", "api", "--no-wait", "--", "true")


def rate_limited(fleet: Fleet, quotes: list[str]) -> str:
    """A colony of its own whose policy allows one exec a minute per identity."""
    work = fleet.work / "limited"
    work.mkdir()
    (work / "policy.yaml").write_text(
        "rules: [{name: admin-all, identities: [admin], verbs: [read, exec, admin]}]\n"
        "rateLimits: {perIdentity: '1/m, burst=1'}\n")
    colony = coral_procs.Colony(work / "colony", args=("--policy", str(work / "policy.yaml")))
    colony.start()
    agent = coral_procs.Agent(work / "agents", colony, agent_id="web-rl").start()
    try:
        coral_procs.wait_registered(colony, ["web-rl"])
        env = colony.operator_env
        first = coral_procs.coral("exec", "--agent", "web-rl", "--", "true", env=env)
        assert first.returncode == 0, first.stderr
        second = coral_procs.coral("exec", "--agent", "web-rl", "--", "true", env=env)
        return second.stdout + second.stderr
    finally:
        agent.stop()
        colony.stop()


def login_throttled(fleet: Fleet, quotes: list[str]) -> str:
    """A colony of its own that throttles an address after 3 failed logins a minute."""
    work = fleet.work / "throttled"
    work.mkdir()
    (work / "colony.yaml").write_text('{"limits": {"loginFailures": 3, "loginWindow": "60s"}}')
    colony = coral_procs.Colony(work / "colony", args=("--config", str(work / "colony.yaml")))
    colony.start()
    env = {**colony.operator_env, "CORAL_TOKEN_FILE": "", "CORAL_TOKEN": "not-a-token"}
    try:
        runs = [coral_procs.coral("services", env=env) for _ in range(5)]
        return "".join(run.stdout + run.stderr for run in runs)
    finally:
        colony.stop()


def unknown_service(fleet: Fleet, quotes: list[str]) -> str:
    return fleet.cli("exec", "--service", "apx", "--", "true")


def agent_not_connected(fleet: Fleet, quotes: list[str]) -> str:
    agent = fleet.agent("web-down").start()
    coral_procs.wait_registered(fleet.colony, ["web-down"])
    agent.stop()
    coral_procs.wait_for(lambda: "not connected" in fleet.cli(
        "exec", "--agent", "web-down", "--", "true"), what="web-down seen as not connected")
    return fleet.cli("exec", "--agent", "web-down", "--", "true")


def join_token_expired(fleet: Fleet, quotes: list[str]) -> str:
    agent = fleet.agent("web-late")
    token = agent.create_join_token(ttl="1s")
    time.sleep(1.5)
    agent.join_token = token
    agent.start()
    return agent_log_once(agent, quotes)


def join_token_for_another_agent(fleet: Fleet, quotes: list[str]) -> str:
    token = fleet.agent("web-other").create_join_token()
    agent = fleet.agent("web-wrong", join_token=token).start()
    return agent_log_once(agent, quotes)


def agent_revoked(fleet: Fleet, quotes: list[str]) -> str:
    agent = fleet.agent("web-gone").start()
    coral_procs.wait_registered(fleet.colony, ["web-gone"])
    fleet.cli("agents", "revoke", "web-gone")
    return agent_log_once(agent, quotes)


PROVOCATIONS: dict[str, Callable[[Fleet, list[str]], str]] = {
    "Colony unreachable": unreachable,
    "Colony certificate from another colony": foreign_colony_ca,
    "Agent holds another colony's CA": agent_foreign_ca,
    "No operator token": no_token,
    "Unknown operator token": unknown_token,
    "Refused by RBAC": rbac_denied,
    "Waiting for approval": approval_pending,
    "Rate limited": rate_limited,
    "Too many failed logins": login_throttled,
    "Unknown service": unknown_service,
    "Agent not connected": agent_not_connected,
    "Join token expired": join_token_expired,
    "Join token for another agent": join_token_for_another_agent,
    "Agent revoked": agent_revoked,
}

ENTRIES = guide_entries(GUIDE.read_text())


def test_every_entry_has_a_provocation():
    assert set(ENTRIES) == set(PROVOCATIONS)
    assert all(ENTRIES.values()), "an entry quotes no message"


@pytest.mark.parametrize("title", sorted(ENTRIES))
def test_troubleshooting_message_appears_verbatim(fleet, title):
    quotes = ENTRIES[title]
    output = PROVOCATIONS[title](fleet, quotes)
    for quote in quotes:
        assert quote_pattern(quote).search(output), (
            f"{title!r}: the guide quotes\n  {quote}\nbut the real output was:\n{output[-3000:]}")


def test_expired_join_token_fix_works(fleet):
    """The guide's fix for an expired join token: a new token in the agent's join token file
    (no restart) and the agent joins."""
    agent = fleet.agent("web-fixed")
    expired = agent.create_join_token(ttl="1s")
    time.sleep(1.5)
    agent.join_token = expired
    agent.start()
    agent_log_once(agent, ["the colony refused this join credential"])
    agent.token_path.write_text(agent.create_join_token() + "\n")
    coral_procs.wait_registered(fleet.colony, ["web-fixed"], timeout=60)
