"""Key material for the push stand-ins: an APNs `.p8` signing key, a Google service-account key
file, and a self-signed TLS certificate for 127.0.0.1. Made fresh by each test run
(`cryptography`), never shipped."""

from __future__ import annotations

import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
NO_PASSWORD = serialization.NoEncryption()


@dataclass(frozen=True, slots=True)
class ApnsKey:
    key_file: Path
    key_id: str
    team_id: str
    public_key: ec.EllipticCurvePublicKey


def make_apns_key(directory: Path, key_id: str = "ABC123DEFG", team_id: str = "DEF123GHIJ") -> ApnsKey:
    """A P-256 key written as Apple writes it (`AuthKey_<key id>.p8`, PKCS#8 PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = directory / f"AuthKey_{key_id}.p8"
    path.write_bytes(key.private_bytes(PEM, PKCS8, NO_PASSWORD))
    return ApnsKey(path, key_id, team_id, key.public_key())


@dataclass(frozen=True, slots=True)
class ServiceAccountKey:
    path: Path
    project_id: str
    client_email: str
    private_key_id: str
    public_key: rsa.RSAPublicKey


def make_service_account(
    directory: Path, token_uri: str, project_id: str = "b2bua-test"
) -> ServiceAccountKey:
    """A service-account key file with the fields Google puts in one, `token_uri` pointing at
    the stand-in's token endpoint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
    key_id = "0123456789abcdef0123456789abcdef01234567"
    data = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": key.private_bytes(PEM, PKCS8, NO_PASSWORD).decode(),
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    path = directory / "fcm-service-account.json"
    path.write_text(json.dumps(data, indent=2))
    return ServiceAccountKey(path, project_id, email, key_id, key.public_key())


@dataclass(frozen=True, slots=True)
class Certificate:
    cert_file: Path  # also the CA file a client trusts (self-signed)
    key_file: Path


def make_certificate(directory: Path, host: str = "127.0.0.1", name: str = "push") -> Certificate:
    """A self-signed certificate for `host` (an IP address or a DNS name), valid one day."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / f"{name}-cert.pem"
    key_file = directory / f"{name}-key.pem"
    cert_file.write_bytes(cert.public_bytes(PEM))
    key_file.write_bytes(key.private_bytes(PEM, PKCS8, NO_PASSWORD))
    return Certificate(cert_file, key_file)
