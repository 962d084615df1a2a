"""Field types of the configuration models: extensions, phone numbers, caller patterns, times,
days and months, time zones, paths, networks and addresses. Each validator raises ValueError
with the reason a person reads after `FILE:LINE: field:`."""

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

from b2bua.config.timespec import WEEKDAYS, parse_date_spec, parse_hhmm

_EXTENSION_RE = re.compile(r"^[0-9A-Za-z_]{1,32}$")
_NUMBER_SEPARATORS = str.maketrans("", "", " .-()/")
_NUMBER_RE = re.compile(r"^\+?[0-9]{2,20}$")
_PATTERN_RE = re.compile(r"^\+?[0-9]*\*?$")


def _extension(value: str) -> str:
    if not _EXTENSION_RE.match(value):
        raise ValueError(f"{value!r} is not an extension (letters, digits or _, at most 32)")
    return value


def _phone_number(value: str) -> str:
    if not _NUMBER_RE.match(value.translate(_NUMBER_SEPARATORS)):
        raise ValueError(f"{value!r} is not a phone number")
    return value


def _callers(value: str) -> str:
    tokens = value.split()
    if not tokens:
        raise ValueError("empty; use '*' for every caller")
    for token in tokens:
        if "," in token or ";" in token:
            raise ValueError(f"{token!r}: separate several patterns with spaces")
        if token == "*":
            continue
        core = token.translate(_NUMBER_SEPARATORS)
        if not _PATTERN_RE.match(core) or core in ("", "+"):
            if "*" in core[:-1]:
                raise ValueError(f"{token!r}: '*' is only allowed at the end of a pattern")
            raise ValueError(f"{token!r} is not a number or a prefix such as 06*")
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Paris)") from None
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
        raise ValueError(f'expected a list of days such as ["mon", "tue"], got {value!r}')
    out: list[str] = []
    for day in value:
        if not isinstance(day, str) or day not in WEEKDAYS:
            raise ValueError(f"unknown weekday {day!r} (expected {', '.join(WEEKDAYS)})")
        out.append(day)
    return tuple(out)


def _months(value: Any) -> Literal["all"] | tuple[int, ...]:
    if value == "all":
        return "all"
    if not isinstance(value, list | tuple):
        raise ValueError(f'expected "all" or a list of months 1..12, got {value!r}')
    out: list[int] = []
    for month in value:
        if isinstance(month, bool) or not isinstance(month, int):
            raise ValueError(f"month {month!r} is not a number 1..12")
        if not 1 <= month <= 12:
            raise ValueError(f"month {month} is not in 1..12")
        out.append(month)
    return tuple(out)


def _path_str(value: Any) -> Any:
    if not isinstance(value, str | Path):
        raise ValueError(f"expected a path (string), got {value!r}")
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return (Path(base) / value).resolve()
    return value


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ValueError(f'expected a network such as "192.0.2.0/24", got {value!r}')
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an address or a network (CIDR)") from None
        raise ValueError(f"{value!r} has host bits set; did you mean {loose}?") from None


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
        raise ValueError(f"{text!r} is not HOST:PORT (IPv6 as [::1]:5060)")
    host, port = m.group(1), int(m.group(2))
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is not in 1..65535")
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
    raise ValueError(f'expected "HOST:PORT", got {value!r}')


def _listen(value: Any) -> Any:
    if isinstance(value, ListenSpec):
        return value
    if not isinstance(value, str):
        raise ValueError(f'expected "TRANSPORT:HOST:PORT", got {value!r}')
    transport, sep, rest = value.partition(":")
    if not sep or transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"{value!r}: expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT")
    host, port = _split_host_port(rest)
    return {"transport": transport, "host": host, "port": port}


def _port_range(value: Any) -> Any:
    if isinstance(value, PortRange):
        return value
    m = re.match(r"^(\d{1,5})-(\d{1,5})$", value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f'expected "FIRST-LAST" such as "20000-29999", got {value!r}')
    first, last = int(m.group(1)), int(m.group(2))
    if not (1024 <= first < last <= 65535):
        raise ValueError(f"{value!r}: need 1024 <= FIRST < LAST <= 65535")
    return {"first": first, "last": last}


HostPortField = Annotated[HostPort, BeforeValidator(_host_port)]
ListenField = Annotated[ListenSpec, BeforeValidator(_listen)]
PortRangeField = Annotated[PortRange, BeforeValidator(_port_range)]

Weekdays = Annotated[tuple[str, ...], PlainValidator(_days)]
Months = Annotated[Literal["all"] | tuple[int, ...], PlainValidator(_months)]
DateSpecText = Annotated[StrictStr, AfterValidator(_date_spec)]
Callers = Annotated[StrictStr, AfterValidator(_callers)]
DialledNumber = Annotated[str, AfterValidator(_phone_number)]
