"""Stopping a process a test started: a signal, a wait, SIGKILL when it outlives the wait."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM,
         timeout: float = 10.0) -> int:
    """Send `sig` to `process` (if it still runs) and wait `timeout` seconds; then SIGKILL.
    Its exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode
