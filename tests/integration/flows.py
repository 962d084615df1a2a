"""Caller-side SIPp scenarios generated from one template, and device helpers."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from b2bua.testing.net import free_port
from b2bua.testing.server import RunningServer
from b2bua.testing.sipp import SippResult, finish, run_sipp, start_sipp

SCENARIOS = Path(__file__).parent / "scenarios"

_INVITE = """
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]U[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
"""

_ACK_NON2XX = """
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-{back}]
      From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]U[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'


def uac_expect(status: int, caller: str = "0611223344", reason_regexp: str | None = None) -> str:
    """INVITE, any provisional, then the final `status`, ACKed."""
    check = ""
    if reason_regexp:
        check = (
            "\n    <action>\n"
            f'      <ereg regexp="{reason_regexp}" search_in="msg" check_it="true" assign_to="r"/>\n'
            "    </action>\n  "
        )
    body = (
        _INVITE.format(caller=caller)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" optional="true"/>\n'
        + '  <recv response="183" optional="true"/>\n'
        + f'  <recv response="{status}">{check}</recv>\n'
        + _ACK_NON2XX.format(caller=caller, back=5)
        + '  <pause milliseconds="200"/>\n'
        + ('  <Reference variables="r"/>\n' if reason_regexp else "")
    )
    return _HEAD + f'<scenario name="uac expect {status}">{body}</scenario>\n'


def uac_cancel(caller: str = "0611223344", ring_ms: int = 500) -> str:
    """INVITE, wait for 180, hang up before anyone answers: CANCEL, 200, 487, ACK."""
    body = (
        _INVITE.format(caller=caller)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180"/>\n'
        + f'  <pause milliseconds="{ring_ms}"/>\n'
        + """  <send>
    <![CDATA[

      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-4]
      From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]U[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
""".replace("{caller}", caller)
        + _ACK_NON2XX.format(caller=caller, back=7)
        + '  <pause milliseconds="300"/>\n'
    )
    return _HEAD + f'<scenario name="uac cancel">{body}</scenario>\n'


def uac_reinvite(caller: str = "0611223344") -> str:
    """INVITE, 200, ACK, re-INVITE (new SDP), 200, ACK, BYE, 200."""
    xml = (SCENARIOS / "uac_call.xml").read_text()
    reinvite = """
  <send retrans="500">
    <![CDATA[

      INVITE [$target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "bench" <sip:caller[call_number]@[local_ip]:[local_port]>;tag=[pid]U[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=bench 53655765 2353687638 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendonly

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[

      ACK [$target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "bench" <sip:caller[call_number]@[local_ip]:[local_port]>;tag=[pid]U[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""
    xml = xml.replace("  <!-- talk time: the -d command-line value -->\n  <pause/>", reinvite, 1)
    return xml.replace("CSeq: 2 BYE", "CSeq: 3 BYE")


@dataclass
class Device:
    port: int
    proc: subprocess.Popen[str]
    workdir: Path

    def result(self, timeout: float = 30) -> SippResult:
        return finish(self.proc, self.workdir, timeout)


def register(server: RunningServer, ext: str, secret: str, port: int, workdir: Path,
             expires: int = 3600) -> SippResult:
    """Register one device contact (127.0.0.1:port) for `ext` with SIPp from that very port."""
    workdir.mkdir(parents=True, exist_ok=True)
    inf = workdir / "reg.csv"
    inf.write_text(f"SEQUENTIAL\n{ext};127.0.0.1;{port}\n")
    return run_sipp(
        (SCENARIOS / "register.xml").read_text(), workdir, server.sip, name="register",
        local_port=port, calls=1, extra=("-inf", str(inf), "-au", ext, "-ap", secret,
                                         "-key", "expires", str(expires)),
    )


def device(server: RunningServer, scenario: str, ext: str, secret: str, workdir: Path,
           pause_ms: int = 0, calls: int = 1, register_first: bool = True,
           xml: str | None = None) -> Device:
    """A SIPp device of `ext`: registers, then waits for `calls` calls with `scenario`."""
    port = free_port()
    if register_first:
        reg = register(server, ext, secret, port, workdir / "reg")
        assert reg.ok, reg.describe()
    extra: tuple[str, ...] = ("-d", str(pause_ms)) if pause_ms else ()
    proc = start_sipp(xml or (SCENARIOS / f"{scenario}.xml").read_text(), workdir, None, name=scenario,
                      local_port=port, calls=calls, extra=extra, timeout_s=40)
    return Device(port, proc, workdir)


TRUNK_IP = "127.0.0.2"  # the test configuration's carrier: calls from there are trunk calls


def call(server: RunningServer, xml: str, workdir: Path, service: str = "0442930600",
         calls: int = 1, pause_ms: int = 300, wait: float = 60, local_ip: str = TRUNK_IP,
         extra: tuple[str, ...] = (), **kw: object) -> SippResult:
    """A call placed by SIPp (by default from the carrier's address, as a trunk call)."""
    return run_sipp(xml, workdir, server.sip, name="caller", local_port=free_port(host=local_ip),
                    local_ip=local_ip, service=service, calls=calls,
                    extra=("-d", str(pause_ms), *extra), wait=wait, **kw)


def uac_auth_call(caller: str, final: int = 200) -> str:
    """A device's call: INVITE, 407, ACK, INVITE with credentials, then 200 ACK BYE (or the
    expected failure `final`, ACKed)."""
    invite = _INVITE.format(caller=caller).replace(
        f'From: "Caller" <sip:{caller}@[local_ip]:[local_port]>',
        f'From: "Caller" <sip:{caller}@[remote_ip]>',
    )
    second = invite.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE\n      [authentication]")
    ack1 = _ACK_NON2XX.format(caller=caller, back=2).replace(
        f'From: "Caller" <sip:{caller}@[local_ip]:[local_port]>',
        f'From: "Caller" <sip:{caller}@[remote_ip]>',
    )
    body = invite + '  <recv response="100" optional="true"/>\n  <recv response="407" auth="true"/>\n' + ack1 + second
    body += '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
    body += '  <recv response="183" optional="true"/>\n'
    frm = f'From: "Caller" <sip:{caller}@[remote_ip]>;tag=[pid]U[call_number]'
    if final != 200:
        body += f'  <recv response="{final}"/>\n'
        body += _ACK_NON2XX.format(caller=caller, back=5).replace(
            f'From: "Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]U[call_number]', frm
        ).replace("CSeq: 1 ACK", "CSeq: 2 ACK")
        body += '  <pause milliseconds="200"/>\n'
        return _HEAD + f'<scenario name="uac auth {final}">{body}</scenario>\n'
    body += """  <recv response="200" rrs="true">
    <action>
      <ereg regexp="&lt;?(sips?:[^&gt;[:space:]]+)&gt;?" search_in="hdr" header="Contact:"
            check_it="true" assign_to="contact_all,target"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      ACK [$target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {frm}
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause/>
  <send retrans="500">
    <![CDATA[

      BYE [$target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {frm}
      [last_To:]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="200"/>
  <Reference variables="contact_all"/>
""".replace("{frm}", frm)
    return _HEAD + f'<scenario name="uac auth call">{body}</scenario>\n'


def carrier(workdir: Path, port: int, scenario: str = "uas_answer", pause_ms: int = 200,
            check_regexp: str | None = None) -> Device:
    """The test configuration's carrier (127.0.0.2:port) answering one call."""
    xml = (SCENARIOS / f"{scenario}.xml").read_text()
    if check_regexp:
        xml = xml.replace(
            '<recv request="INVITE" crlf="true"/>',
            '<recv request="INVITE" crlf="true">\n    <action>\n'
            f'      <ereg regexp="{escape(check_regexp, {chr(34): "&quot;"})}" search_in="msg" check_it="true" assign_to="chk"/>\n'
            '    </action>\n  </recv>\n  <Reference variables="chk"/>',
            1,
        )
    proc = start_sipp(xml, workdir, None, name="carrier", local_port=port, local_ip=TRUNK_IP,
                      calls=1, extra=("-d", str(pause_ms)), timeout_s=40)
    return Device(port, proc, workdir)


def call_records(server: RunningServer, last: int = 20) -> list[dict[str, object]]:
    """The server's latest call records, newest first, as `b2bua calls --json` prints them
    (explanations in English: the tests compare them with the call engine's notes)."""
    out = subprocess.run(
        [sys.executable, "-m", "b2bua", "calls", "--config", str(server.config), "--last",
         str(last), "--json", "--lang", "en"],
        capture_output=True, text=True, check=True,
    ).stdout
    records: list[dict[str, object]] = json.loads(out)
    return records
