"""A real carrier stand-in for tests: Kamailio (Debian package `kamailio`) as the registrar and
proxy of a SIP trunk provider, on loopback, on a free port, stopped by its PID.

It behaves as carriers do towards a PBX:

- REGISTER must carry digest credentials (401 challenge; `username` / `password` below, checked
  with the `auth` module); right credentials bind the Contact in memory (`usrloc`), a wrong
  password gets 403 Forbidden;
- an INVITE from the PBX must carry proxy credentials (407 challenge) and is then relayed to
  `public`, the "public network" (a SIPp UAS in tests), with Record-Route (or refused with
  `refuse_calls`);
- an INVITE from `public` (or from any port of `callers_from`, when given) is relayed to the
  Contact the PBX registered for its Request-URI user (404 when there is none);
- OPTIONS to Kamailio itself are answered 200.

The script lives in a temporary directory; Kamailio runs in the foreground (-DD -E), logging to
a file, and `stop()` ends it by its PID.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from b2bua.testing.net import free_port, wait_for_sip
from b2bua.testing.process import stop_process

KAMAILIO = shutil.which("kamailio") or (
    "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
)

SCRIPT = r"""#!KAMAILIO
debug={debug}
log_stderror=yes
memdbg=5
memlog=5
children=2
tcp_children=2
auto_aliases=no
listen=udp:{host}:{port}
listen=tcp:{host}:{port}
alias="{realm}"
mpath="{modules}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "auth.so"
loadmodule "corex.so"

modparam("auth", "secret", "{secret}")
modparam("auth", "algorithm", "{algorithm}")
modparam("auth", "nonce_expire", 300)
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)
modparam("registrar", "min_expires", {min_expires})
modparam("registrar", "default_expires", 600)
modparam("rr", "append_fromtag", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    xlog("L_INFO", "in: $rm $ru from $si:$sp\n");
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("OPTIONS") && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if ($si == "{callers_host}" && ({callers_port} == 0 || $sp == {callers_port})) {{
        # From the public network: to the PBX's registered Contact.
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        record_route();
        t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        $var(rc) = pv_www_authenticate("{realm}", "{password}", "0");
        if ($var(rc) == -2) {{
            xlog("L_WARN", "REGISTER from $si: wrong password for $au\n");
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        if ($var(rc) < 0) {{
            www_challenge("{realm}", "{qop}");
            exit;
        }}
        if ($au != "{username}") {{
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        $var(rc) = pv_proxy_authenticate("{realm}", "{password}", "0");
        if ($var(rc) == -2) {{
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        if ($var(rc) < 0) {{
            proxy_challenge("{realm}", "{qop}");
            exit;
        }}
        if ($au != "{username}") {{
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        consume_credentials();
{refuse}        record_route();
        $du = "sip:{public_host}:{public_port}";
        t_relay();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


def modules_path() -> str:
    found = sorted(glob.glob("/usr/lib/*/kamailio/modules")) + sorted(
        glob.glob("/usr/lib/kamailio/modules"))
    if not found:
        raise RuntimeError("Kamailio modules not found (Debian package kamailio)")
    return found[0]


@dataclass
class RunningKamailio:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    realm: str
    username: str
    password: str
    public: tuple[str, int]
    workdir: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return (self.workdir / "kamailio.log").read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (Kamailio then stops its children), then whatever of its process group
        outlived it: a child left behind would keep its sockets and memory after the test."""
        stop_process(self.process, signal.SIGTERM, timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


def start_kamailio(
    workdir: Path,
    *,
    public: tuple[str, int],
    host: str = "127.0.0.1",
    port: int | None = None,
    username: str = "0442930600",
    password: str = "carrier-secret",
    realm: str | None = None,
    algorithm: str = "MD5",
    qop: bool = True,
    min_expires: int = 10,
    debug: int = 2,
    timeout: float = 15.0,
    callers_from: str | None = None,
    refuse_calls: int | None = None,
) -> RunningKamailio:
    """Start the carrier stand-in in the foreground on `host`:`port` (a free one by default);
    returns once it answers OPTIONS. `public` is where it relays the PBX's calls, and where
    calls for the PBX come from; with `callers_from`, calls for the PBX come from any port of
    that address instead (several callers at once). With `refuse_calls` (503, say), the carrier
    answers our authenticated INVITEs that status itself, as an overloaded carrier does (a proxy
    never relays a 503 from downstream: RFC 3261 §16.7 turns it into 500)."""
    if KAMAILIO is None:
        raise RuntimeError("kamailio is not installed (Debian package kamailio); "
                           "run scripts/setup --test")
    for text in (username, password, realm or "", algorithm):
        if '"' in text or "\\" in text:
            raise ValueError("no quotes or backslashes in the carrier's settings")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host=host)
    realm = realm or host
    script = SCRIPT.format(
        debug=debug, host=host, port=port, realm=realm, modules=modules_path(),
        secret="b2bua-test-secret-0123456789", algorithm=algorithm, min_expires=min_expires,
        public_host=public[0], public_port=public[1], username=username, password=password,
        callers_host=callers_from or public[0], callers_port=0 if callers_from else public[1],
        refuse=(f'        sl_send_reply("{refuse_calls}", "Service Unavailable");\n        exit;\n'
                if refuse_calls else ""),
        qop="1" if qop else "0",
    )
    config = workdir / "kamailio.cfg"
    config.write_text(script)
    runtime = workdir / "run"
    runtime.mkdir(exist_ok=True)
    check = subprocess.run([KAMAILIO, "-c", "-f", str(config), "-L", modules_path()],
                           capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"kamailio refused its script:\n{check.stderr[-3000:]}")
    log = (workdir / "kamailio.log").open("wb")
    process = subprocess.Popen(
        [KAMAILIO, "-DD", "-E", "-f", str(config), "-Y", str(runtime), "-w", str(workdir),
         "-m", "32", "-M", "8", "-L", modules_path()],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
    )
    log.close()
    running = RunningKamailio(process, host, port, realm, username, password, public, workdir)
    try:
        wait_for_sip((host, port), timeout=timeout)
    except TimeoutError:
        running.stop()
        raise RuntimeError(f"kamailio did not come up:\n{running.log()[-3000:]}") from None
    return running
