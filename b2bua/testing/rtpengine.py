"""Run a real rtpengine (Debian `rtpengine-daemon`) for tests: userspace forwarding only (no kernel
module, no systemd), on loopback, on free ports; stopped by its PID."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.testing.net import free_port
from b2bua.testing.process import stop_process
from media.rtpengine import bdecode, bencode

RTPENGINE = shutil.which("rtpengine") or (
    "/usr/bin/rtpengine" if Path("/usr/bin/rtpengine").exists() else None
)


@dataclass
class RunningRtpengine:
    process: subprocess.Popen[bytes]
    ng: tuple[str, int]  # the ng control socket
    ports: tuple[int, int]  # its RTP port range
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        stop_process(self.process, signal.SIGTERM, timeout)
        return self.process.returncode

    def command(self, command: str, args: dict[str, Any] | None = None,
                timeout: float = 2.0) -> dict[str, Any]:
        """One ng command, synchronously (tests inspect the daemon with `list` and `query`);
        the answer dictionary, whatever its result."""
        cookie = secrets.token_hex(6).encode()
        body = bencode({**(args or {}), "command": command})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(cookie + b" " + body, self.ng)
            while True:
                data = s.recv(65535)
                got, _, payload = data.partition(b" ")
                if got == cookie:
                    answer: dict[str, Any] = bdecode(payload)
                    return answer

    def calls(self) -> list[str]:
        """The call-ids rtpengine knows."""
        return [c.decode() for c in self.command("list").get("calls", [])]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon so far (from /proc/PID/stat)."""
        return process_cpu_seconds(self.pid)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def _free_range(size: int, host: str) -> tuple[int, int]:
    """A range of `size` UDP ports on `host`, below the kernel's ephemeral range (where the
    sockets of tests and other programs land), with every port free right now."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    top = max(ephemeral, 10000 + 2 * size)
    for _ in range(50):
        first = random.randrange(10000, top - size) & ~1
        try:
            for port in range(first, first + size):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return first, first + size - 1
    raise RuntimeError("no free port range for rtpengine")


def start_rtpengine(
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    ports: int = 200,
    extra: tuple[str, ...] = (),
    log_level: int = 6,
) -> RunningRtpengine:
    """Start rtpengine in the foreground, userspace only, its ng socket on a free port of
    `host` and `ports` RTP ports; returns once it answers a ping."""
    if RTPENGINE is None:
        raise RuntimeError("rtpengine is not installed (Debian package rtpengine-daemon); "
                           "run scripts/setup --test")
    workdir.mkdir(parents=True, exist_ok=True)
    ng = free_port(host=host)
    first, last = _free_range(ports, host)
    log_path = workdir / f"rtpengine-{ng}.log"
    args = [
        RTPENGINE, "--config-file=none", "--foreground", "--table=-1", "--log-stderr",
        f"--log-level={log_level}", f"--interface={host}", f"--listen-ng={host}:{ng}",
        f"--port-min={first}", f"--port-max={last}", "--num-threads=2", *extra,
    ]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir)
    running = RunningRtpengine(proc, (host, ng), (first, last), log_path)
    if not _wait_for_ping(running, 10.0):
        running.stop()
        raise RuntimeError("rtpengine did not start:\n" + running.log()[-3000:])
    return running


def _wait_for_ping(running: RunningRtpengine, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                return False
            s.sendto(b"probe d7:command4:pinge", running.ng)
            try:
                if b"pong" in s.recv(1024):
                    return True
            except OSError:
                time.sleep(0.05)
    return False


@contextmanager
def running_rtpengine(workdir: Path, **kwargs: object) -> Iterator[RunningRtpengine]:
    engine = start_rtpengine(workdir, **kwargs)  # type: ignore[arg-type]
    try:
        yield engine
    finally:
        engine.stop()
