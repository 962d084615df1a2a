"""The memory allocator `b2bua run` runs on: Python's own, or mimalloc when configured.

Python's own small-object allocator (pymalloc) carves every object of up to 512 bytes out of
1 MiB arenas and gives an arena back to the system only when not one block in it is still in
use. A flood of requests fills dozens of arenas with transactions that live a few seconds; a few
hundred blocks that outlive them (a counter's new value, the storage of a list or a dict that
grew, an entry of a standard library cache) then hold those arenas for good: 15,000 failed
authentications from 1,000 addresses, which fill the waiting transactions, take the server
from 71 to 85 MB, and it stays at 82 MB once every transaction of the flood is over
(docs/overload.md, "Memory"; a flood of what is refused statelessly takes little: 200,000
fuzzed datagrams, 4 MB).

mimalloc (Debian: `libmimalloc3`, `libmimalloc2.0` on Debian 12) gives memory back by the page,
so more of it comes back (76 to 90 MB, then 82 MB a minute later for the same flood); but a
call then costs 8 to 16% more CPU in the SIPp benchmark (the same instructions over the
in-memory network: the difference is in the allocator's calls and the pages it hands back and
touches again). So Python's allocator stays
the default and mimalloc is a choice for hosts that value memory after a flood over CPU: with
`[server] allocator = "mimalloc"`, `b2bua run` starts itself again at once, before anything else
(exec: same process, same PID), with `PYTHONMALLOC=malloc` and the library preloaded; workers
inherit it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from functools import cache

CHOICES = ("python", "mimalloc")
_MARK = "B2BUA_ALLOCATOR"  # set in the environment of a server that was started again


@cache
def mimalloc_library() -> str | None:
    """The name to preload mimalloc by (its soname, found through the loader's cache), or None
    when it is not installed."""
    return ctypes.util.find_library("mimalloc")


def environment(allocator: str, env: Mapping[str, str]) -> dict[str, str]:
    """`env` as a server on `allocator` needs it. What an earlier start added is taken out
    first, exactly; a `PYTHONMALLOC` the user set wins over the configuration."""
    out = dict(env)
    ours = out.pop(_MARK, None)
    if ours is not None:
        preload = out.get("LD_PRELOAD", "")
        if preload == ours:
            del out["LD_PRELOAD"]
        elif preload.startswith(ours + " "):
            out["LD_PRELOAD"] = preload[len(ours) + 1 :]
        out.pop("PYTHONMALLOC", None)
    library = mimalloc_library() if allocator == "mimalloc" else None
    if library is not None and "PYTHONMALLOC" not in out:
        before = out.get("LD_PRELOAD")
        out["LD_PRELOAD"] = library if before is None else f"{library} {before}"
        out["PYTHONMALLOC"] = "malloc"
        out[_MARK] = library
    return out


def configured(config_path: str) -> str:
    """`[server] allocator` of that file, read without validating anything else ("python" when
    absent or when the file does not read: the configuration's own checks say why later)."""
    try:
        with open(config_path, "rb") as f:
            server = tomllib.load(f).get("server", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return "python"
    choice = server.get("allocator", "python") if isinstance(server, dict) else "python"
    return choice if choice in CHOICES else "python"


def restart_if_needed(config_path: str, argv: Sequence[str]) -> None:
    """Start `b2bua run` again on the configured allocator if this process is not on it yet;
    returns when it is (or cannot be: mimalloc missing, which the configuration check reports
    for "mimalloc"). `argv`: the command's arguments after the program name."""
    env = environment(configured(config_path), os.environ)
    if env == dict(os.environ):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "b2bua", *argv], env)


def active() -> str:
    """The allocator this process runs on: "mimalloc", "malloc" (the C library's) or
    "python"."""
    mode = os.environ.get("PYTHONMALLOC", "")
    if mode == "malloc":
        return "mimalloc" if _MI_COLLECT is not None else "malloc"
    return "python"


def _loaded(name: str, *argtypes: type) -> Callable[..., object] | None:
    """Function `name` of what the process has loaded (the C library, a preloaded allocator),
    or None."""
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    found: Callable[..., object] = fn
    return found


# Looked up at start-up: what a first use would load after a flood would land in its memory.
_MI_COLLECT = _loaded("mi_collect", ctypes.c_bool)  # only when mimalloc is preloaded
_MALLOC_TRIM = _loaded("malloc_trim", ctypes.c_size_t)  # glibc


def give_back() -> None:
    """Return to the system the memory the allocators hold free now (a quiet server after a
    flood: b2bua.server.release_memory): mimalloc's `mi_collect`, which would otherwise wait
    for its own delay; glibc's `malloc_trim`, for the free pages of its heaps."""
    if _MI_COLLECT is not None:
        _MI_COLLECT(True)
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
