"""`b2bua run` raises its soft limit on open files: RTP port pairs are kept open between calls."""

from __future__ import annotations

import resource

from b2bua.server import OPEN_FILES, raise_open_files_limit
from media.engine import WARM_PAIRS, _warm_limit


def test_a_service_managers_default_limit_is_raised_up_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        assert _warm_limit() == 0  # 1,024 files leave no room to keep pairs open
        got = raise_open_files_limit(4096)
        expected = 4096 if hard == resource.RLIM_INFINITY or hard >= 4096 else hard
        assert got == expected == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert raise_open_files_limit(2048) == expected  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_limit_asked_for_leaves_room_for_every_warm_pair() -> None:
    assert (OPEN_FILES * 3 // 4 - 1024) // 2 >= WARM_PAIRS
