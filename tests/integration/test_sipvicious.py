"""SIPVicious, the scanner and password cracker attackers run, against `b2bua run` on loopback:
`svwar` finds no extension whatever method it scans with, and `svcrack` is locked out after 10
wrong guesses, so the right password, later in its list, is never accepted."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from b2bua.testing.server import RunningServer

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / f"sipvicious_{name}"
    found = str(path) if path.exists() else shutil.which(f"sipvicious_{name}")
    if found is None:
        pytest.fail("sipvicious is missing: scripts/setup --test installs it")
    return found


def metrics(server: RunningServer) -> dict[str, float]:
    with urllib.request.urlopen(server.http_base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {name: float(value) for name, _, value in
            (line.rpartition(" ") for line in text.splitlines())}


@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS"])
def test_svwar_finds_no_extension(server: RunningServer, method: str) -> None:
    host, port = server.sip
    result = subprocess.run(
        [tool("svwar"), "-e1000-1010", "-m", method, "-b", "127.0.0.5", "-p", str(port), host],
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert "found nothing" in output, output
    for extension in ("1001", "1002"):
        assert f"| {extension}" not in output, output


def test_svcrack_is_locked_out_after_ten_guesses(server: RunningServer, tmp_path: Path) -> None:
    host, port = server.sip
    words = tmp_path / "passwords.txt"
    words.write_text("".join(f"guess{i}\n" for i in range(15)) + "secret1001\n")
    crack = subprocess.Popen(
        [tool("svcrack"), "-u1001", "-d", str(words), "-b", "127.0.0.6", "-p", str(port), host],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and metrics(server)["b2bua_lockouts_total"] < 1:
            time.sleep(0.2)
        time.sleep(3)  # what it tries next (the right password among it) meets the lockout
        m = metrics(server)
    finally:
        crack.kill()  # locked out, it waits for answers it will never like
        output, _ = crack.communicate(timeout=10)
    assert m["b2bua_lockouts_total"] == 1
    assert m["b2bua_auth_failures_total"] == 10, m  # each guess counted once
    assert "secret1001" not in output, output
