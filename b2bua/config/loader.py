"""Loading a configuration: TOML text (or a dict of the same shape) to a validated `Config`,
every problem reported at once (see the package docstring for the three passes)."""

from __future__ import annotations

import difflib
import gc
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from b2bua.config.checks import cross_check
from b2bua.config.issues import ConfigError, ConfigIssue, KeyPath, PathPart, format_path
from b2bua.config.locator import Locator, line_for
from b2bua.config.schema import DESTINATION_KINDS, FIELD_NAMES, Config

__all__ = ["config_from_dict", "config_from_text", "load_config"]


def load_config(path: str | Path) -> Config:
    """Read, validate and cross-check a TOML configuration; raise ConfigError listing all issues."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(file, 1, "(file)", f"cannot read: {exc}")]) from None
    return config_from_text(text, file=file, base_dir=Path(path).resolve().parent)


def config_from_text(text: str, *, file: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate configuration text; `file` names it in issues, relative paths use `base_dir`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_issue(file, text, exc)]) from None
    return _build(raw, Locator(text).lines, file, base_dir)


def config_from_dict(
    data: Mapping[str, Any], *, file: str = "<config>", base_dir: Path | None = None
) -> Config:
    """Validate a configuration given as the dict `tomllib` would return (issues at line 1)."""
    return _build(dict(data), {}, file, base_dir)


def _build(
    raw: dict[str, Any], lines: Mapping[KeyPath, int], file: str, base_dir: Path | None
) -> Config:
    # Validation allocates many objects that all survive; the cyclic collector would only
    # rescan them again and again (a large configuration loads several times faster without).
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _validate(raw, lines, file, base_dir)
    finally:
        if paused:
            gc.enable()


def _validate(
    raw: dict[str, Any], lines: Mapping[KeyPath, int], file: str, base_dir: Path | None
) -> Config:
    issues: list[ConfigIssue] = []

    def add(path: KeyPath, reason: str) -> None:
        issues.append(ConfigIssue(file, line_for(lines, path), format_path(path), reason, path=path))

    config: Config | None = None
    context = {"base_dir": base_dir if base_dir is not None else Path.cwd()}
    try:
        config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for err in errors:
            loc = err["loc"]
            if err["type"] == "too_short" and any(
                len(e["loc"]) > len(loc) and e["loc"][: len(loc)] == loc for e in errors
            ):
                continue  # "too short" only because its items were rejected: say why instead
            add(_data_path(raw, loc), _reason(err))
    for path, reason in cross_check(raw, lines):
        add(path, reason)
    if issues or config is None:
        unique = {(i.field, i.reason): i for i in issues}
        raise ConfigError(sorted(unique.values(), key=lambda i: (i.line, i.field)))
    config = _fill_user_defaults(config)
    config._source = file
    config._lines = lines
    return config


def _fill_user_defaults(config: Config) -> Config:
    users = tuple(
        u.model_copy(
            update={
                "timezone": u.timezone or config.server.timezone,
                "language": u.language or config.server.language,
            }
        )
        for u in config.users
    )
    return config.model_copy(update={"users": users})


def _syntax_issue(file: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigIssue:
    message = str(exc)
    m = re.search(r"\(at line (\d+), column \d+\)", message)
    if m is not None:
        line = int(m.group(1))
        message = message[: m.start()].strip()
    else:
        line = text.count("\n") + 1
        message = message.replace("(at end of document)", "").strip() + " (at end of file)"
    return ConfigIssue(file, line, "(syntax)", f"TOML syntax error: {message}")


def _data_path(raw: Any, loc: tuple[int | str, ...]) -> KeyPath:
    """Turn a pydantic error location into a path of the document (dropping union tags)."""
    out: list[PathPart] = []
    node: Any = raw
    last = len(loc) - 1
    for i, part in enumerate(loc):
        if isinstance(node, dict):
            if isinstance(part, str) and node.get("kind") == part:
                continue  # discriminated-union tag
            if isinstance(part, str) and part in node:
                out.append(part)
                node = node[part]
                continue
            if isinstance(part, str) and i == last and not part.startswith(("[", "function")):
                out.append(part)
            continue
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
    return tuple(out)


def _reason(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {key!r}{hint}"
    if kind == "union_tag_invalid":
        return f"unknown destination kind {ctx.get('tag')!r} (expected one of: {', '.join(DESTINATION_KINDS)})"
    if kind == "union_tag_not_found":
        return f"a destination needs a kind (one of: {', '.join(DESTINATION_KINDS)})"
    if kind == "model_attributes_type" or kind == "model_type":
        return f"expected a table, got {value!r}"
    message: str = err["msg"]
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    message = message.replace("Input should be", "expected")
    if isinstance(value, str | int | float | bool) and not isinstance(value, dict):
        message += f" (got {value!r})"
    return message
