"""Run a real PostgreSQL (Debian `postgresql`) for tests and `scripts/cluster`: a fresh cluster
in a temporary directory, listening on a free loopback port only, stopped by its PID.

PostgreSQL refuses to run as root: when this process is root, the data directory is given to
the `postgres` system user (Debian's package makes it), else `nobody`, and `initdb` and the
server run as that user. The database `b2bua` and its owner `b2bua` (password `b2bua`) are
created; `url` is what `[store] url` takes.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from b2bua.testing.net import free_port
from b2bua.testing.process import stop_process


def postgres_bin() -> Path | None:
    """Debian's server binaries (/usr/lib/postgresql/N/bin), the newest version installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


@dataclass
class RunningPostgres:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    directory: Path
    log_path: Path
    user: str = "b2bua"
    password: str = "b2bua"
    database: str = "b2bua"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return (f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/"
                f"{self.database}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT is PostgreSQL's "fast shutdown": connections are ended, the data is
        checkpointed."""
        stop_process(self.process, signal.SIGINT, timeout)
        shutil.rmtree(self.directory, ignore_errors=True)
        return self.process.returncode


def _run_as() -> tuple[int, int] | None:
    """The (uid, gid) to run the server as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


def _demote(ids: tuple[int, int] | None):  # type: ignore[no-untyped-def]
    if ids is None:
        return None
    uid, gid = ids

    def change() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return change


def start_postgres(parent: Path | None = None, *, host: str = "127.0.0.1",
                   port: int | None = None, timeout: float = 30.0) -> RunningPostgres:
    """initdb in a new directory under `parent` (default: the system's temporary directory;
    it must be reachable by the user the server runs as), start the server on `host`:`port`
    (free if None), create the `b2bua` role and database; returns once it accepts
    connections. `stop()` removes the directory."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql); "
                           "run scripts/setup --test")
    directory = Path(tempfile.mkdtemp(prefix="b2bua-pg-", dir=parent))
    data = directory / "data"
    sockets = directory / "sockets"
    sockets.mkdir(exist_ok=True)
    ids = _run_as()
    if ids is not None:
        for path in (directory, sockets):
            os.chown(path, *ids)

    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    env.pop("PGDATA", None)
    pwfile = directory / "pwfile"
    pwfile.write_text("b2bua\n")
    if ids is not None:
        os.chown(pwfile, *ids)
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "b2bua", "--pwfile", str(pwfile),
         "-A", "scram-sha-256", "-E", "UTF8", "--no-sync"],
        preexec_fn=_demote(ids), env=env, capture_output=True, cwd=directory, check=False,
    )
    if init.returncode != 0:
        raise RuntimeError("initdb failed:\n" + init.stdout.decode(errors="replace")
                           + init.stderr.decode(errors="replace"))
    port = port or free_port(socket.SOCK_STREAM, host)
    log_path = directory / "postgres.log"
    log_file = log_path.open("wb")
    # fsync off: a test cluster in a temporary directory does not need to survive a crash of
    # the machine (every commit still goes through the WAL, so a killed client loses nothing).
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-h", host, "-p", str(port),
         "-k", str(sockets), "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=200",
         "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning"],
        preexec_fn=_demote(ids), env=env, stdout=log_file, stderr=subprocess.STDOUT,
        cwd=directory,
    )
    log_file.close()
    running = RunningPostgres(proc, host, port, directory, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("postgres exited:\n" + running.log()[-3000:])
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-h", host, "-p", str(port), "-U", "b2bua",
             "-d", "postgres"], capture_output=True, check=False)
        if ready.returncode == 0:
            break
        if time.monotonic() > deadline:
            running.stop()
            raise RuntimeError("postgres did not start:\n" + running.log()[-3000:])
        time.sleep(0.1)
    created = subprocess.run(
        [str(bindir / "createdb"), "-h", host, "-p", str(port), "-U", "b2bua", "b2bua"],
        env={**env, "PGPASSWORD": "b2bua"}, capture_output=True, check=False,
    )
    if created.returncode != 0:
        running.stop()
        raise RuntimeError("createdb failed: " + created.stderr.decode(errors="replace"))
    return running


@contextmanager
def running_postgres(parent: Path | None = None, **kwargs: object) -> Iterator[RunningPostgres]:
    server = start_postgres(parent, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
