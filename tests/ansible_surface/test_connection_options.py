"""Issue 16, Ansible surface item 10: options behind kubernetes.core's -- client
certificate/key (CORAL_CLIENT_CERT/KEY), TLS server name and connect timeout -- on the
modules (one shared option group), through real ansible-playbook runs."""

from __future__ import annotations

from coral_lib.colony import pki
from tests.ansible_surface.conftest import local_play
from tests.support import coral_procs


def _cert_files(surface, identity: str):
    cert, key = pki.issue_client_cert(pki.ColonyFiles(surface.colony.data_dir),
                                      identity=identity)
    paths = surface.work / f"{identity}.crt", surface.work / f"{identity}.key"
    paths[0].write_bytes(cert)
    paths[1].write_bytes(key)
    paths[1].chmod(0o600)
    return paths


def test_item10_client_certificate_from_the_environment_is_the_identity(surface):
    """CORAL_CLIENT_CERT/KEY on the mutual-TLS address, no token anywhere: the colony
    judges the certificate's identity (ops: production needs approval, so it is held)."""
    cert, key = _cert_files(surface, "ops")
    env = {"CORAL_CLIENT_CERT": str(cert), "CORAL_CLIENT_KEY": str(key),
           "CORAL_COLONY_ADDRESS": surface.colony.mtls_address,
           "CORAL_TOKEN_FILE": None, "CORAL_TOKEN": None}
    prefix = surface.work / "cert"
    run = surface.playbook(local_play([
        {"coral.mesh.coral_exec": {"service": "api", "command": "echo by-cert"},
         "register": "staging"},
        {"coral.mesh.coral_exec": {"service": "pay", "command": "echo by-cert"},
         "register": "production", "ignore_errors": True},
    ], save=["staging", "production"], prefix=prefix), env=env)
    assert run.returncode == 0, run.stdout[-3000:]
    out = surface.saved("cert")
    assert out["staging"]["results"][0]["stdout"] == "by-cert\n"
    assert out["production"]["error_kind"] == "ApprovalPending"
    started = [r for r in surface.audit(kind="started") if "by-cert" in r["command"]]
    assert {r["requester"] for r in started} == {"ops"}


def test_item10_client_certificate_as_module_options_and_half_a_pair_refused(surface):
    cert, key = _cert_files(surface, "ops")
    prefix = surface.work / "certopts"
    run = surface.playbook(local_play([
        {"coral.mesh.coral_services_info": {
            "colony_address": surface.colony.mtls_address, "client_cert": str(cert),
            "client_key": str(key)}, "register": "listed"},
        {"coral.mesh.coral_services_info": {"colony_client_cert": str(cert)},
         "register": "half", "ignore_errors": True},
    ], save=["listed", "half"], prefix=prefix), env={"CORAL_TOKEN_FILE": None})
    assert run.returncode == 0, run.stdout[-3000:]
    out = surface.saved("certopts")
    assert {"api", "pay"} <= {s["component_name"] for s in out["listed"]["services"]}
    assert out["half"]["failed"] and "CORAL_CLIENT_KEY" in out["half"]["msg"]


def test_item10_tls_server_name_and_connect_timeout(surface):
    dead = f"127.0.0.1:{coral_procs.free_port()}"
    prefix = surface.work / "tlsname"
    run = surface.playbook(local_play([
        {"coral.mesh.coral_services_info": {"colony_tls_server_name": "localhost"},
         "register": "named"},
        {"coral.mesh.coral_services_info": {"colony_tls_server_name": "someone-else.example",
                                            "colony_connect_timeout": 2},
         "register": "wrong", "ignore_errors": True},
        {"coral.mesh.coral_services_info": {"colony_address": dead,
                                            "colony_connect_timeout": 1.5},
         "register": "nobody", "ignore_errors": True},
    ], save=["named", "wrong", "nobody"], prefix=prefix))
    assert run.returncode == 0, run.stdout[-3000:]
    out = surface.saved("tlsname")
    assert out["named"]["services"]
    assert out["wrong"]["error_kind"] == "Unreachable"
    assert "someone-else.example" in out["wrong"]["msg"]
    assert out["nobody"]["error_kind"] == "Unreachable"
    assert "within 1.5s" in out["nobody"]["msg"]


def test_item10_services_info_takes_service_and_selector_as_coral_exec_does(surface):
    prefix = surface.work / "aliases"
    surface.playbook(local_play([
        {"coral.mesh.coral_services_info": {"service": "api", "selector": {"env": "staging"}},
         "register": "aliased"},
        {"coral.mesh.coral_services_info": {"service": "api", "selector": {"env": "prod"}},
         "register": "narrowed"},
    ], save=["aliased", "narrowed"], prefix=prefix))
    out = surface.saved("aliases")
    found = [(s["component_name"], s["agent"]) for s in out["aliased"]["services"]]
    assert found == [("api", "stage-1")]
    assert out["narrowed"]["services"] == []
