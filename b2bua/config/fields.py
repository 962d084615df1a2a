"""Field types of the configuration models: extensions, phone numbers, caller patterns, times,
days and months, time zones, paths, networks and addresses. Each validator raises `Problem` (a
ValueError with a stable code; b2bua.config.messages words it)."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictStr,
    ValidationInfo,
)

from b2bua.config.messages import Problem
from b2bua.config.timespec import WEEKDAYS, parse_date_spec, parse_hhmm

_EXTENSION_RE = re.compile(r"^[0-9A-Za-z_]{1,32}$")
_NUMBER_SEPARATORS = str.maketrans("", "", " .-()/")
_NUMBER_RE = re.compile(r"^\+?[0-9]{2,20}$")
_PATTERN_RE = re.compile(r"^\+?[0-9]*\*?$")


def _extension(value: str) -> str:
    if not _EXTENSION_RE.match(value):
        raise Problem("invalid_extension", value=value)
    return value


def _phone_number(value: str) -> str:
    if not _NUMBER_RE.match(value.translate(_NUMBER_SEPARATORS)):
        raise Problem("invalid_phone_number", value=value)
    return value


def _callers(value: str) -> str:
    tokens = value.split()
    if not tokens:
        raise Problem("callers_empty")
    for token in tokens:
        if "," in token or ";" in token:
            raise Problem("callers_separator", token=token)
        if token == "*":
            continue
        core = token.translate(_NUMBER_SEPARATORS)
        if not _PATTERN_RE.match(core) or core in ("", "+"):
            if "*" in core[:-1]:
                raise Problem("callers_star_position", token=token)
            raise Problem("callers_invalid", token=token)
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Problem("invalid_timezone", value=value) from None
    return value


def _time_start(value: str) -> str:
    parse_hhmm(value)
    return value


def _time_end(value: str) -> str:
    parse_hhmm(value, allow_24=True)
    return value


def _date_spec(value: str) -> str:
    parse_date_spec(value)
    return value


def _days(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise Problem("days_not_list", value=value)
    out: list[str] = []
    for day in value:
        if not isinstance(day, str) or day not in WEEKDAYS:
            raise Problem("unknown_weekday", value=day, expected=list(WEEKDAYS))
        out.append(day)
    return tuple(out)


def _months(value: Any) -> Literal["all"] | tuple[int, ...]:
    if value == "all":
        return "all"
    if not isinstance(value, list | tuple):
        raise Problem("months_not_list", value=value)
    out: list[int] = []
    for month in value:
        if isinstance(month, bool) or not isinstance(month, int):
            raise Problem("month_not_number", value=month)
        if not 1 <= month <= 12:
            raise Problem("month_out_of_range", month=month)
        out.append(month)
    return tuple(out)


def _path_str(value: Any) -> Any:
    if not isinstance(value, str | Path):
        raise Problem("expected_path", value=value)
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return (Path(base) / value).resolve()
    return value


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise Problem("expected_network", value=value)
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise Problem("invalid_network", value=value) from None
        raise Problem("network_host_bits", value=value, suggestion=str(loose)) from None


Extension = Annotated[StrictStr, AfterValidator(_extension)]
PhoneNumber = Annotated[StrictStr, AfterValidator(_phone_number)]
TimeOfDay = Annotated[StrictStr, AfterValidator(_time_start)]
TimeOfDayEnd = Annotated[StrictStr, AfterValidator(_time_end)]
TimeZoneName = Annotated[StrictStr, AfterValidator(_timezone)]
ConfigPath = Annotated[Path, BeforeValidator(_path_str), AfterValidator(_resolve_path)]
Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, PlainValidator(_network)]
NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]


class ConfigModel(BaseModel):
    """Every configuration model: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------
# Addresses


_ADDRESS_RE = re.compile(r"^(\[[^\]]*\]|[^:\[\]]+):([0-9]{1,5})$")


def _split_host_port(text: str) -> tuple[str, int]:
    m = _ADDRESS_RE.match(text)
    if m is None:
        raise Problem("invalid_address", value=text)
    host, port = m.group(1), int(m.group(2))
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise Problem("invalid_ipv6", value=text, host=host) from None
    if not 1 <= port <= 65535:
        raise Problem("port_out_of_range", value=text, port=port)
    return host, port


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HostPort(ConfigModel):
    """`HOST:PORT` (IPv6 hosts in brackets in the file, bare here)."""

    host: str
    port: int

    def __str__(self) -> str:
        return _join_host_port(self.host, self.port)


class ListenSpec(ConfigModel):
    """A SIP listening address: `udp|tcp|tls:HOST:PORT`."""

    transport: Literal["udp", "tcp", "tls"]
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{_join_host_port(self.host, self.port)}"


class PortRange(ConfigModel):
    """`FIRST-LAST`, both inclusive."""

    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def _host_port(value: Any) -> Any:
    if isinstance(value, str):
        host, port = _split_host_port(value)
        return {"host": host, "port": port}
    if isinstance(value, HostPort):
        return value
    raise Problem("expected_address", value=value)


def _listen(value: Any) -> Any:
    if isinstance(value, ListenSpec):
        return value
    if not isinstance(value, str):
        raise Problem("expected_listen", value=value)
    transport, sep, rest = value.partition(":")
    if not sep or transport not in ("udp", "tcp", "tls"):
        raise Problem("invalid_listen", value=value)
    host, port = _split_host_port(rest)
    return {"transport": transport, "host": host, "port": port}


def _port_range(value: Any) -> Any:
    if isinstance(value, PortRange):
        return value
    m = re.match(r"^(\d{1,5})-(\d{1,5})$", value) if isinstance(value, str) else None
    if m is None:
        raise Problem("expected_port_range", value=value)
    first, last = int(m.group(1)), int(m.group(2))
    if not (1024 <= first < last <= 65535):
        raise Problem("port_range_bounds", value=value)
    return {"first": first, "last": last}


HostPortField = Annotated[HostPort, BeforeValidator(_host_port)]
ListenField = Annotated[ListenSpec, BeforeValidator(_listen)]
PortRangeField = Annotated[PortRange, BeforeValidator(_port_range)]

Weekdays = Annotated[tuple[str, ...], PlainValidator(_days)]
Months = Annotated[Literal["all"] | tuple[int, ...], PlainValidator(_months)]
DateSpecText = Annotated[StrictStr, AfterValidator(_date_spec)]
Callers = Annotated[StrictStr, AfterValidator(_callers)]
DialledNumber = Annotated[str, AfterValidator(_phone_number)]
