"""baresip (Debian) as a real softphone in tests: one directory per UA, audio from a WAV file,
what it sends and receives dumped as WAV (sndfile.so) into the same directory."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from b2bua.testing.net import free_port, free_port_pair


@dataclass
class Baresip:
    proc: subprocess.Popen[str]
    directory: Path
    port: int
    control: int | None = None  # ctrl_tcp's port: commands while it runs

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, object]:
        """Run a menu command (`transfer`, `hangup`...) through ctrl_tcp: JSON in netstrings."""
        assert self.control is not None, "start it with control=True"
        payload = json.dumps({"command": command, "params": params, "token": "t"}).encode()
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", self.control), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with sock:
            sock.sendall(str(len(payload)).encode() + b":" + payload + b",")
            buffer = b""
            while True:  # netstrings: events may come before the response
                while True:
                    head, colon, rest = buffer.partition(b":")
                    if not colon or not head.isdigit() or len(rest) < int(head) + 1:
                        break
                    size = int(head)
                    message = json.loads(rest[:size])
                    buffer = rest[size + 1:]
                    if isinstance(message, dict) and message.get("response"):
                        return message
                chunk = sock.recv(65536)
                if not chunk:
                    return {}
                buffer += chunk

    def wait(self, timeout: float = 30) -> str:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=5)
        return out

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.wait(10)

    def recordings(self) -> list[Path]:
        return sorted(self.directory.glob("dump-*.wav"))


def start_baresip(
    directory: Path,
    user: str,
    password: str,
    server: tuple[str, int],
    *,
    domain: str,
    seconds: int,
    audio: Path | None = None,
    answer: bool = True,
    dial: str | None = None,
    rtp_ports: tuple[int, int] = (30000, 30099),
    transport: str = "udp",
    control: bool = False,
) -> Baresip:
    """A baresip UA registered as `user` through `server`, auto-answering if `answer`."""
    if shutil.which("baresip") is None:
        raise RuntimeError("baresip is missing: scripts/test installs Debian's baresip")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port_pair()  # SIP on port (UDP and TCP), SIP over TLS on port + 1
    modules = ["g711.so"]
    lines = [
        f"sip_listen 127.0.0.1:{port}",
        "net_interface 127.0.0.1",
        f"rtp_ports {rtp_ports[0]}-{rtp_ports[1]}",
        "module_path /usr/lib/baresip/modules",
    ]
    if audio is not None:
        lines.append(f"audio_source aufile,{audio}")
        modules += ["aufile.so", "sndfile.so"]
        lines.append(f"snd_path {directory}")
    control_port = None
    if control:
        control_port = free_port()
        lines.append(f"ctrl_tcp_listen 127.0.0.1:{control_port}")
    lines += [f"module {m}" for m in modules]
    lines += ["module_app account.so", "module_app menu.so"]
    if control:
        lines.append("module_app ctrl_tcp.so")
    (directory / "config").write_text("\n".join(lines) + "\n")
    params = f";auth_pass={password};outbound=\"sip:{server[0]}:{server[1]};transport={transport}\""
    params += ";regint=60;audio_codecs=PCMU"
    if answer:
        params += ";answermode=auto"
    (directory / "accounts").write_text(f"<sip:{user}@{domain}>{params}\n")
    args = ["baresip", "-4", "-f", str(directory), "-t", str(seconds)]
    if dial:
        args += ["-e", f"/dial {dial}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=directory)
    return Baresip(proc, directory, port, control_port)
