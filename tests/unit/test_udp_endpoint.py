"""The UDP endpoint over a real loopback socket: what it hands the receiver, byte for byte.

Datagrams are read into one buffer kept for the socket and copied out at their size; these tests
pin what that must keep true: every datagram arrives whole and alone (the largest UDP allows,
the smallest after a large one), a datagram handed over earlier is not changed by the next read,
and keep-alives are not handed over at all.
"""

from __future__ import annotations

import asyncio
import socket

from b2bua.sip.flow import Flow
from b2bua.transport.base import ListenSpec
from b2bua.transport.udp import listen_udp


class Collect:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Flow]] = []

    def message_received(self, data: bytes, flow: Flow) -> None:
        self.got.append((data, flow))

    def connection_lost(self, flow: Flow) -> None:
        raise AssertionError("UDP has no connection to lose")


async def _exchange(datagrams: list[bytes], expected: int) -> tuple[list[tuple[bytes, Flow]], int]:
    collect = Collect()
    endpoint = await listen_udp(ListenSpec("udp", "127.0.0.1", 0), collect)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        for data in datagrams:
            peer.sendto(data, (endpoint.local_host, endpoint.local_port))
        for _ in range(200):
            if len(collect.got) >= expected:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # anything more would have come by now
        return collect.got, peer.getsockname()[1]
    finally:
        peer.close()
        endpoint.close()


def test_datagrams_of_every_size_arrive_whole_and_unchanged_by_later_reads() -> None:
    largest = bytes(i % 251 for i in range(65_507))  # the largest UDP payload over IPv4
    sent = [b"OPTIONS " + b"a" * 900, largest, b"x" * 5, b"INVITE small"]
    got, port = asyncio.run(_exchange(sent, len(sent)))
    assert [data for data, _ in got] == sent  # whole, alone, and not overwritten since
    assert all(type(data) is bytes for data, _ in got)
    flow = got[0][1]
    assert (flow.transport, flow.host, flow.port) == ("udp", "127.0.0.1", port)


def test_keep_alives_are_not_handed_over() -> None:
    sent = [b"\r\n\r\n", b"\r\n", b"", b"\x00", b"SIP/2.0 200 OK\r\n"]
    got, _ = asyncio.run(_exchange(sent, 1))
    assert [data for data, _ in got] == [b"SIP/2.0 200 OK\r\n"]
