"""The whole platform on loopback, as `scripts/cluster up` starts it: real PostgreSQL, two
`b2bua run` nodes with rtpengine, and Kamailio with the shipped edge configuration.

- A device registered through the edge (Path) is called by a carrier call arriving on either
  node: the node that did not take the REGISTER reads the binding from PostgreSQL, and both
  send the INVITE through the edge that holds the device's flow.
- Under a 50 calls/s load through the edge, one node is killed (SIGKILL): no registration is
  lost, every call that starts after the kill succeeds (the edge's dispatcher moves to the
  other node), the calls the dead node had answered are ended by the survivor (BYE on both
  legs, from the dialog journal), and the node, started again, takes calls again.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from b2bua.testing.net import free_port
from b2bua.testing.platform import Platform, up
from b2bua.testing.sipp import SippResult, finish, run_sipp, start_sipp
from tests.integration.flows import SCENARIOS, TRUNK_IP, uac_auth_call

USERS = 20
CONFIG_HEAD = """
[server]
domain = "pbx.test"
listen = ["udp:127.0.0.1:5060"]
timezone = "Europe/Paris"
auth_algorithms = ["MD5"]

[registrar]
keepalive_interval = 0
lockout_failures = 1000

[overload]
trusted = ["127.0.0.0/8"]

[[trunks]]
name = "carrier"
address = "127.0.0.2:5080"
inbound_from = ["127.0.0.2/32"]
did = { "0442930600" = "1001" }
"""
USER = """
[[users]]
extension = "{ext}"
name = "User {ext}"
secret = "secret{ext}"
ring_timeout = 20
no_answer = {{ kind = "busy" }}

  [[users.devices]]
  type = "sip"
  label = "Bureau"
"""

REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register through the edge">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@pbx.test>;tag=[pid]R[call_number]
      To: <sip:[field0]@pbx.test>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field0]@[field1]:[field2];transport=udp>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@pbx.test>;tag=[pid]R[call_number]
      To: <sip:[field0]@pbx.test>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[field0]@[field1]:[field2];transport=udp>
      [authentication]
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200">
    <action>
      <ereg regexp="Path: .*received=" search_in="msg" check_it="true" assign_to="p"/>
    </action>
  </recv>
  <Reference variables="p"/>
</scenario>
"""
UAC_CALL = (SCENARIOS / "uac_call.xml").read_text()
# A phone behind the edge: its responses echo the Record-Route (RFC 3261 §12.1.1), so the
# node's ACK and BYE come back through the edge.
UAS_ANSWER = (SCENARIOS / "uas_answer.xml").read_text().replace(
    "[last_CSeq:]", "[last_CSeq:]\n      [last_Record-Route:]")


def edge_caller(ext: str) -> str:
    """A phone's authenticated call through the edge: its ACK and BYE follow the route set
    the 200 recorded (the edge, then the node that owns the call)."""
    xml = uac_auth_call(ext)
    for cseq in ("CSeq: 2 ACK", "CSeq: 3 BYE"):
        assert cseq in xml
        xml = xml.replace(cseq, cseq + "\n      [routes]")
    return xml


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    directory = tmp_path_factory.mktemp("platform")
    config = directory / "cluster.toml"
    config.write_text(CONFIG_HEAD + "".join(USER.format(ext=1000 + i)
                                            for i in range(1, USERS + 1)))
    running = up(directory, nodes=2, config=config, log_level="DEBUG",
                 env={"B2BUA_ADMIN_PASSWORD": "admin-secret"})
    try:
        yield running
    finally:
        running.stop()


def register_all(platform: Platform, workdir: Path, device_port: int) -> SippResult:
    """Users 1001..1020 register through the edge (each with its own credentials); 1001's
    contact is the SIPp device."""
    result: SippResult | None = None
    for i in range(1, USERS + 1):
        ext = str(1000 + i)
        where = workdir / ext
        where.mkdir(parents=True, exist_ok=True)
        inf = where / "user.csv"
        inf.write_text(f"SEQUENTIAL\n{ext};127.0.0.1;{device_port if i == 1 else 40000 + i}\n")
        # From the contact's own port, as a phone does (the edge's Path records the
        # address the REGISTER came from: the device's flow).
        result = run_sipp(REGISTER, where, platform.edge.sip, name="register",
                          local_port=device_port if i == 1 else free_port(), calls=1,
                          extra=("-inf", str(inf), "-au", ext, "-ap", f"secret{ext}"))
        if not result.ok:
            return result
    assert result is not None
    return result


def stored_bindings(platform: Platform) -> list[tuple[str, str, list[str]]]:
    import asyncpg

    async def read() -> list[tuple[str, str, list[str]]]:
        conn = await asyncpg.connect(platform.store)
        try:
            rows = await conn.fetch("SELECT aor, contact, path FROM registrar_bindings"
                                    " ORDER BY aor")
        finally:
            await conn.close()
        return [(r[0], r[1], list(r[2] or [])) for r in rows]

    return asyncio.run(read())


@dataclass
class Device:
    port: int
    proc: object
    workdir: Path


