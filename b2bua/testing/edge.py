"""Run the shipped Kamailio edge (deploy/kamailio/kamailio.cfg) in front of b2bua nodes, on
loopback, on a free port, stopped by its PID: for tests and `scripts/cluster`."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from b2bua.testing.kamailio import KAMAILIO, modules_path
from b2bua.testing.net import free_port, wait_for_sip
from b2bua.testing.process import stop_process

EDGE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "kamailio.cfg"


@dataclass
class RunningEdge:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    workdir: Path
    dispatcher_list: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def sip(self) -> tuple[str, int]:
        return (self.host, self.port)

    def log(self) -> str:
        return (self.workdir / "kamailio.log").read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int | None:
        stop_process(self.process, signal.SIGTERM, timeout)
        return self.process.returncode


def edge_command(workdir: Path, host: str, port: int, dispatcher_list: Path,
                 failover_ms: int = 1000) -> list[str]:
    if KAMAILIO is None:
        raise RuntimeError("kamailio is not installed (Debian package kamailio); "
                           "run scripts/setup --test")
    runtime = workdir / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    return [KAMAILIO, "-DD", "-E", "-f", str(EDGE_CONFIG), "-Y", str(runtime), "-w", str(workdir),
            "-m", "64", "-M", "8", "-L", modules_path(), "-l", f"udp:{host}:{port}",
            "-A", f'DISPATCHER_LIST="{dispatcher_list}"', "-A", f"FAILOVER_MS={failover_ms}"]


def start_edge(workdir: Path, nodes: list[tuple[str, int]], *, host: str = "127.0.0.1",
               port: int | None = None, timeout: float = 15.0,
               new_session: bool = False) -> RunningEdge:
    """Kamailio with the shipped configuration, dispatching to `nodes` (UDP); returns once it
    answers OPTIONS."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host=host)
    dispatcher_list = workdir / "dispatcher.list"
    dispatcher_list.write_text("".join(f"1 sip:{h}:{p} 0 0\n" for h, p in nodes))
    args = edge_command(workdir, host, port, dispatcher_list)
    check = subprocess.run([*args[:1], "-c", *args[3:]], capture_output=True, text=True,
                           timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"kamailio refused the edge configuration:\n{check.stderr[-3000:]}")
    with (workdir / "kamailio.log").open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                   start_new_session=new_session)
    edge = RunningEdge(process, host, port, workdir, dispatcher_list)
    try:
        wait_for_sip((host, port), timeout=timeout)
    except TimeoutError:
        edge.stop()
        raise RuntimeError(f"the edge did not come up:\n{edge.log()[-3000:]}") from None
    return edge
