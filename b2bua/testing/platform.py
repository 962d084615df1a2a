"""A complete multi-node platform on loopback (`scripts/cluster up|down`, and the cluster
tests): PostgreSQL in a temporary directory, rtpengine in userspace, N `b2bua run` nodes with
`[store] url` and `[media] backend = "rtpengine"`, and Kamailio with the shipped edge
configuration (deploy/kamailio/kamailio.cfg) in front of them.

`up` prints one JSON line:
`{"edge": "127.0.0.1:PORT", "nodes": [{"pid": N, "sip": "127.0.0.1:PORT", "http": ...}],
"store": "postgresql://..."}` and keeps every PID in `STATE_DIR/state.json`; `down` stops
those processes only (by PID: nodes, edge, rtpengine, then PostgreSQL) and removes what `up`
made. Every node's configuration is the given TOML (default: conf/default.toml) with its
`data_dir` moved to the platform's shared directory and `[store]`, `[media]` set.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b2bua.testing.edge import RunningEdge, start_edge
from b2bua.testing.net import free_port, wait_for_sip, wait_for_tcp
from b2bua.testing.postgres import RunningPostgres, start_postgres
from b2bua.testing.rtpengine import RunningRtpengine, start_rtpengine

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "conf" / "default.toml"
STATE_FILE = "state.json"


@dataclass
class Node:
    process: subprocess.Popen[bytes] | None
    pid: int
    sip: tuple[str, int]
    http: tuple[str, int]
    log_path: Path
    args: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "sip": f"{self.sip[0]}:{self.sip[1]}",
                "http": f"{self.http[0]}:{self.http[1]}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _alive(self.pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill this node by its PID (a failure test: SIGKILL, nothing saved)."""
        os.kill(self.pid, sig)
        if self.process is not None:
            self.process.wait(10)


@dataclass
class Platform:
    directory: Path
    postgres: RunningPostgres
    rtpengine: RunningRtpengine
    nodes: list[Node]
    edge: RunningEdge
    config: Path

    @property
    def store(self) -> str:
        return self.postgres.url

    def to_json(self) -> dict[str, Any]:
        return {"edge": f"{self.edge.host}:{self.edge.port}",
                "nodes": [n.to_json() for n in self.nodes], "store": self.store}

    def start_node(self, index: int, *, wait: bool = True) -> Node:
        """(Re)start node `index` with the same addresses (after a kill)."""
        old = self.nodes[index]
        node = _spawn_node(old.args, old.sip, old.http, old.log_path, self.directory)
        if wait:
            _wait_node(node)
        self.nodes[index] = node
        return node

    def stop(self) -> None:
        for node in self.nodes:
            _stop_pid(node.pid, node.process)
        self.edge.stop()
        self.rtpengine.stop()
        self.postgres.stop()


def node_config(source: Path, url: str, rtpengine: tuple[str, int], shared: Path,
                http: tuple[str, int], edge_host: str = "127.0.0.1") -> str:
    """The node's TOML: `source` with its data_dir in `shared`, [store] and [media] set, and the
    edge's address trusted by the overload guard (every phone's request comes from it).

    For the shipped conf/default.toml, two more changes make the platform usable with test
    tools: its carrier moves to 127.0.0.2 (127.0.0.1 is the edge, whose calls must not be taken
    for the carrier's), and MD5 is offered first (SIPp answers the first challenge only)."""
    from b2bua.settings.toml_writer import raw_to_toml

    raw = tomllib.loads(source.read_text())
    if source.resolve() == DEFAULT_CONFIG.resolve():
        raw.setdefault("server", {})["auth_algorithms"] = ["MD5", "SHA-256"]
        for trunk in raw.get("trunks", []):
            if trunk.get("inbound_from") == ["127.0.0.1/32"]:
                trunk["inbound_from"] = ["127.0.0.2/32"]
                trunk["address"] = str(trunk.get("address", "127.0.0.1:5080")).replace(
                    "127.0.0.1", "127.0.0.2")
    overload = raw.setdefault("overload", {})
    trusted = list(overload.get("trusted", []))
    if f"{edge_host}/32" not in trusted:
        overload["trusted"] = [*trusted, f"{edge_host}/32"]
    base = source.resolve().parent
    server = raw.setdefault("server", {})
    server["data_dir"] = str(shared)
    server["http"] = f"{http[0]}:{http[1]}"
    server.pop("workers", None)
    for music in raw.get("music", []):
        music["files"] = [str((base / f).resolve()) for f in music.get("files", [])]
    for ann in raw.get("announcements", []):
        if "file" in ann:
            ann["file"] = str((base / ann["file"]).resolve())
    for key in ("tls_cert", "tls_key", "tls_ca"):
        if server.get(key):
            server[key] = str((base / server[key]).resolve())
    raw["store"] = {"url": url}
    media = raw.setdefault("media", {})
    media["backend"] = "rtpengine"
    media["rtpengine"] = f"{rtpengine[0]}:{rtpengine[1]}"
    return raw_to_toml(raw, header="Written by scripts/cluster: one node of the local platform.")


