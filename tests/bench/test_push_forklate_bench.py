"""Fork-late under load with a real `b2bua run` (run with
`pytest -m bench tests/bench/test_push_forklate_bench.py -s`).

1,000 calls at 20 calls/s from the trunk to 40 extensions, each with one sleeping iPhone-like
softphone (APNs VoIP, TCP). For every call: the push reaches the APNs stand-in, the phone wakes
(a new TCP connection, REGISTER with digest), the INVITE reaches it on that connection with the
Call-ID its push announced, it answers 486 and falls asleep again (connection closed). Measured:
INVITE to push (the carrier's INVITE sent to the push arriving at the stand-in) and push to INVITE
(the push arriving to the INVITE arriving on the phone's new connection). Checked: every call got
exactly one INVITE to its phone (no duplicate branch), with the pushed Call-ID, and at the end
each extension has one binding (no leaked binding) and no call is left.

Bounded: 1,000 calls, loopback only; `B2BUA_BENCH_CALLS` makes it smaller.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from b2bua.push import PushTarget
from b2bua.sip.message import Request, Response, parse_message
from b2bua.testing.net import free_port
from b2bua.testing.push_apns import ApnsStandIn, ReceivedPush
from b2bua.testing.push_keys import make_apns_key
from b2bua.testing.push_phone import PushPhone
from b2bua.testing.server import start_server, write_config

pytestmark = pytest.mark.bench

TOPIC = "org.example.phone.voip"
PARAM = f"DEF123GHIJ.{TOPIC}"
N_CALLS = int(os.environ.get("B2BUA_BENCH_CALLS", "1000"))
RATE = 20.0
N_EXT = 40
SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Carrier(asyncio.DatagramProtocol):
    """Sends the INVITEs from 127.0.0.2 and ACKs their final responses."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.finals: dict[str, int] = {}
        self.sent: dict[str, float] = {}  # by the caller's number (one per call)
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def invite(self, server: tuple[str, int], n: int) -> None:
        did = f"04429307{n % N_EXT:02d}"
        caller = f"06{n:08d}"
        lines = [
            f"INVITE sip:{did}@{server[0]}:{server[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.2:{self.port};branch=z9hG4bKc{n};rport",
            "Max-Forwards: 70",
            f'From: "Bruno Petit" <sip:{caller}@127.0.0.2>;tag=c{n}',
            f"To: <sip:{did}@{server[0]}>",
            f"Call-ID: carrier-{n}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:{caller}@127.0.0.2:{self.port}>",
            "Content-Type: application/sdp",
            f"Content-Length: {len(SDP)}",
        ]
        assert self.transport is not None
        self.sent[caller] = time.monotonic()
        self.transport.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + SDP, server)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if not isinstance(message, Response) or message.status < 300:
            return
        self.finals[message.call_id] = message.status
        via = message.headers.get("via") or ""
        ack = (
            f"ACK {message.to.uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
            f"From: {message.headers.get('from')}\r\nTo: {message.headers.get('to')}\r\n"
            f"Call-ID: {message.call_id}\r\nCSeq: {message.cseq.number} ACK\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        assert self.transport is not None
        self.transport.sendto(ack, addr)


async def test_thousand_pushed_calls_at_20_per_second(tmp_path: Path) -> None:
    key = make_apns_key(tmp_path)
    apns = ApnsStandIn(key)
    await apns.start()
    users = "\n".join(f"""
        [[users]]
        extension = "{2000 + i}"
        name = "Mobile {i}"
        secret = "secret{i}"
        no_answer = {{ kind = "busy" }}

          [[users.devices]]
          type = "softphone"
          label = "iPhone"
    """ for i in range(N_EXT))
    dids = ", ".join(f'"04429307{i:02d}" = "{2000 + i}"' for i in range(N_EXT))
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
        wait = 10

        [push.apns]
        key_file = "{key.key_file.name}"
        key_id = "{key.key_id}"
        team_id = "{key.team_id}"
        url = "{apns.url}"

        [[trunks]]
        name = "carrier"
        address = "127.0.0.2:{free_port()}"
        inbound_from = ["127.0.0.2/32"]
        did = {{ {dids} }}
    """ + users)
    server = start_server(config)
    loop = asyncio.get_running_loop()
    phones: dict[str, PushPhone] = {}
    invites: dict[str, list[tuple[str, float]]] = {}  # carrier call -> (Call-ID, arrival)
    pushes: dict[str, ReceivedPush] = {}  # pushed Call-ID -> push
    tasks: set[asyncio.Task[None]] = set()
    try:
        for i in range(N_EXT):
            token = f"{i + 1:064x}"
            apns.add_device(token, TOPIC)
            phone = PushPhone(server.sip, str(2000 + i), f"secret{i}", domain="pbx.test",
                              push=PushTarget("apns", token, PARAM))
            assert (await phone.register(expires=3600)).status == 200
            await phone.close()
            phones[token] = phone

        async def serve_call(phone: PushPhone, push: ReceivedPush) -> None:
            await phone.wake(expires=3600)
            request: Request = await asyncio.wait_for(phone.requests.get(), 10)
            while request.method != "INVITE":
                request = await asyncio.wait_for(phone.requests.get(), 10)
            arrived = time.monotonic()
            invites.setdefault(push.payload["call_id"], []).append((request.call_id, arrived))
            phone.respond(request, 486, to_tag=os.urandom(4).hex())
            await asyncio.sleep(0.05)
            await phone.close()

        def on_push(push: ReceivedPush) -> None:
            if push.payload["type"] != "call":
                return
            pushes[push.payload["call_id"]] = push
            task = loop.create_task(serve_call(phones[push.token], push))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        apns.on_push = on_push
        _, carrier = await loop.create_datagram_endpoint(Carrier, local_addr=("127.0.0.2", 0))
        start = time.monotonic()
        for n in range(N_CALLS):
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
            carrier.invite(server.sip, n)
        deadline = time.monotonic() + 30
        while (len(carrier.finals) < N_CALLS or tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - start
        assert len(carrier.finals) == N_CALLS, f"{len(carrier.finals)} calls ended"
        assert set(carrier.finals.values()) == {486}
        assert len(pushes) == N_CALLS
        duplicated = {cid: got for cid, got in invites.items() if len(got) != 1}
        assert not duplicated, f"{len(duplicated)} calls rang a phone twice"
        assert all(got[0][0] == cid for cid, got in invites.items())  # the pushed Call-ID
        assert len(invites) == N_CALLS
        out = subprocess.run(
            [sys.executable, "-m", "b2bua", "devices", "--config", str(config), "--json"],
            capture_output=True, text=True, timeout=30, check=True)
        rows = [d for ext in json.loads(out.stdout) for d in ext["devices"]
                if d["state"] != "offline"]
        assert len(rows) == N_EXT  # one binding per phone: nothing leaked
        metrics = urllib.request.urlopen(server.http_base + "/metrics", timeout=10).read().decode()
        assert "b2bua_calls_active 0" in metrics
    finally:
        for phone in phones.values():
            await phone.close()
        server.stop()
        await apns.stop()
    invite_to_push = [(p.at - carrier.sent[p.payload["caller"]]) * 1000 for p in pushes.values()]
    push_to_invite = [(got[0][1] - pushes[cid].at) * 1000 for cid, got in invites.items()]
    print(f"\n{N_CALLS} pushed calls in {elapsed:.1f} s: INVITE to push p50 "
          f"{pct(invite_to_push, .5):.1f} ms, p99 {pct(invite_to_push, .99):.1f} ms, max "
          f"{max(invite_to_push):.1f} ms; push to INVITE on the new flow (TCP connect, REGISTER "
          f"with digest) p50 {pct(push_to_invite, .5):.1f} ms, p99 {pct(push_to_invite, .99):.1f} "
          f"ms; {metrics.count('push')} push metric lines")
