"""The colony's data directory identity: CA, server certificate, colony id, admin token.

Agents hold no shared secret: each gets its own certificate (coral_lib.colony.enrollment).

Created once on first start (files written atomically, private keys 0600) and reused after.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging
import os
import pathlib
import secrets
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coral_lib import files
from coral_lib.colony import auth, storage

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ColonyFiles:
    data_dir: pathlib.Path

    ca_cert = property(lambda self: self.data_dir / "ca.crt")
    ca_key = property(lambda self: self.data_dir / "ca.key")
    server_cert = property(lambda self: self.data_dir / "server.crt")
    server_key = property(lambda self: self.data_dir / "server.key")
    colony_id = property(lambda self: self.data_dir / "colony.id")
    admin_token = property(lambda self: self.data_dir / "admin.token")
    tokens = property(lambda self: self.data_dir / "tokens.json")
    registry_db = property(lambda self: self.data_dir / "colony.db")
    audit_db = property(lambda self: self.data_dir / "audit.db")
    approvals_db = property(lambda self: self.data_dir / "approvals.db")
    identity_db = property(lambda self: self.data_dir / "identity.db")

    def summary(self) -> dict[str, str]:
        return {
            "colony_id": self.colony_id.read_text().strip(), "data_dir": str(self.data_dir),
            "ca_file": str(self.ca_cert), "token_file": str(self.admin_token),
        }


def ensure(data_dir: str | os.PathLike, *, hostnames: tuple[str, ...] = ()) -> ColonyFiles:
    """Create whatever is missing in data_dir; never overwrite what exists."""
    files = ColonyFiles(pathlib.Path(data_dir).resolve())
    private_dir(files.data_dir)
    for db in (files.registry_db, files.audit_db, files.approvals_db, files.identity_db):
        storage.private_db(db)
    if not files.colony_id.exists():
        _write(files.colony_id, f"colony-{secrets.token_hex(4)}\n".encode(), 0o644)
    if not files.admin_token.exists():
        _write(files.admin_token, secrets.token_urlsafe(32).encode() + b"\n", 0o600)
    if not files.tokens.exists():
        token = files.admin_token.read_text().strip()
        auth.save_tokens(files.tokens, [{"token": token, "identity": "admin",
                                         "groups": ["admins"]}])
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        _write_ca(files)
    if not (files.server_cert.exists() and files.server_key.exists()):
        _write_server_cert(files, hostnames)
    return files


def private_dir(path: pathlib.Path) -> None:
    """Create `path` 0700, or make an existing one 0700 when this user owns it; refuse a
    directory someone else owns (they could read or swap the keys and the audit log)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise PermissionError(
            f"data directory {path} is owned by uid {info.st_uid}, not by this user (uid "
            f"{os.geteuid()}): it holds the colony's keys and audit log; chown it to uid "
            f"{os.geteuid()} or choose another data directory")
    if info.st_mode & 0o777 != 0o700:
        log.warning("data directory %s was %o; made it 0700", path, info.st_mode & 0o777)
        path.chmod(0o700)


def _write(path: pathlib.Path, data: bytes, mode: int) -> None:
    files.write_atomic(path, data, mode=mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Coral"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=days)
    )


def _write_ca(files: ColonyFiles) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"Coral colony CA {files.colony_id.read_text().strip()}")
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name)
    builder = _validity(builder, 3650).serial_number(x509.random_serial_number())
    builder = builder.public_key(key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    ).add_extension(
        x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
    )
    cert = builder.sign(key, hashes.SHA256())
    _write(files.ca_key, _key_pem(key), 0o600)
    _write(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    for stale in (files.server_cert, files.server_key):
        stale.unlink(missing_ok=True)  # a new CA invalidates the old server certificate


def _write_server_cert(files: ColonyFiles, hostnames: tuple[str, ...]) -> None:
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    names = {"localhost", socket.gethostname(), *hostnames}
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names)]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    builder = x509.CertificateBuilder().subject_name(_name("coral-colony"))
    builder = builder.issuer_name(ca_cert.subject).public_key(key.public_key())
    builder = _validity(builder, 825).serial_number(x509.random_serial_number())
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(files.server_key, _key_pem(key), 0o600)
    _write(files.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def issue_client_cert(files: ColonyFiles, *, identity: str) -> tuple[bytes, bytes]:
    """A client certificate (CN = identity) signed by the colony CA: (cert PEM, key PEM)."""
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateBuilder().subject_name(_name(identity))
    builder = builder.issuer_name(ca_cert.subject).public_key(key.public_key())
    builder = _validity(builder, 365).serial_number(x509.random_serial_number())
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)
