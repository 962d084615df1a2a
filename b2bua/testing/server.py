"""Start `b2bua run` as a real subprocess for integration tests, and stop it by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from b2bua.testing.net import free_port, wait_for_sip, wait_for_tcp
from b2bua.testing.process import stop_process


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    config: Path
    sip_port: int
    http_port: int
    log_path: Path
    host: str = "127.0.0.1"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def sip(self) -> tuple[str, int]:
        return (self.host, self.sip_port)

    @property
    def http_base(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        stop_process(self.process, sig, timeout)
        return self.process.returncode


def write_config(directory: Path, body: str, name: str = "b2bua.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


def start_server(
    config: Path,
    *,
    sip_port: int | None = None,
    http_port: int | None = None,
    transports: tuple[str, ...] = ("udp", "tcp"),
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> RunningServer:
    sip_port = sip_port or free_port()
    http_port = http_port or free_port()
    log_path = config.parent / f"server-{sip_port}.log"
    args = [sys.executable, "-m", "b2bua", "run", "--config", str(config), "--log-level", "DEBUG"]
    for t in transports:
        args += ["--listen", f"{t}:{host}:{sip_port}"]
    args += ["--http", f"{host}:{http_port}", *extra_args]
    full_env = dict(os.environ)
    full_env.update(env or {})
    log_file = log_path.open("wb")
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=full_env)
    server = RunningServer(proc, config, sip_port, http_port, log_path, host, env or {})
    try:
        wait_for_sip((host, sip_port))
        wait_for_tcp((host, http_port))
    except TimeoutError:
        server.stop(signal.SIGKILL)
        raise RuntimeError("server did not start:\n" + server.log()[-4000:]) from None
    if proc.poll() is not None:
        raise RuntimeError("server exited at start:\n" + server.log()[-4000:])
    return server


@contextmanager
def running_server(config: Path, **kwargs: object) -> Iterator[RunningServer]:
    server = start_server(config, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
