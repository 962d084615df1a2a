"""A small HTTP client for the dashboard API (cookie, CSRF header) and the test configuration."""

from __future__ import annotations

import http.client
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from b2bua.testing.server import RunningServer, start_server, write_config

ADMIN_PASSWORD = "admin-test-pw-1"
# A Wednesday, 10:00 in Paris: inside the default office hours below.
TEST_NOW = "2026-01-07T10:00:00+01:00"

CONFIG = """
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:5060"]
data_dir = "var"
timezone = "Europe/Paris"
country_code = "33"
auth_algorithms = ["MD5"]

[registrar]
keepalive_interval = 0

[[trunks]]
name = "carrier"
address = "127.0.0.2:5080"
inbound_from = ["127.0.0.2/32"]
did = {{ "0442930600" = "1001", "0442930601" = "1002", "0442930699" = "800" }}

[[system_extensions]]
extension = "800"
name = "Accueil"
members = ["1001", "1002"]

[[users]]
extension = "1001"
name = "Alice Martin"
secret = "secret1001"
mobile = "0600000001"

  [[users.devices]]
  type = "sip"
  label = "Bureau"

  [[users.devices]]
  type = "softphone"
  label = "Mobile"

  [users.schedule]
  enabled = true
  closed = {{ kind = "voicemail" }}

  [[users.schedule.hours]]
  start = "08:00"
  end = "18:00"
  days = ["mon", "tue", "wed", "thu", "fri"]

[[users]]
extension = "1002"
name = "Bruno Petit"
secret = "secret1002"

  [[users.devices]]
  type = "sip"
  label = "Bureau"

[[users]]
extension = "1003"
name = "Chloé Durand"
secret = "secret1003"
{extra}
"""


SCHEDULE = {"enabled": True, "hours": [{"start": "08:00", "end": "18:00",
                                       "days": ["mon", "tue", "wed", "thu", "fri"]}]}


def make_config(directory: Path, extra: str = "") -> Path:
    return write_config(directory, CONFIG.format(extra=extra))


def start(
    directory: Path, extra: str = "", env: dict[str, str] | None = None, *, rewrite: bool = True
) -> RunningServer:
    """`b2bua run` on the test configuration (`rewrite=False`: the file already in `directory`),
    the rules' clock pinned to TEST_NOW."""
    config = make_config(directory, extra) if rewrite else directory / "b2bua.toml"
    full_env = {"B2BUA_ADMIN_PASSWORD": ADMIN_PASSWORD, "B2BUA_TEST_NOW": TEST_NOW}
    full_env.update(env or {})
    server = start_server(config, env=full_env)
    wait_http(server)
    return server


def wait_http(server: RunningServer, timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Api(server.http_base).get("/health").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("HTTP did not come up:\n" + server.log()[-3000:])


@dataclass
class Resp:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Resp {self.status} {self.body[:300]!r}>"


@dataclass
class Api:
    """One browser-like client: keeps the session cookie and sends the CSRF token."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None

    def request(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
        content_type: str | None = None, headers: dict[str, str] | None = None,
        csrf: bool = True, timeout: float = 60,
    ) -> Resp:
        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif content_type:
            hdrs["Content-Type"] = content_type
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            hdrs.setdefault("X-CSRF-Token", self.csrf)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if value in ('""', "") or "Max-Age=0" in header or "expires=Thu, 01 Jan 1970" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return Resp(response.status, response.headers, payload)

    def get(self, path: str, **kw: Any) -> Resp:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Resp:
        return self.request("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Resp:
        return self.request("PATCH", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Resp:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Resp:
        return self.request("DELETE", path, **kw)

    def login(self, login: str, password: str) -> Resp:
        r = self.post("/api/login", {"login": login, "password": password})
        if r.status == 200:
            self.csrf = r.json()["csrf_token"]
        return r


def signed_in(server: RunningServer, login: str, password: str | None = None) -> Api:
    api = Api(server.http_base)
    if password is None:
        password = ADMIN_PASSWORD if login == "admin" else f"secret{login}"
    r = api.login(login, password)
    assert r.status == 200, r
    return api


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, (filename, content) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def tone_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A short sine tone as WAV (what an admin would upload)."""
    import io
    import math
    import struct
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
            for i in range(int(seconds * rate))
        )
        w.writeframes(frames)
    return buf.getvalue()
