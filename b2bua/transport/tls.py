"""TLS contexts from the configured certificate and key, and a self-signed pair for tests."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def client_context(verify: bool = True, cafile: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_self_signed(directory: Path, common_name: str = "localhost",
                     addresses: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` (RSA 2048, 1 day) into `directory` with openssl, for
    `common_name` and the IP `addresses`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make a self-signed certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={common_name}", "-addext", "subjectAltName=" + ",".join(
             [f"DNS:{common_name}", *(f"IP:{a}" for a in addresses)]),
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key