def _spawn_node(args: list[str], sip: tuple[str, int], http: tuple[str, int], log_path: Path,
                cwd: Path, env: dict[str, str] | None = None) -> Node:
    with log_path.open("ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
    return Node(process, process.pid, sip, http, log_path, args)


def _wait_node(node: Node, timeout: float = 30.0) -> None:
    try:
        wait_for_sip(node.sip, timeout=timeout)
        wait_for_tcp(node.http, timeout=timeout)
    except TimeoutError:
        raise RuntimeError(f"node {node.sip} did not start:\n{node.log()[-4000:]}") from None


def up(directory: Path, *, nodes: int = 2, config: Path = DEFAULT_CONFIG,
       env: dict[str, str] | None = None, host: str = "127.0.0.1",
       log_level: str = "INFO") -> Platform:
    """Start everything; the platform (stop it with `Platform.stop` or `down`)."""
    directory.mkdir(parents=True, exist_ok=True)
    shared = directory / "shared"
    shared.mkdir(exist_ok=True)
    pg = start_postgres(host=host)
    started: list[Any] = [pg]
    try:
        engine = start_rtpengine(directory / "rtpengine", host=host, ports=2000)
        started.append(engine)
        made: list[Node] = []
        for i in range(nodes):
            sip = (host, free_port(host=host))
            http = (host, free_port(host=host))
            path = directory / f"node{i + 1}.toml"
            path.write_text(node_config(config, pg.url, engine.ng, shared, http, host))
            args = [sys.executable, "-m", "b2bua", "run", "--config", str(path), "--log-level", log_level,
                    "--listen", f"udp:{sip[0]}:{sip[1]}", "--http", f"{http[0]}:{http[1]}"]
            node = _spawn_node(args, sip, http, directory / f"node{i + 1}.log", directory, env)
            made.append(node)
            started.append(node)
        for node in made:
            _wait_node(node)
        edge = start_edge(directory / "edge", [n.sip for n in made], host=host,
                          new_session=True)
        started.append(edge)
    except BaseException:
        for thing in reversed(started):
            if isinstance(thing, Node):
                _stop_pid(thing.pid, thing.process)
            else:
                thing.stop()
        raise
    return Platform(directory, pg, engine, made, edge, directory / "node1.toml")


# -- scripts/cluster ----------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purpose
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _stop_pid(pid: int, process: subprocess.Popen[bytes] | None = None,
              sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if process is not None and process.poll() is not None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process is not None:
        process.wait(5)


def cmd_up(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    state = directory / STATE_FILE
    if state.exists():
        print(f"cluster: already up ({state}); run scripts/cluster down first", file=sys.stderr)
        return 1
    try:
        os.setsid()  # the platform outlives this command and its terminal's signals
    except OSError:
        pass
    # One admin password for every node (each would make its own otherwise).
    password = args.admin_password or secrets.token_urlsafe(12)
    directory.mkdir(parents=True, exist_ok=True)
    secret_file = directory / "admin-password"
    secret_file.write_text(password + "\n")
    secret_file.chmod(0o600)
    env = {"B2BUA_ADMIN_PASSWORD": password}
    platform = up(directory, nodes=args.nodes, config=Path(args.config), env=env)
    record = {
        **platform.to_json(),
        "pids": {"nodes": [n.pid for n in platform.nodes], "edge": platform.edge.pid,
                 "rtpengine": platform.rtpengine.pid, "postgres": platform.postgres.pid},
        "postgres_dir": str(platform.postgres.directory),
    }
    state.write_text(json.dumps(record, indent=2))
    print(json.dumps(platform.to_json()), flush=True)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    state = directory / STATE_FILE
    if not state.exists():
        print(f"cluster: nothing to stop ({state} missing)", file=sys.stderr)
        return 0
    record = json.loads(state.read_text())
    pids = record.get("pids", {})
    for pid in pids.get("nodes", []):
        _stop_pid(int(pid))
    for name in ("edge", "rtpengine"):
        if pids.get(name):
            _stop_pid(int(pids[name]))
    if pids.get("postgres"):
        _stop_pid(int(pids["postgres"]), sig=signal.SIGINT, timeout=20)
    if record.get("postgres_dir"):
        shutil.rmtree(record["postgres_dir"], ignore_errors=True)
    state.unlink()
    print("cluster: stopped", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster",
                                     description="a local multi-node platform on loopback")
    parser.add_argument("--dir", default=os.environ.get("B2BUA_CLUSTER_DIR",
                                                        str(ROOT / "var" / "cluster")),
                        help="where the platform keeps its files, logs and state")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start PostgreSQL, rtpengine, the nodes and the edge")
    p_up.add_argument("--nodes", type=int, default=2)
    p_up.add_argument("--config", default=str(DEFAULT_CONFIG),
                      help="the nodes' configuration (default: conf/default.toml)")
    p_up.add_argument("--admin-password", default=os.environ.get("B2BUA_ADMIN_PASSWORD"))
    sub.add_parser("down", help="stop what `up` started")
    args = parser.parse_args(argv)
    return cmd_up(args) if args.command == "up" else cmd_down(args)


if __name__ == "__main__":
    sys.exit(main())
