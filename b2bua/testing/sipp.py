"""Drive SIPp (Debian `sip-tester`) from tests: write a scenario, run it, read its verdict."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SIPP = shutil.which("sipp")


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def messages(self) -> str:
        """The message trace (-trace_msg), when it was asked for."""
        out = []
        for p in sorted(self.workdir.glob("*_messages.log")):
            out.append(p.read_text(errors="replace"))
        return "\n".join(out)

    def errors(self) -> str:
        out = []
        for p in sorted(self.workdir.glob("*_errors.log")):
            out.append(p.read_text(errors="replace"))
        return "\n".join(out)

    def describe(self) -> str:
        return (
            f"sipp exit {self.returncode}\n--- stdout ---\n{self.stdout[-3000:]}\n"
            f"--- stderr ---\n{self.stderr[-2000:]}\n--- errors ---\n{self.errors()[-3000:]}\n"
            f"--- messages ---\n{self.messages()[-6000:]}"
        )


def sipp_command(
    scenario: Path,
    target: tuple[str, int] | None,
    *,
    local_port: int,
    local_ip: str = "127.0.0.1",
    calls: int = 1,
    rate: float = 10,
    service: str | None = None,
    transport: str = "u1",
    timeout_s: int = 30,
    extra: tuple[str, ...] = (),
    trace: bool = True,
) -> list[str]:
    if SIPP is None:
        raise RuntimeError("sipp is not installed (Debian package sip-tester); run scripts/test")
    cmd = [SIPP]
    if target is not None:
        cmd.append(f"{target[0]}:{target[1]}")
    cmd += [
        "-sf", str(scenario), "-i", local_ip, "-p", str(local_port), "-m", str(calls),
        "-r", str(rate), "-t", transport, "-timeout", f"{timeout_s}s", "-timeout_error",
        "-nostdin",
    ]
    if service:
        cmd += ["-s", service]
    if trace:
        cmd += ["-trace_msg", "-trace_err"]
    cmd += list(extra)
    return cmd


def run_sipp(
    scenario_xml: str,
    workdir: Path,
    target: tuple[str, int] | None,
    *,
    name: str = "scenario",
    local_port: int,
    wait: float = 60.0,
    **kwargs: object,
) -> SippResult:
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / f"{name}.xml"
    scenario.write_text(scenario_xml)
    cmd = sipp_command(scenario, target, local_port=local_port, **kwargs)  # type: ignore[arg-type]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=wait)
    return SippResult(proc.returncode, proc.stdout, proc.stderr, workdir)


def start_sipp(
    scenario_xml: str,
    workdir: Path,
    target: tuple[str, int] | None,
    *,
    name: str = "scenario",
    local_port: int,
    **kwargs: object,
) -> subprocess.Popen[str]:
    """Start SIPp in the background (a UAS waiting for calls); `finish()` collects it."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / f"{name}.xml"
    scenario.write_text(scenario_xml)
    cmd = sipp_command(scenario, target, local_port=local_port, **kwargs)  # type: ignore[arg-type]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], workdir: Path, timeout: float = 30.0) -> SippResult:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return SippResult(proc.returncode, out, err, workdir)
