"""`b2bua run` on mimalloc when the configuration asks for it (b2bua.allocator): started again at
once in the same process, the workers too; on Python's own allocator by default."""

from __future__ import annotations

import time
from pathlib import Path

from b2bua.allocator import mimalloc_library
from b2bua.testing.server import start_server
from tests.integration.conftest import make_config


def on_mimalloc(pid: int) -> bool:
    return "libmimalloc" in Path(f"/proc/{pid}/maps").read_text()


def environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def on(allocator: str, tmp_path: Path) -> Path:
    config = make_config(tmp_path)
    config.write_text(
        config.read_text().replace("[server]\n", f'[server]\nallocator = "{allocator}"\n', 1))
    return config


def test_the_server_starts_again_on_mimalloc(tmp_path: Path) -> None:
    assert mimalloc_library() is not None, "scripts/setup installs Debian's mimalloc"
    server = start_server(on("mimalloc", tmp_path))
    try:
        pid = server.process.pid  # the process we started, its program replaced
        assert on_mimalloc(pid)
        assert environ(pid)["PYTHONMALLOC"] == "malloc"
        assert "memory allocator: mimalloc" in server.log()
    finally:
        assert server.stop() == 0, server.log()[-2000:]  # a clean stop, even right after start
    assert "Traceback" not in server.log()


def test_by_default_it_keeps_pythons_own_allocator(tmp_path: Path) -> None:
    server = start_server(make_config(tmp_path))
    try:
        assert not on_mimalloc(server.process.pid)
        assert "PYTHONMALLOC" not in environ(server.process.pid)
        assert "memory allocator: python" in server.log()
    finally:
        server.stop()


def test_every_worker_runs_on_it(tmp_path: Path) -> None:
    server = start_server(on("mimalloc", tmp_path), extra_args=("--workers", "2"))
    try:
        deadline = time.monotonic() + 10
        while len(workers := children(server.process.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers, "the second worker started"
        assert all(on_mimalloc(pid) for pid in [server.process.pid, *workers])
    finally:
        server.stop()
