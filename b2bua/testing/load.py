"""Call load with SIPp for benchmarks and soak runs: a trunk places calls to an extension whose
devices ring together; one answers, the others are cancelled ("completed elsewhere").

    caller (SIPp UAC, the trunk's address) --INVITE--> B2BUA --fork--> device 0: 180, rings, 200
                                                                  \\--> device 1..N-1: 180, CANCEL

Every SIPp process is bounded (`-m`, `-timeout`) and can run inside a network namespace
(`netns`: commands are prefixed with `ip netns exec NAME`). `CallerResult` reads SIPp's
statistics file: calls created, successful, failed, and why.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SIPP = shutil.which("sipp") or "sipp"

_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'

CALLER = _HEAD + """<scenario name="load caller">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:0611[call_number]@[local_ip]:[local_port]>;tag=[pid]U[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=load 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=sendrecv

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true">
    <action>
      <ereg regexp="&lt;?(sips?:[^&gt;[:space:]]+)&gt;?" search_in="hdr" header="Contact:"
            check_it="true" assign_to="contact_all,target"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      ACK [$target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:0611[call_number]@[local_ip]:[local_port]>;tag=[pid]U[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause/>
  <send retrans="500" start_txn="bye">
    <![CDATA[

      BYE [$target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Load" <sip:0611[call_number]@[local_ip]:[local_port]>;tag=[pid]U[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" response_txn="bye"/>
  <pause milliseconds="1000"/>
  <Reference variables="contact_all"/>
</scenario>
"""

ANSWERING_DEVICE = _HEAD + """<scenario name="load device answers">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]A[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:dev@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <pause/>
  <!-- the INVITE again (our 180 and 200 lost) gets the 200 again -->
  <label id="1"/>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]A[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:dev@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=dev 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=sendrecv

    ]]>
  </send>
  <recv request="INVITE" optional="true" next="1"/>
  <!-- the ACK may be lost on a lossy link: then the BYE comes first -->
  <recv request="ACK" crlf="true" optional="true"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:dev@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <!-- a retransmitted BYE (our 200 lost) is answered again by SIPp while it lingers -->
  <pause milliseconds="8000"/>
</scenario>
"""

LOSING_DEVICE = _HEAD + """<scenario name="load device loses">
  <recv request="INVITE" crlf="true"/>
  <!-- the INVITE again (our 180 lost) gets the 180 again -->
  <label id="5"/>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]L[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:dev@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="INVITE" optional="true" next="5"/>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]L[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]L[call_number]
      [last_Call-ID:]
      CSeq: [last_cseq_number] INVITE
      Content-Length: 0

    ]]>
  </send>
  <!-- on a lossy link our 200 to the CANCEL may be lost: the CANCEL comes again -->
  <label id="1"/>
  <recv request="CANCEL" optional="true" next="2"/>
  <recv request="ACK"/>
  <pause milliseconds="8000"/>
  <nop next="3"/>
  <label id="2"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]L[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop next="1"/>
  <label id="3"/>
</scenario>
"""


def netns_prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


@dataclass
class SippRun:
    name: str
    proc: subprocess.Popen[bytes]
    workdir: Path

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stats(self) -> dict[str, str]:
        """The last row of SIPp's statistics file (-trace_stat)."""
        files = sorted(self.workdir.glob(f"{self.name}_*_.csv"))
        if not files:
            return {}
        with files[-1].open(newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
        if len(rows) < 2:
            return {}
        return {h: v for h, v in zip(rows[0], rows[-1], strict=False) if h}

    def count(self, key: str) -> int:
        try:
            return int(float(self.stats().get(key, "0") or 0))
        except ValueError:
            return 0

    def errors(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.workdir.glob(f"{self.name}_*_errors.log")))


def start_sipp(
    name: str, xml: str, workdir: Path, *, local_ip: str, local_port: int,
    target: tuple[str, int] | None = None, calls: int, rate: float | None = None,
    pause_ms: int = 0, timeout_s: int, service: str | None = None,
    netns: str | None = None, extra: tuple[str, ...] = (),
) -> SippRun:
    """Start SIPp on `name`.xml in `workdir` (its logs and statistics land there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.xml").write_text(xml)
    cmd = [*netns_prefix(netns), SIPP]
    if target is not None:
        cmd.append(f"{target[0]}:{target[1]}")
    cmd += ["-sf", f"{name}.xml", "-i", local_ip, "-p", str(local_port), "-m", str(calls),
            "-timeout", f"{timeout_s}s", "-nostdin", "-trace_err", "-trace_stat", "-fd", "1",
            "-buff_size", str(4 << 20), "-recv_timeout", "30000", "-t", "u1"]
    if rate is not None:
        cmd += ["-r", str(rate), "-l", str(max(100, int(rate * 40)))]
    if pause_ms:
        cmd += ["-d", str(pause_ms)]
    if service:
        cmd += ["-s", service]
    cmd += list(extra)
    log = (workdir / f"{name}.out").open("wb")
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    return SippRun(name, proc, workdir)


def start_devices(
    workdir: Path, ports: list[int], *, host: str, calls: int, ring_ms: int, timeout_s: int,
    netns: str | None = None,
) -> list[SippRun]:
    """Device 0 answers after `ring_ms`; the others ring until cancelled."""
    runs = []
    for i, port in enumerate(ports):
        xml = ANSWERING_DEVICE if i == 0 else LOSING_DEVICE
        runs.append(start_sipp(f"dev{i}", xml, workdir / f"dev{i}", local_ip=host,
                               local_port=port, calls=calls, pause_ms=ring_ms if i == 0 else 0,
                               timeout_s=timeout_s, netns=netns))
    return runs


def start_caller(
    workdir: Path, target: tuple[str, int], *, host: str, port: int, service: str, rate: float,
    calls: int, talk_ms: int, timeout_s: int, netns: str | None = None,
) -> SippRun:
    return start_sipp("caller", CALLER, workdir / "caller", local_ip=host, local_port=port,
                      target=target, calls=calls, rate=rate, pause_ms=talk_ms,
                      timeout_s=timeout_s, service=service, netns=netns)


@dataclass
class CallerResult:
    created: int
    successful: int
    failed: int
    returncode: int
    detail: dict[str, int]

    @classmethod
    def of(cls, run: SippRun, returncode: int) -> CallerResult:
        keys = ("FailedCallRejected(C)", "FailedMaxUDPRetrans(C)", "FailedUnexpectedMessage(C)",
                "FailedTimeoutOnRecv(C)", "FailedTimeoutOnSend(C)", "FailedCmdNotSent(C)",
                "Retransmissions(C)")
        return cls(run.count("TotalCallCreated"), run.count("SuccessfulCall(C)"),
                   run.count("FailedCall(C)"), returncode, {k: run.count(k) for k in keys})
