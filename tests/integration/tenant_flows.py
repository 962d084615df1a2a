"""SIP flows of tenants over real sockets: SIPp devices that register in a tenant's domain and
place authenticated calls from it, and a small UDP client for REGISTER exchanges whose answers
the tests read (realm, status, reason)."""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass
from pathlib import Path

from b2bua.registrar.digest import answer_challenge
from b2bua.sip.message import Response, parse_message
from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer
from b2bua.testing.sipp import SippResult, run_sipp, start_sipp
from tests.integration.flows import SCENARIOS, Device, uac_auth_call


def register_xml(domain: str) -> str:
    """The register scenario with the tenant's domain in the Request-URI, From and To."""
    xml = (SCENARIOS / "register.xml").read_text()
    xml = xml.replace("REGISTER sip:[remote_ip]:[remote_port] SIP/2.0",
                      f"REGISTER sip:{domain} SIP/2.0")
    return xml.replace("<sip:[field0]@[remote_ip]:[remote_port]>", f"<sip:[field0]@{domain}>")


def register_in(server: RunningServer, domain: str, ext: str, secret: str, port: int,
                workdir: Path, expires: int = 3600) -> SippResult:
    """SIPp registers `ext@domain` (contact 127.0.0.1:port) from that very port."""
    workdir.mkdir(parents=True, exist_ok=True)
    inf = workdir / "reg.csv"
    inf.write_text(f"SEQUENTIAL\n{ext};127.0.0.1;{port}\n")
    return run_sipp(register_xml(domain), workdir, server.sip, name="register", local_port=port,
                    calls=1, extra=("-inf", str(inf), "-au", ext, "-ap", secret,
                                    "-auth_uri", domain,
                                    "-key", "expires", str(expires)))


def device_in(server: RunningServer, domain: str, ext: str, secret: str, workdir: Path,
              scenario: str = "uas_answer", pause_ms: int = 300, calls: int = 1) -> Device:
    """A SIPp device of `ext@domain`: registers, then answers `calls` calls."""
    port = free_port()
    reg = register_in(server, domain, ext, secret, port, workdir / "reg")
    assert reg.ok, reg.describe()
    proc = start_sipp((SCENARIOS / f"{scenario}.xml").read_text(), workdir, None, name=scenario,
                      local_port=port, calls=calls, extra=("-d", str(pause_ms)), timeout_s=40)
    return Device(port, proc, workdir)


def call_from(server: RunningServer, domain: str, ext: str, secret: str, dialled: str,
              workdir: Path, final: int = 200, pause_ms: int = 300,
              request_host: str | None = None) -> SippResult:
    """`ext@domain` calls `dialled` (authenticating with its secret); `final` expected."""
    xml = uac_auth_call(ext, final).replace(f"<sip:{ext}@[remote_ip]>", f"<sip:{ext}@{domain}>")
    extra: tuple[str, ...] = ()
    if request_host is not None:
        xml = xml.replace("INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
                          f"INVITE sip:[service]@{request_host} SIP/2.0")
        extra = ("-auth_uri", f"{dialled}@{request_host}")
    return run_sipp(xml, workdir, server.sip, name="caller", local_port=free_port(),
                    service=dialled, calls=1, extra=("-d", str(pause_ms), "-au", ext,
                                                     "-ap", secret, *extra), wait=60)


class Listener:
    """A UDP socket on a device's port that records what reaches it (a device that must not
    ring)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.05)

    def received(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65535))
            except TimeoutError:
                return out

    def close(self) -> None:
        self.sock.close()


@dataclass
class Answer:
    status: int
    reason: str
    realm: str | None


class RawPhone:
    """REGISTER over one UDP socket, answering a 401 once with digest credentials."""

    _ids = itertools.count(1)

    def __init__(self, server: RunningServer, domain: str, ext: str, secret: str,
                 host: str | None = None) -> None:
        self.server = server
        self.domain = domain
        self.host = host or domain
        self.ext = ext
        self.secret = secret
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.call_id = f"raw-{next(self._ids)}-{self.port}@test"
        self.cseq = 0

    def _send(self, authorization: str | None, expires: int) -> Response:
        self.cseq += 1
        lines = [
            f"REGISTER sip:{self.host} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{self.call_id}"
            f"{self.cseq}",
            f"From: <sip:{self.ext}@{self.host}>;tag=r{self.cseq}",
            f"To: <sip:{self.ext}@{self.host}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.ext}@127.0.0.1:{self.port}>",
            f"Expires: {expires}",
            "Max-Forwards: 70",
            "User-Agent: RawPhone",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        self.sock.sendto(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(),
                         self.server.sip)
        while True:
            message = parse_message(self.sock.recv(65535))
            if isinstance(message, Response) and message.status >= 200:
                return message

    def register(self, expires: int = 600, answer: bool = True) -> Answer:
        response = self._send(None, expires)
        realm = None
        challenge = response.headers.get("www-authenticate")
        if challenge is not None:
            realm = challenge.split('realm="', 1)[1].split('"', 1)[0]
        if response.status == 401 and answer and challenge is not None:
            authorization = answer_challenge(
                challenge, username=self.ext, password=self.secret, method="REGISTER",
                uri=f"sip:{self.host}", cnonce="c0ffee", nc=1)
            response = self._send(authorization, expires)
        return Answer(response.status, response.reason, realm)

    def close(self) -> None:
        self.sock.close()
