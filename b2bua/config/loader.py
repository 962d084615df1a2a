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
from b2bua.config.messages import Problem, render
from b2bua.config.schema import DESTINATION_KINDS, FIELD_NAMES, Config, User

__all__ = ["config_from_dict", "config_from_text", "load_config", "problem_of"]


def load_config(path: str | Path) -> Config:
    """Read, validate and cross-check a TOML configuration; raise ConfigError listing all issues."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read: {exc}"
        raise ConfigError([ConfigIssue(file, 1, "(file)", reason, "unreadable")]) from None
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

    def add(path: KeyPath, code: str, params: dict[str, Any]) -> None:
        reason = render(code, params, "en")
        line = line_for(lines, path)
        issues.append(ConfigIssue(file, line, format_path(path), reason, code, params, path))

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
            add(_data_path(raw, loc), *problem_of(err))
    for path, code, params in cross_check(raw, lines):
        add(path, code, params)
    if issues or config is None:
        unique = {(i.field, i.reason): i for i in issues}
        raise ConfigError(sorted(unique.values(), key=lambda i: (i.line, i.field)))
    config = _fill_user_defaults(config)
    config._source = file
    config._lines = lines
    return config


def _fill_user_defaults(config: Config) -> Config:
    server = config.server

    def filled(users: tuple[User, ...]) -> tuple[User, ...]:
        return tuple(
            u if u.timezone and u.language else u.model_copy(
                update={
                    "timezone": u.timezone or server.timezone,
                    "language": u.language or server.language,
                }
            )
            for u in users
        )

    update: dict[str, Any] = {"users": filled(config.users)}
    if config.tenants:
        update["tenants"] = tuple(
            t.model_copy(update={"users": filled(t.users)}) for t in config.tenants)
    return config.model_copy(update=update)


def _syntax_issue(file: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigIssue:
    message = str(exc)
    m = re.search(r"\(at line (\d+), column \d+\)", message)
    if m is not None:
        line = int(m.group(1))
        message = message[: m.start()].strip()
    else:
        line = text.count("\n") + 1
        message = message.replace("(at end of document)", "").strip() + " (at end of file)"
    return ConfigIssue(file, line, "(syntax)", f"TOML syntax error: {message}", "toml_syntax")


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


# pydantic error types -> our codes (b2bua.config.messages); anything else is "invalid".
_TYPE_CODES: dict[str, str] = {
    "string_type": "expected_text",
    "int_type": "expected_integer",
    "int_parsing": "expected_integer",
    "int_from_float": "expected_integer",
    "float_type": "expected_number",
    "float_parsing": "expected_number",
    "bool_type": "expected_boolean",
    "bool_parsing": "expected_boolean",
    "list_type": "expected_list",
    "tuple_type": "expected_list",
    "model_type": "expected_table",
    "model_attributes_type": "expected_table",
    "dict_type": "expected_table",
}
# What a field with a `pattern` expects, in words (English, French).
_PATTERN_HINTS: dict[str, tuple[str, str]] = {
    "country_code": ("a country calling code such as 33", "un indicatif de pays comme 33"),
    "contact": (
        "a SIP URI such as sip:1001@192.0.2.10:5060",
        "une adresse SIP comme sip:1001@192.0.2.10:5060",
    ),
}
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def problem_of(err: Any) -> tuple[str, dict[str, Any]]:
    """(code, params) for one pydantic error (as `ValidationError.errors()` lists them)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    scalar = isinstance(value, str | int | float | bool)
    got: dict[str, Any] = {"got": value} if scalar else {}
    if kind == "value_error":
        cause = ctx.get("error")
        if isinstance(cause, Problem):
            return cause.code, dict(cause.params)
        return "invalid", {"reason": str(cause) if cause is not None else err["msg"]}
    if kind == "missing":
        return "required", {}
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
        return "unknown_key", {"key": key, "suggestion": close[0] if close else None}
    if kind == "union_tag_invalid":
        return "unknown_destination_kind", {
            "kind": ctx.get("tag"), "expected": list(DESTINATION_KINDS)
        }
    if kind == "union_tag_not_found":
        return "destination_kind_missing", {"expected": list(DESTINATION_KINDS)}
    if kind in _TYPE_CODES:
        code = _TYPE_CODES[kind]
        return code, ({"value": value} if code == "expected_table" else got)
    if kind == "string_too_short":
        minimum = int(ctx.get("min_length", 1))
        return ("empty", {}) if minimum <= 1 else ("text_too_short", {"min": minimum})
    if kind == "string_too_long":
        return "too_long", {"max": ctx.get("max_length")}
    if kind == "too_short":
        return "too_few", {"min": ctx.get("min_length")}
    if kind == "too_long":
        return "too_many", {"max": ctx.get("max_length")}
    if kind == "greater_than_equal":
        return "too_small", {"min": ctx.get("ge"), **got}
    if kind == "less_than_equal":
        return "too_large", {"max": ctx.get("le"), **got}
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = _QUOTED.findall(expected)
        if choices:
            return "not_one_of", {"expected": choices, **got}
    if kind == "string_pattern_mismatch":
        field = str(err["loc"][-1]) if err["loc"] else ""
        if field == "extension":
            return "invalid_extension", {"value": value}
        en, fr = _PATTERN_HINTS.get(field, ("a value of another form", "une valeur d'une autre forme"))
        return "invalid_format", {"expected_en": en, "expected_fr": fr, **got}
    message: str = err["msg"].replace("Input should be", "expected")
    if scalar:
        message += f" (got {value!r})"
    return "invalid", {"reason": message}
