"""pjsua2 as a secure SIP gateway in tests (a Microsoft Teams Direct Routing SBC, say): SIP over
TLS only, SRTP (SDES) mandatory, auto-answer, a tone played into every call and what the call
brings recorded to a WAV file.

It runs in its own process (`python -m b2bua.testing.pjsua_gateway ...`, started by `start_gateway`):
pjsua2 has threads and global state of its own, and must be torn down in a precise order, which
a test process should not depend on. The process prints one JSON line when it is done: each
call's last state and status, the SDP it made (and the offer it answered), whether its media
ran and over SRTP.

The `pjsua2-python` wheel (a test dependency) brings pjsua2 with TLS and SRTP.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.testing.process import stop_process

__all__ = ["Gateway", "start_gateway"]


@dataclass
class Gateway:
    """A running gateway process (see `start_gateway`)."""

    proc: subprocess.Popen[str]
    host: str
    port: int
    log: Path
    recording: Path

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def result(self, timeout: float = 60) -> dict[str, Any]:
        """Wait for the process; its JSON report (RuntimeError with its output if none)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                report: dict[str, Any] = json.loads(line)
                return report
        raise RuntimeError(f"the gateway did not report (exit {self.proc.returncode}):\n"
                           f"{out[-2000:]}\n{err[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


def start_gateway(
    directory: Path,
    *,
    host: str,
    port: int,
    cert: Path,
    key: Path,
    ca: Path,
    play: Path,
    call: str | None = None,
    hold: float = 4.0,
    seconds: float = 30.0,
    rtp_port: int = 27000,
) -> Gateway:
    """Start the gateway on `host`:`port` (TLS) with certificate `cert`/`key`, trusting `ca` for
    the servers it connects to. It plays `play` (8 kHz mono WAV) into each call and records what
    it hears to `directory/heard.wav`; with `call` it places that call after a second and hangs
    up `hold` seconds after its media is up; it exits after `seconds`, or once its calls are
    over."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "pjsua.log"
    recording = directory / "heard.wav"
    args = [sys.executable, "-m", "b2bua.testing.pjsua_gateway", "--host", host, "--port", str(port),
            "--cert", str(cert), "--key", str(key), "--ca", str(ca), "--play", str(play),
            "--record", str(recording), "--log", str(log), "--hold", str(hold),
            "--seconds", str(seconds), "--rtp-port", str(rtp_port)]
    if call:
        args += ["--call", call]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=directory)
    return Gateway(proc, host, port, log, recording)


# ---- the gateway process ----------------------------------------------------------------------


def _run(opts: argparse.Namespace) -> dict[str, Any]:  # pragma: no cover - its own process
    import pjsua2 as pj

    calls: list[Any] = []
    media: dict[str, Any] = {}

    class GatewayCall(pj.Call):  # type: ignore[misc]
        def __init__(self, account: Any, call_id: int = pj.PJSUA_INVALID_ID) -> None:
            super().__init__(account, call_id)
            self.state = "NULL"
            self.status = 0
            self.local_sdp = ""
            self.remote_sdp = ""
            self.media_at: float | None = None
            self.srtp = False  # the audio stream runs over RTP/SAVP
            self.ended = False

        def onCallState(self, prm: Any) -> None:
            info = self.getInfo()
            self.state = info.stateText
            self.status = info.lastStatusCode
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.ended = True

        def onCallSdpCreated(self, prm: Any) -> None:
            self.local_sdp = prm.sdp.wholeSdp
            self.remote_sdp = prm.remSdp.wholeSdp or self.remote_sdp

        def onCallMediaState(self, prm: Any) -> None:
            info = self.getInfo()
            for index, item in enumerate(info.media):
                if item.type == pj.PJMEDIA_TYPE_AUDIO and \
                        item.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    proto = self.getStreamInfo(index).proto
                    self.srtp = bool(proto & pj.PJMEDIA_TP_PROTO_RTP_SAVP ==
                                     pj.PJMEDIA_TP_PROTO_RTP_SAVP)
                    audio = self.getAudioMedia(index)
                    media["player"].startTransmit(audio)
                    audio.startTransmit(media["recorder"])
                    if self.media_at is None:
                        self.media_at = time.monotonic()

    class GatewayAccount(pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:
            call = GatewayCall(self, prm.callId)
            calls.append(call)
            answer = pj.CallOpParam()
            answer.statusCode = 200
            call.answer(answer)

    ep = pj.Endpoint()
    ep.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.uaConfig.userAgent = "test-gateway"
    config.logConfig.filename = opts.log
    config.logConfig.level = 5
    config.logConfig.consoleLevel = 0
    config.medConfig.clockRate = 8000
    config.medConfig.sndClockRate = 8000
    config.medConfig.noVad = True
    config.medConfig.ecTailLen = 0
    ep.libInit(config)
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith("PCMU/") else 0)
    transport = pj.TransportConfig()
    transport.boundAddress = opts.host
    transport.port = opts.port
    tls = transport.tlsConfig
    tls.certFile = opts.cert
    tls.privKeyFile = opts.key
    tls.CaListFile = opts.ca
    tls.method = pj.PJSIP_TLSV1_2_METHOD
    tls.verifyServer = True  # the certificate of the server we connect to (the B2BUA)
    transport_id = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, transport)
    ep.libStart()
    player = pj.AudioMediaPlayer()
    player.createPlayer(opts.play)  # looped
    recorder = pj.AudioMediaRecorder()
    recorder.createRecorder(opts.record)
    media["player"], media["recorder"] = player, recorder
    account_config = pj.AccountConfig()
    account_config.idUri = f"sip:gateway@{opts.host}:{opts.port};transport=tls"
    account_config.sipConfig.transportId = transport_id
    account_config.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
    account_config.mediaConfig.srtpSecureSignaling = 1  # SRTP only over TLS
    account_config.mediaConfig.transportConfig.boundAddress = opts.host
    account_config.mediaConfig.transportConfig.port = opts.rtp_port
    account = GatewayAccount()
    account.create(account_config)

    started = time.monotonic()
    placed = False
    call: Any = None
    while time.monotonic() - started < opts.seconds:
        ep.libHandleEvents(20)
        now = time.monotonic()
        if opts.call and not placed and now - started > 1.0:
            call = GatewayCall(account)
            calls.append(call)
            call.makeCall(opts.call, pj.CallOpParam(True))
            placed = True
        for call in calls:
            if (opts.call and call.media_at is not None and not call.ended
                    and now - call.media_at > opts.hold and call.isActive()):
                call.hangup(pj.CallOpParam())
        if calls and all(c.ended for c in calls):
            for _ in range(25):  # let the last messages go out
                ep.libHandleEvents(20)
            break
    report = {"calls": [{"state": c.state, "status": c.status, "local_sdp": c.local_sdp,
                         "remote_sdp": c.remote_sdp, "media": c.media_at is not None,
                         "srtp": c.srtp}
                        for c in calls]}
    ep.hangupAllCalls()
    for _ in range(10):
        ep.libHandleEvents(20)
    # pjsua2 aborts at exit when a Call object outlives the library.
    calls.clear()
    media.clear()
    call = None  # the loop's last one
    del player, recorder, account, call
    gc.collect()
    ep.libDestroy()
    return report


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - its own process
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--play", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--call")
    parser.add_argument("--hold", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rtp-port", type=int, default=27000)
    opts = parser.parse_args(argv)
    report = _run(opts)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
