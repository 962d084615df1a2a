"""pjsua2 (PJSIP's own UA library, `pjsua2-python` wheel) as real phones in tests.

pjsua2 is one library per process, so a scenario runs in a child process:
`python -m b2bua.testing.pjsua SCENARIO SERVER_PORT WORKDIR` prints one JSON line with what
happened. The phones register as users of the B2BUA (digest), play a tone file each
(`tone-EXT.wav` in WORKDIR, 8 kHz) and record what they hear (`heard-EXT-N.wav`).

Scenarios:
- `blind`: 1003 calls 1001; 1001 answers, then transfers the call to 1002 (`Call.xfer`,
  a REFER); 1002 answers.
- `attended`: 1003 calls 1001; 1001 answers and puts it on hold, calls 1002 itself, then
  joins the two (`Call.xferReplaces`, a REFER with Replaces).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

SECRETS = {"1001": "secret1001", "1002": "secret1002", "1003": "secret1003"}


def run(scenario: str, port: int, workdir: Path) -> dict[str, Any]:
    import pjsua2 as pj

    events: list[str] = []
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():  # G.711 only, PCMU first: what the relay carries
        prio = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}.get(codec.codecId, 0)
        ep.codecSetPriority(codec.codecId, prio)

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ep.libHandleEvents(20)

    keep: list[Any] = []  # players and recorders live as long as their call

    class Call(pj.Call):  # type: ignore[misc]
        def __init__(self, account: Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
            super().__init__(account, call_id)
            self.account = account
            self.state = ""
            self.n = len(account.calls)
            account.calls.append(self)

        def onCallState(self, prm: Any) -> None:
            info = self.getInfo()
            self.state = info.stateText
            events.append(f"{self.account.ext}#{self.n}: {info.stateText} {info.lastStatusCode}")

        def onCallMediaState(self, prm: Any) -> None:
            info = self.getInfo()
            for i, media in enumerate(info.media):
                if media.type != pj.PJMEDIA_TYPE_AUDIO or \
                        media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                    continue
                audio = self.getAudioMedia(i)
                player = pj.AudioMediaPlayer()
                player.createPlayer(str(workdir / f"tone-{self.account.ext}.wav"), 0)
                player.startTransmit(audio)
                recorder = pj.AudioMediaRecorder()
                recorder.createRecorder(
                    str(workdir / f"heard-{self.account.ext}-{self.n}-{len(keep)}.wav"))
                audio.startTransmit(recorder)
                keep.extend([player, recorder])

        def onCallTransferStatus(self, prm: Any) -> None:
            events.append(f"{self.account.ext}#{self.n}: transfer {prm.statusCode} "
                          f"{'final' if prm.finalNotify else ''}")

    class Account(pj.Account):  # type: ignore[misc]
        def __init__(self, ext: str, answer: bool) -> None:
            super().__init__()
            self.ext = ext
            self.answer = answer
            self.calls: list[Call] = []
            self.registered = False

        def onRegState(self, prm: Any) -> None:
            self.registered = prm.code == 200

        def onIncomingCall(self, prm: Any) -> None:
            call = Call(self, prm.callId)
            op = pj.CallOpParam()
            op.statusCode = 200 if self.answer else 180
            call.answer(op)

    accounts: dict[str, Account] = {}
    for ext, answer in (("1001", True), ("1002", True), ("1003", False)):
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{ext}@pbx.test"
        acfg.regConfig.registrarUri = f"sip:127.0.0.1:{port}"
        acfg.sipConfig.proxies.append(f"sip:127.0.0.1:{port};lr")
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", ext, 0, SECRETS[ext]))
        account = Account(ext, answer)
        account.create(acfg)
        accounts[ext] = account
    deadline = time.monotonic() + 10
    while not all(a.registered for a in accounts.values()) and time.monotonic() < deadline:
        pump(0.1)
    result: dict[str, Any] = {"registered": all(a.registered for a in accounts.values())}
    target = f"sip:{{}}@127.0.0.1:{port}"
    caller = Call(accounts["1003"])
    caller.makeCall(target.format("1001"), pj.CallOpParam(True))
    pump(3)
    transferor = accounts["1001"].calls[0] if accounts["1001"].calls else None
    consult = None
    if transferor is None:
        result["error"] = "1001 never got the call"
    elif scenario == "blind":
        transferor.xfer(target.format("1002"), pj.CallOpParam(True))
        pump(6)
    else:
        hold = pj.CallOpParam(True)
        transferor.setHold(hold)
        pump(1)
        consult = Call(accounts["1001"])
        consult.makeCall(target.format("1002"), pj.CallOpParam(True))
        pump(3)
        transferor.xferReplaces(consult, pj.CallOpParam(True))
        pump(6)
    result["states"] = {a.ext: [c.state for c in a.calls] for a in accounts.values()}
    caller.hangup(pj.CallOpParam(True))
    pump(2)
    result["events"] = events
    result["recordings"] = sorted(p.name for p in workdir.glob("heard-*.wav"))
    # pjsua2 aborts at exit if a Call outlives the library: let go of everything first.
    keep.clear()
    for account in accounts.values():
        account.calls.clear()
    caller = transferor = consult = None
    accounts.clear()
    gc.collect()
    ep.libDestroy()
    return result


if __name__ == "__main__":
    outcome = run(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
    print(json.dumps(outcome), flush=True)
