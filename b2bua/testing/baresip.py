"""baresip (Debian) as a real softphone in tests: one directory per UA, audio from a WAV file,
what it sends and receives dumped as WAV (sndfile.so) into the same directory."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from b2bua.testing.net import free_port_pair


@dataclass
class Baresip:
    proc: subprocess.Popen[str]
    directory: Path
    port: int

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
    lines += [f"module {m}" for m in modules]
    lines += ["module_app account.so", "module_app menu.so"]
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
    return Baresip(proc, directory, port)
