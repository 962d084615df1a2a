"""The allocator `b2bua run` starts itself on (b2bua.allocator): the environment it sets and
takes back, the configuration key it reads before anything else, and its check."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua import allocator
from b2bua.config import ConfigError, config_from_text

LIB = "libmimalloc.so.2"


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "mimalloc_library", lambda: LIB)


@pytest.fixture
def missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "mimalloc_library", lambda: None)


def test_mimalloc_is_preloaded_before_what_the_user_preloads(installed: None) -> None:
    env = allocator.environment("mimalloc", {"LD_PRELOAD": "libmine.so", "HOME": "/root"})
    assert env["LD_PRELOAD"] == f"{LIB} libmine.so"
    assert env["PYTHONMALLOC"] == "malloc"
    assert env["HOME"] == "/root"


def test_python_takes_back_only_what_was_added(installed: None) -> None:
    user = {"LD_PRELOAD": "libmine.so", "HOME": "/root"}
    ours = allocator.environment("mimalloc", user)
    assert allocator.environment("python", ours) == user
    assert allocator.environment("python", allocator.environment("mimalloc", {})) == {}


def test_a_pythonmalloc_the_user_set_wins(installed: None) -> None:
    env = {"PYTHONMALLOC": "pymalloc_debug"}
    assert allocator.environment("python", env) == env
    assert allocator.environment("mimalloc", env) == env


def test_without_the_library_nothing_is_preloaded(missing: None) -> None:
    assert allocator.environment("mimalloc", {"HOME": "/"}) == {"HOME": "/"}


names = st.text(st.sampled_from("ABCLD_PRELOADYTHONMALLOC"), min_size=1, max_size=12)
values = st.text(st.sampled_from("ab.so /:"), max_size=12)


@given(env=st.dictionaries(names, values, max_size=5), first=st.sampled_from(allocator.CHOICES),
       then=st.sampled_from(allocator.CHOICES))
def test_the_environment_depends_only_on_the_last_choice(
    env: dict[str, str], first: str, then: str
) -> None:
    """A server started again (a worker, a second exec) lands where a first start would: what
    an earlier choice added never piles up nor stays behind."""
    original = allocator.mimalloc_library
    allocator.mimalloc_library = lambda: LIB  # type: ignore[assignment]
    try:
        env.pop("B2BUA_ALLOCATOR", None)
        once = allocator.environment(then, env)
        twice = allocator.environment(then, allocator.environment(first, env))
        assert twice == once
        assert allocator.environment(then, once) == once
    finally:
        allocator.mimalloc_library = original  # type: ignore[method-assign]


def test_the_key_is_read_without_the_rest_of_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "b2bua.toml"
    path.write_text('[server]\nallocator = "mimalloc"\nlisten = 5\n')  # listen: wrong, unread
    assert allocator.configured(str(path)) == "mimalloc"
    path.write_text("[server]\n")
    assert allocator.configured(str(path)) == "python"
    path.write_text("[server\nallocator = 'mimalloc'\n")  # does not parse: the check says why
    assert allocator.configured(str(path)) == "python"
    path.write_text('[server]\nallocator = "jemalloc"\n')
    assert allocator.configured(str(path)) == "python"
    assert allocator.configured(str(tmp_path / "absent.toml")) == "python"


def test_the_configuration_refuses_mimalloc_when_it_is_missing(missing: None) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_text('[server]\ndomain = "pbx.test"\nallocator = "mimalloc"\n', file="t.toml")
    [issue] = info.value.issues
    assert (issue.line, issue.field) == (3, "server.allocator")
    assert "mimalloc is not installed" in issue.reason


def test_an_unknown_allocator_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_text('[server]\ndomain = "pbx.test"\nallocator = "tcmalloc"\n', file="t.toml")
    [issue] = info.value.issues
    assert (issue.line, issue.field) == (3, "server.allocator")


def test_python_is_the_default_and_needs_nothing_installed(missing: None) -> None:
    assert config_from_text('[server]\ndomain = "pbx.test"\n').server.allocator == "python"
    config = config_from_text('[server]\ndomain = "pbx.test"\nallocator = "python"\n')
    assert config.server.allocator == "python"
