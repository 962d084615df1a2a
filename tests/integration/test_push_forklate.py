"""Fork-late with a real `b2bua run`: a call from the trunk to an extension whose softphones sleep
(their TCP connections closed) wakes them through the APNs and FCM stand-ins; a woken phone that
registers again on a new connection gets the INVITE there, with the Call-ID its push announced;
an iPhone that does not come is told the call is over; a late waker gets nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from b2bua.push import PushTarget
from b2bua.sip.message import Request, Response, parse_message
from b2bua.testing.net import free_port
from b2bua.testing.push_apns import ApnsStandIn, ReceivedPush
from b2bua.testing.push_fcm import FcmStandIn, ReceivedMessage
from b2bua.testing.push_keys import make_apns_key, make_service_account
from b2bua.testing.push_phone import PushPhone
from b2bua.testing.server import RunningServer, start_server, write_config

TOPIC = "org.example.phone.voip"
PARAM = f"DEF123GHIJ.{TOPIC}"
SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n")


@dataclass
class Platform:
    server: RunningServer
    apns: ApnsStandIn
    fcm: FcmStandIn
    wait: int


async def platform(tmp_path: Path, wait: int) -> Platform:
    key = make_apns_key(tmp_path)
    apns = ApnsStandIn(key)
    fcm = FcmStandIn()
    await apns.start()
    await fcm.start()
    account = make_service_account(tmp_path, fcm.token_uri)
    fcm.trust(account)
    trunk_port = free_port()
    config = write_config(tmp_path, f"""
        [server]
        domain = "pbx.test"
        data_dir = "var"
        auth_algorithms = ["SHA-256"]

        [registrar]
        keepalive_interval = 0

        [media]
        anchor = false

        [push]
        wait = {wait}

        [push.apns]
        key_file = "{key.key_file.name}"
        key_id = "{key.key_id}"
        team_id = "{key.team_id}"
        url = "{apns.url}"

        [push.fcm]
        service_account = "{account.path.name}"
        url = "{fcm.url}"

        [[trunks]]
        name = "carrier"
        address = "127.0.0.2:{trunk_port}"
        inbound_from = ["127.0.0.2/32"]
        did = {{ "0442930600" = "1001" }}

        [[users]]
        extension = "1001"
        name = "Alice Martin"
        secret = "secret1001"
        ring_timeout = 20
        no_answer = {{ kind = "busy" }}

          [[users.devices]]
          type = "softphone"
          label = "iPhone"

          [[users.devices]]
          type = "softphone"
          label = "Android"
    """)
    return Platform(start_server(config), apns, fcm, wait)


@pytest.fixture
async def short_wait(tmp_path: Path) -> AsyncIterator[Platform]:
    p = await platform(tmp_path, wait=2)
    yield p
    p.server.stop()
    await p.apns.stop()
    await p.fcm.stop()


@pytest.fixture
async def long_wait(tmp_path: Path) -> AsyncIterator[Platform]:
    p = await platform(tmp_path, wait=10)
    yield p
    p.server.stop()
    await p.apns.stop()
    await p.fcm.stop()


class Caller:
    """The carrier: sends an INVITE to a DID over UDP from 127.0.0.2, and a CANCEL."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.call_id = f"carrier-{os.urandom(4).hex()}"
        self.branch = f"z9hG4bK{os.urandom(6).hex()}"
        self.responses: list[Response] = []

    def _request(self, method: str, body: bytes = b"") -> bytes:
        host, port = self.server.sip
        lines = [
            f"{method} sip:0442930600@{host}:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.2:{self.port};branch={self.branch};rport",
            "Max-Forwards: 70",
            '"Bruno Petit" <sip:0600000001@127.0.0.2>;tag=car1'.join(("From: ", "")),
            f"To: <sip:0442930600@{host}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: 1 {method}",
            f"Contact: <sip:0600000001@127.0.0.2:{self.port}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def invite(self) -> float:
        self.sock.sendto(self._request("INVITE", SDP), self.server.sip)
        return time.monotonic()

    def cancel(self) -> None:
        self.sock.sendto(self._request("CANCEL"), self.server.sip)

    async def wait_for(self, status: int, timeout: float = 5.0) -> Response:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.responses:
                if r.status == status:
                    return r
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), 0.2)
            except TimeoutError:
                continue
            message = parse_message(data)
            if isinstance(message, Response):
                self.responses.append(message)
        raise TimeoutError(f"no {status}: got {[r.status for r in self.responses]}")


