"""SIP over TLS with the certificate and key named in the configuration."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from b2bua.testing.net import free_port
from b2bua.testing.server import start_server, write_config
from b2bua.transport.tls import make_self_signed

OPTIONS = (
    "OPTIONS sip:b2bua@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKtls1;rport\r\n"
    "From: <sip:probe@127.0.0.1>;tag=t1\r\nTo: <sip:b2bua@127.0.0.1>\r\n"
    "Call-ID: tls-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def test_options_over_tls(tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path)
    config = write_config(tmp_path, f"""
        [server]
        domain = "pbx.test"
        listen = ["udp:127.0.0.1:5060"]
        data_dir = "var"
        tls_cert = "{cert.name}"
        tls_key = "{key.name}"
    """)
    tls_port = free_port()
    server = start_server(config, extra_args=("--listen", f"tls:127.0.0.1:{tls_port}"))
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(OPTIONS.encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = tls.recv(4096)
                assert chunk, "connection closed"
                reply += chunk
            assert reply.startswith(b"SIP/2.0 200 OK\r\n")
            assert b"Allow: " in reply
            # RFC 5626 keep-alive on the same connection.
            tls.sendall(b"\r\n\r\n")
            assert tls.recv(2) == b"\r\n"
    finally:
        server.stop()
