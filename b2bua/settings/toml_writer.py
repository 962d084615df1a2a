"""The configuration as a TOML-shaped dict, and back to TOML text (`b2bua export`, the merge
of stored settings over the file)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from b2bua.config import Config, TenantSection, User

__all__ = ["config_to_raw", "raw_to_toml", "user_to_raw"]


def user_to_raw(user: User) -> dict[str, Any]:
    """A user's section as written in the file (JSON types; defaults not written left out)."""
    return user.model_dump(mode="json", exclude_unset=True, warnings=False)


def config_to_raw(config: Config) -> dict[str, Any]:
    """The whole configuration as the dict `tomllib` would read from an equivalent file."""
    raw = config.model_dump(mode="json", exclude_unset=True, warnings=False, by_alias=True)
    server = raw.get("server", {})
    server["listen"] = [str(s) for s in config.server.listen]
    server["http"] = str(config.server.http)
    server["data_dir"] = str(config.server.data_dir)
    for key in ("tls_cert", "tls_key", "tls_ca"):
        value = getattr(config.server, key)
        if value is not None:
            server[key] = str(value)
    media = raw.get("media")
    if media is not None:
        if "rtp_ports" in media:
            media["rtp_ports"] = str(config.media.rtp_ports)
        if "rtpengine" in media:
            media["rtpengine"] = str(config.media.rtpengine)
    _company_to_raw(raw, config)
    for section, tenant in zip(raw.get("tenants", ()), config.tenants, strict=False):
        _company_to_raw(section, tenant)
    return raw


def _company_to_raw(raw: dict[str, Any], company: Config | TenantSection) -> None:
    """A company's sections (the top level's, or a tenant's) in their written form."""
    for i, trunk in enumerate(company.trunks):
        raw["trunks"][i]["address"] = str(trunk.address)
        if "inbound_from" in raw["trunks"][i]:
            raw["trunks"][i]["inbound_from"] = [str(n) for n in trunk.inbound_from]
    for i, music in enumerate(company.music):
        raw["music"][i]["files"] = [str(f) for f in music.files]
    for i, ann in enumerate(company.announcements):
        raw["announcements"][i]["file"] = str(ann.file)
    raw["users"] = [user_to_raw(u) for u in company.users]


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("TOML cannot hold NaN or infinity here")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _is_sub_table(value: Any) -> bool:
    """A dict written as a [table] rather than inline: one that holds tables itself."""
    return isinstance(value, dict) and any(
        isinstance(v, dict) or _is_table_array(v) for v in value.values()
    )


def _emit_table(out: list[str], path: tuple[str, ...], table: Mapping[str, Any], depth: int) -> None:
    indent = "  " * max(0, depth - 1)
    for key, value in table.items():
        if value is None or _is_table_array(value) or (path == () and isinstance(value, dict)):
            continue
        if _is_sub_table(value):
            continue
        out.append(f"{indent}{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if value is None:
            continue
        sub = (*path, key)
        name = ".".join(_toml_key(k) for k in sub)
        if isinstance(value, dict) and (path == () or _is_sub_table(value)):
            out.append("")
            out.append(f"{'  ' * max(0, depth)}[{name}]" if depth else f"[{name}]")
            _emit_table(out, sub, value, depth + 1)
        elif _is_table_array(value):
            for item in value:
                out.append("")
                out.append(f"{'  ' * depth}[[{name}]]")
                _emit_table(out, sub, item, depth + 1)


def raw_to_toml(raw: Mapping[str, Any], header: str = "") -> str:
    """TOML text for a configuration dict (nested sections as tables, destinations inline)."""
    out: list[str] = [f"# {line}" if line else "#" for line in header.splitlines()]
    _emit_table(out, (), raw, 0)
    return "\n".join(out).lstrip("\n") + "\n"