def test_a_device_behind_the_edge_is_called_from_either_node(platform: Platform,
                                                             tmp_path: Path) -> None:
    port = free_port()
    reg = register_all(platform, tmp_path / "reg", port)
    assert reg.ok, reg.describe() + platform.edge.log()[-3000:]
    rows = stored_bindings(platform)
    assert len({aor for aor, _, _ in rows}) == USERS
    edge = f"{platform.edge.host}:{platform.edge.port}"
    assert all(path and edge in path[0] and "received=" in path[0] for _, _, path in rows)
    phone = start_sipp(UAS_ANSWER, tmp_path / "phone", None, name="phone", local_port=port,
                       calls=2, extra=("-d", "300"), timeout_s=40)
    time.sleep(0.3)
    for i, node in enumerate(platform.nodes):
        result = run_sipp(UAC_CALL, tmp_path / f"carrier{i}", node.sip, name="carrier",
                          local_port=free_port(host=TRUNK_IP), local_ip=TRUNK_IP,
                          service="0442930600", calls=1, extra=("-d", "300"))
        assert result.ok, (result.describe() + f"\n--- node {i + 1} ---\n"
                           + node.log()[-4000:] + "\n--- edge ---\n" + platform.edge.log()[-3000:])
    got = finish(phone, tmp_path / "phone", timeout=30)  # type: ignore[arg-type]
    assert got.ok, got.describe()
    # Both INVITEs came through the edge: the phone saw its Record-Route.
    assert got.messages().count("Record-Route:") >= 2


def sipp_counts(result: SippResult) -> tuple[int, int]:
    """(successful, failed) calls from SIPp's final statistics screen."""
    ok = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", result.stdout)
    bad = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", result.stdout)
    return (int(ok.group(1)) if ok else -1, int(bad.group(1)) if bad else -1)


def devices_registered(node_http: tuple[str, int]) -> int:
    """How many of the users the node's /health counts as bindings... via the API."""
    url = f"http://{node_http[0]}:{node_http[1]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^b2bua_sip_bindings (\d+)", text, re.M)
    return int(m.group(1)) if m else -1


def test_killing_a_node_under_load(platform: Platform, tmp_path: Path) -> None:
    port = free_port()
    reg = register_all(platform, tmp_path / "reg", port)
    assert reg.ok, reg.describe()
    before = stored_bindings(platform)
    assert len({aor for aor, _, _ in before}) == USERS
    before_calls = 400  # 8 s at 50 calls/s, 1 s each
    after_calls = 250
    callee = start_sipp(UAS_ANSWER, tmp_path / "callee", None, name="callee", local_port=port,
                        calls=before_calls + after_calls, extra=("-d", "200"), timeout_s=60,
                        trace=False)
    caller = edge_caller("1002")
    load = start_sipp(caller, tmp_path / "load1", platform.edge.sip, name="load1",
                      local_port=free_port(), service="1001", calls=before_calls, rate=50,
                      extra=("-d", "1000", "-au", "1002", "-ap", "secret1002"), timeout_s=60,
                      trace=False)
    time.sleep(3.0)
    victim = platform.nodes[0]
    victim.kill()
    killed_at = time.time()
    after = run_sipp(caller, tmp_path / "load2", platform.edge.sip, name="load2",
                     local_port=free_port(), service="1001", calls=after_calls, rate=50,
                     extra=("-d", "1000", "-au", "1002", "-ap", "secret1002"), timeout_s=60,
                     trace=True, wait=120)
    first = finish(load, tmp_path / "load1", timeout=90)  # type: ignore[arg-type]
    survivor = platform.nodes[1]
    ok_after, failed_after = sipp_counts(after)
    ok_before, failed_before = sipp_counts(first)
    report = (f"before/during the kill: {ok_before} ok, {failed_before} failed; "
              f"after: {ok_after} ok, {failed_after} failed\n--- survivor ---\n"
              + survivor.log()[-3000:])
    # Every call that started after the kill succeeded.
    assert (ok_after, failed_after) == (after_calls, 0), report + after.errors()[:6000]
    # The load that was running: only the calls the dead node held (or had just been sent)
    # may fail; SIPp's count may leave out the last few still open when it stopped.
    assert ok_before > before_calls // 2 and failed_before < before_calls // 4, report
    # No registration lost: all of them in PostgreSQL, and the survivor rings them.
    assert stored_bindings(platform) == before
    assert devices_registered(survivor.http) == len(before)
    # The calls the dead node had answered were ended by the survivor.
    deadline = time.monotonic() + 10
    ended = 0
    while time.monotonic() < deadline:
        ended = survivor.log().count("ended (node failure)")
        if ended:
            break
        time.sleep(0.2)
    assert ended > 0, report
    stamps = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
              for line in survivor.log().splitlines() if "ended (node failure)" in line]
    print(f"\nfailover: {report.splitlines()[0]}; the survivor ended {ended} calls of the "
          f"dead node {min(stamps) - killed_at:.1f} to {max(stamps) - killed_at:.1f} s after "
          "the kill")
    finish(callee, tmp_path / "callee", timeout=5)  # type: ignore[arg-type]

    # The node comes back by itself once started again, and takes calls.
    platform.start_node(0)
    phone = start_sipp(UAS_ANSWER, tmp_path / "phone", None, name="phone", local_port=port,
                       calls=1, extra=("-d", "200"), timeout_s=30)
    time.sleep(0.3)
    result = run_sipp(UAC_CALL, tmp_path / "carrier", platform.nodes[0].sip, name="carrier",
                      local_port=free_port(host=TRUNK_IP), local_ip=TRUNK_IP,
                      service="0442930600", calls=1, extra=("-d", "200"))
    assert result.ok, result.describe() + platform.nodes[0].log()[-3000:]
    assert finish(phone, tmp_path / "phone", timeout=20).ok  # type: ignore[arg-type]
    assert platform.to_json()["nodes"][0]["pid"] != victim.pid
