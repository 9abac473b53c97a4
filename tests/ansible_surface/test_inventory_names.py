"""Issue 16, Ansible surface item 2 ("the host agent's default id is localhost, so every
hosts: localhost play using the colony inventory runs through the coral connection. Never
emit reserved names") and item 10's warning for an inline inventory token."""

from __future__ import annotations

import json
import socket

import pytest

from tests.ansible_surface.conftest import BIN, ROOT, save_task


def _source(surface, name: str, **options):
    return surface.write(f"{name}.colony.yml", {"plugin": "coral.mesh.colony", **options})


@pytest.mark.parametrize("host_per", ["agent", "pod", "service"])
def test_item2_inventory_never_emits_a_reserved_name(surface, host_per):
    inventory = surface.inventory(_source(surface, f"names-{host_per}", host_per=host_per))
    hosts = set(inventory["_meta"]["hostvars"])
    assert not hosts & {"localhost", "127.0.0.1", "::1", "all", "ungrouped"}, hosts
    if host_per == "agent":
        assert inventory["_meta"]["hostvars"]["coral-localhost"]["ansible_coral_agent"] == \
            "localhost"


def test_item2_hosts_localhost_stays_on_the_controller_with_the_colony_inventory(surface):
    """A `hosts: localhost` play keeps the implicit local connection; the agent named
    localhost is reached as coral-localhost through the colony (audited)."""
    source = _source(surface, "localplay", host_per="agent")
    prefix = surface.work / "names"
    plays = [{"hosts": "localhost", "gather_facts": False, "tasks": [
                 {"ansible.builtin.set_fact": {"conn": "{{ ansible_connection }}"}},
                 {"ansible.builtin.debug": {"var": "conn"}, "register": "conn_shown"},
                 save_task(["conn_shown"], prefix)]},
             {"hosts": "coral-localhost", "gather_facts": False, "tasks": [
                 {"ansible.builtin.raw": "echo via-agent", "register": "raw"},
                 save_task(["raw"], prefix)]}]
    run = surface.playbook(plays, name="names", inventory=source)
    assert run.returncode == 0, run.stdout[-3000:]
    assert surface.saved("names")["conn_shown"]["conn"] == "local"
    assert surface.saved("names", "coral-localhost")["raw"]["stdout"].strip() == "via-agent"
    assert any("echo via-agent" in r["command"]
               for r in surface.audit(kind="started", agent="localhost"))


def test_item2_agent_host_role_default_id_is_not_localhost(surface):
    """The agent_host role's default id, templated by Ansible for each inventory name:
    localhost (and 127.0.0.1) become this machine's hostname."""
    out = surface.run(str(BIN / "ansible"), "-i", "localhost,127.0.0.1,web-01,", "all",
                      "-c", "local", "-m", "ansible.builtin.debug", "-a", "var=coral_agent_id",
                      "-e", f"@{ROOT / 'roles/agent_host/defaults/main.yml'}", "--one-line")
    assert out.returncode == 0, out.stdout + out.stderr
    ids = {line.split(" | ")[0]: json.loads(line.split(" => ", 1)[1])["coral_agent_id"]
           for line in out.stdout.splitlines() if " => " in line}
    host = socket.gethostname()
    assert ids == {"localhost": host, "127.0.0.1": host, "web-01": "web-01"}


def test_item10_inline_inventory_token_warns_that_hosts_cannot_use_it(surface):
    token = surface.colony.tokens["ops"]
    inline = _source(surface, "inline", host_per="agent", colony_token=token)
    no_file = {"CORAL_TOKEN_FILE": None}  # the hosts would have nothing but the local admin.token
    out = surface.run(str(BIN / "ansible-inventory"), "-i", str(inline), "--list", env=no_file)
    assert out.returncode == 0, out.stderr
    assert "colony_token in the inventory source reads the inventory only" in out.stderr
    assert token not in out.stdout and token not in out.stderr
    with_file = _source(surface, "inline-file", host_per="agent", colony_token=token,
                        colony_token_file=str(surface.colony.data_dir / "admin.token"))
    quiet = surface.run(str(BIN / "ansible-inventory"), "-i", str(with_file), "--list",
                        env=no_file)
    assert quiet.returncode == 0 and "reads the inventory only" not in quiet.stderr
