"""TLS material for the webhook: a CA, a serving certificate, the Secret and caBundle.

Keys are ECDSA P-256 (fast to make, accepted by the API server). Functions return PEM
bytes; the object builders return plain Kubernetes objects as data.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coral_lib import files

INJECT_CA_FROM = "cert-manager.io/inject-ca-from"
TLS_FILES = ("ca.crt", "tls.crt", "tls.key")


@dataclasses.dataclass(frozen=True)
class TLSMaterial:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def write_files(folder: str | os.PathLike, tls: TLSMaterial) -> pathlib.Path:
    """Write ca.crt, tls.crt, tls.key into `folder` (made if absent), each atomically 0600.

    An interrupted run leaves each file either old or new, never truncated.
    """
    out = pathlib.Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in zip(TLS_FILES, (tls.ca_pem, tls.cert_pem, tls.key_pem), strict=True):
        files.write_atomic(out / name, data, mode=0o600)
    return out


def dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach the webhook Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def generate_ca(*, common_name: str = "coral-webhook-ca", days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _base(name, name, key.public_key(), days).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    ).add_extension(
        x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False,
        ),
        critical=True,
    )
    return _pem(builder.sign(key, hashes.SHA256()), key)


def serving_cert(
    *,
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    service: str,
    namespace: str,
    ips: Sequence[str] = (),
    days: int = 365,
) -> tuple[bytes, bytes]:
    """A serving certificate signed by the CA with the Service DNS names (+ IPs) as SANs."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names = dns_names(service, namespace)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[2])])
    builder = _base(subject, ca_cert.subject, key.public_key(), days).add_extension(
        x509.SubjectAlternativeName(sans), critical=False
    ).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return _pem(builder.sign(ca_key, hashes.SHA256()), key)


def generate(
    *, service: str, namespace: str, ips: Sequence[str] = (), days: int = 365
) -> TLSMaterial:
    """A fresh CA and a serving certificate for the Service, in one call."""
    ca_pem, ca_key = generate_ca()
    cert_pem, key_pem = serving_cert(
        ca_cert_pem=ca_pem, ca_key_pem=ca_key, service=service, namespace=namespace,
        ips=ips, days=days,
    )
    return TLSMaterial(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)


def ca_bundle(ca_pem: bytes) -> str:
    """The MutatingWebhookConfiguration caBundle: the CA PEM, base64-encoded."""
    return base64.b64encode(ca_pem).decode("ascii")


def tls_secret(*, name: str, namespace: str, tls: TLSMaterial) -> dict[str, Any]:
    """A kubernetes.io/tls Secret holding the serving pair and the CA (ca.crt)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": ca_bundle(tls.cert_pem),
            "tls.key": ca_bundle(tls.key_pem),
            "ca.crt": ca_bundle(tls.ca_pem),
        },
    }


def cert_manager_objects(
    *, name: str, namespace: str, service: str, secret_name: str
) -> list[dict[str, Any]]:
    """A self-signed Issuer and a Certificate whose Secret the webhook mounts; cert-manager's
    cainjector copies the CA into the webhook configuration (see inject_ca_from)."""
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": f"{name}-selfsigned", "namespace": namespace},
        "spec": {"selfSigned": {}},
    }
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": secret_name,
            "dnsNames": dns_names(service, namespace),
            "issuerRef": {"kind": "Issuer", "name": f"{name}-selfsigned"},
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
    }
    return [issuer, certificate]


def inject_ca_from(*, namespace: str, certificate: str) -> dict[str, str]:
    """The annotation that tells cert-manager which Certificate's CA goes into caBundle."""
    return {INJECT_CA_FROM: f"{namespace}/{certificate}"}


def _base(
    subject: x509.Name, issuer: x509.Name, public_key: Any, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _pem(cert: x509.Certificate, key: Any) -> tuple[bytes, bytes]:
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
