"""pjsua2 as a phone that subscribes to its voicebox (RFC 3842), for tests.

`python -m b2bua.testing.pjsua_mwi EXT SECRET SERVER_PORT WORKDIR SECONDS` registers EXT with
message-waiting indication on (pjsua2 sends the SUBSCRIBE and answers the NOTIFYs), and for
SECONDS appends one line per NOTIFY to WORKDIR/mwi.log: `yes 1/0` or `no 0/0` (waiting, then
the Voice-Message counts), flushed at once so that a test can follow it.
"""

from __future__ import annotations

import gc
import re
import sys
import time
from pathlib import Path
from typing import Any

_WAITING = re.compile(r"Messages-Waiting:\s*(\w+)", re.I)
_COUNTS = re.compile(r"Voice-Message:\s*(\d+/\d+)", re.I)


def summary(message: str) -> str:
    """`yes 1/0` from a NOTIFY's text (its body's Messages-Waiting and Voice-Message)."""
    waiting = _WAITING.search(message)
    counts = _COUNTS.search(message)
    return f"{waiting.group(1).lower() if waiting else '?'} {counts.group(1) if counts else '?'}"


def run(ext: str, secret: str, port: int, workdir: Path, seconds: float) -> None:
    import pjsua2 as pj

    log = workdir / "mwi.log"
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()

    class Account(pj.Account):  # type: ignore[misc]
        def onMwiInfo(self, prm: Any) -> None:
            with log.open("a") as out:
                out.write(summary(str(prm.rdata.wholeMsg)) + "\n")

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{ext}@pbx.test"
    acfg.regConfig.registrarUri = f"sip:127.0.0.1:{port}"
    acfg.sipConfig.proxies.append(f"sip:127.0.0.1:{port};lr")
    acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", ext, 0, secret))
    acfg.mwiConfig.enabled = True
    acfg.mwiConfig.expirationSec = 3600
    account = Account()
    account.create(acfg)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ep.libHandleEvents(20)
    account = None
    gc.collect()
    ep.libDestroy()


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5]))