async def sleeping_phone(p: Platform, push: PushTarget) -> PushPhone:
    phone = PushPhone(p.server.sip, "1001", "secret1001", domain="pbx.test", push=push)
    assert (await phone.register(expires=600)).status == 200
    await phone.close()  # suspended: the connection drops, the binding stays
    await asyncio.sleep(0.3)  # the server notices the connection is gone
    return phone


async def next_invite(phone: PushPhone, timeout: float) -> tuple[Request, float]:
    while True:
        request = await asyncio.wait_for(phone.requests.get(), timeout)
        if request.method == "INVITE":
            return request, time.monotonic()


async def test_woken_phones_get_the_invite_on_their_new_flow(long_wait: Platform) -> None:
    p = long_wait
    ios_token, android_token = "1a" * 32, "android-registration-token"
    p.apns.add_device(ios_token, TOPIC)
    p.fcm.add_device(android_token)
    ios = await sleeping_phone(p, PushTarget("apns", ios_token, PARAM))
    android = await sleeping_phone(p, PushTarget("fcm", android_token, "b2bua-test"))
    caller = Caller(p.server)
    woken: asyncio.Queue[tuple[str, float, str]] = asyncio.Queue()
    p.apns.on_push = lambda push: woken.put_nowait(("apns", push.at, push.payload["call_id"]))
    p.fcm.on_push = lambda m: woken.put_nowait(("fcm", m.at, m.data["call_id"]))

    sent = caller.invite()
    await caller.wait_for(180)  # ringback while the phones wake up
    pushes = {}
    for _ in range(2):
        provider, at, call_id = await asyncio.wait_for(woken.get(), 5)
        pushes[provider] = (at, call_id)
    assert pushes["apns"][1] != pushes["fcm"][1]  # one dialog per branch
    apns_push: ReceivedPush = p.apns.received[0]
    assert apns_push.push_type == "voip" and apns_push.payload["type"] == "call"
    assert apns_push.payload["caller"] == "0600000001"
    assert apns_push.payload["display_name"] == "Bruno Petit"
    fcm_push: ReceivedMessage = p.fcm.received[0]
    assert fcm_push.android["priority"] == "high"

    assert (await android.register(expires=600)).status == 200  # woken: a new connection
    invite, got = await next_invite(android, 5)
    assert invite.call_id == pushes["fcm"][1]
    assert android.local_port and f":{android.local_port};" in str(invite.request_uri) + ";"
    invite_to_push = max(at for at, _ in pushes.values()) - sent
    push_to_invite = got - pushes["fcm"][0]
    print(f"\nINVITE to push {invite_to_push * 1000:.1f} ms; push to INVITE on the new flow "
          f"(REGISTER with digest included) {push_to_invite * 1000:.1f} ms")
    assert invite_to_push < 1.0

    caller.cancel()
    await caller.wait_for(487)
    # The iPhone never came: its CallKit call is ended by a second push, which replaces the
    # first one on Apple's side (same collapse id).
    ended = await p.apns.wait_for_pushes(2)
    assert ended[1].payload["type"] == "call_ended"
    assert ended[1].payload["reason"] == "cancelled"
    assert ended[1].payload["call_id"] == pushes["apns"][1]
    assert ended[1].collapse_id == ended[0].collapse_id
    assert len(p.fcm.received) == 1  # Android gets no call_ended
    await android.close()
    await ios.close()


async def test_late_waker_gets_no_invite_and_ios_is_told(short_wait: Platform) -> None:
    p = short_wait
    token = "2b" * 32
    p.apns.add_device(token, TOPIC)
    ios = await sleeping_phone(p, PushTarget("apns", token, PARAM))
    caller = Caller(p.server)
    caller.invite()
    await p.apns.wait_for_pushes(1)
    ended = await p.apns.wait_for_pushes(2, timeout=p.wait + 3)
    assert ended[1].payload["type"] == "call_ended" and ended[1].payload["reason"] == "timeout"
    # Nobody else to ring: the caller gets the no-answer destination (busy).
    await caller.wait_for(486, timeout=3)
    assert (await ios.register(expires=600)).status == 200  # too late
    with pytest.raises(TimeoutError):
        await next_invite(ios, 1.0)
    await ios.close()
