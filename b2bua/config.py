"""Configuration: the TOML file of CONTRACT.md, validated into a frozen `Config`.

Theory of operation
-------------------
`load_config(path)` runs three passes and reports every problem it finds at once:

1. `tomllib` parses the text. A syntax error becomes one issue at the line tomllib names.
2. pydantic validates shapes and single values (extra keys are forbidden, so a typo such as
   `ring_timout` is reported instead of silently ignored). Scalars are strict: TOML already has
   types, and `ring_timeout = "20"` is more likely a mistake than an intent.
3. `_cross_check` walks the raw document for what one field cannot tell on its own: an unknown
   colleague, a `mobile` destination for a user without a mobile number, duplicate extensions,
   a 16th caller-ID exception...

Neither tomllib nor pydantic knows line numbers, so `_Locator` scans the text once and records
the line of every key path (`users[0].schedule.hours[1].start`), following `[table]` and
`[[array.of.tables]]` headers, dotted keys, inline tables and multi-line arrays. A path that is not
in the file (a missing required field) falls back to its closest recorded ancestor, typically the
table header.

Every issue is a `ConfigIssue(file, line, field, reason)`; `str(ConfigError)` is one
`FILE:LINE: field: reason` line per issue, sorted by line.
"""

from __future__ import annotations

import difflib
import gc
import ipaddress
import re
import tomllib
import zoneinfo
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
)

__all__ = [
    "MAX_EXCEPTIONS",
    "SHIPPED_MUSIC",
    "SHIPPED_PROMPTS",
    "WEEKDAYS",
    "Announcement",
    "CallerException",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "DateSpec",
    "DestinationConfig",
    "Device",
    "ExceptionalPeriod",
    "HostPort",
    "ListenSpec",
    "Media",
    "Music",
    "OfficeHours",
    "PortRange",
    "Registrar",
    "Schedule",
    "Server",
    "SystemExtension",
    "Trunk",
    "User",
    "config_from_dict",
    "config_from_text",
    "format_path",
    "load_config",
    "parse_date_spec",
    "parse_hhmm",
]

# Prompt names an `announcement` destination may use without declaring them in [[announcements]].
# The media layer ships these recordings.
SHIPPED_PROMPTS: set[str] = {"absence", "closed", "unavailable", "locate", "voicemail_greeting"}
# Hold-music classes that always exist.
SHIPPED_MUSIC: frozenset[str] = frozenset({"default"})

MAX_EXCEPTIONS = 15
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DESTINATION_KINDS: tuple[str, ...] = (
    "devices",
    "voicemail",
    "extension",
    "mobile",
    "external",
    "system",
    "busy",
    "announcement",
)

PathPart: TypeAlias = str | int
KeyPath: TypeAlias = tuple[PathPart, ...]


# --------------------------------------------------------------------------------------------
# Issues and errors


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem (or warning) in a configuration file, at a line, about a field."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class ConfigError(Exception):
    """The configuration cannot be used; `.issues` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


def format_path(path: Sequence[PathPart]) -> str:
    """`("users", 0, "schedule", "hours", 1, "start")` -> `users[0].schedule.hours[1].start`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            if out:
                out.append(".")
            out.append(part)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Value syntax shared with the rules engine


_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_hhmm(text: str, *, allow_24: bool = False) -> int:
    """`"08:30"` -> 510 (minutes after midnight). `"24:00"` (1440) only with `allow_24`."""
    m = _HHMM.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a time (expected HH:MM, e.g. 08:30)")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if allow_24 and hours == 24 and minutes == 0:
        return 1440
    if hours > 23:
        raise ValueError(f"{text!r}: hour {hours} is not in 00..23")
    if minutes > 59:
        raise ValueError(f"{text!r}: minute {minutes} is not in 00..59")
    return hours * 60 + minutes


@dataclass(frozen=True, slots=True)
class DateSpec:
    """One entry of an exceptional period's `dates`.

    `yearly` entries recur every year (`MM-DD`, `MM-DD..MM-DD`, which may cross New Year:
    then `first > last`); one-off entries are real dates (`YYYY-MM-DD`, `A..B`, `first <= last`).
    `first` and `last` are (year, month, day) with year 0 for yearly entries; both inclusive.
    """

    text: str
    yearly: bool
    first: tuple[int, int, int]
    last: tuple[int, int, int]

    @property
    def crosses_new_year(self) -> bool:
        return self.yearly and self.first[1:] > self.last[1:]


_MMDD = re.compile(r"^(\d{2})-(\d{2})$")
_YYYYMMDD = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _parse_one_date(text: str) -> tuple[bool, tuple[int, int, int]]:
    m = _MMDD.match(text)
    if m is not None:
        year, month, day = 0, int(m.group(1)), int(m.group(2))
    else:
        m = _YYYYMMDD.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not a date (expected MM-DD or YYYY-MM-DD)")
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r}: month {month} is not in 1..12")
    try:
        # 2000 is a leap year, so a yearly 02-29 is accepted (it applies in leap years only).
        date(year or 2000, month, day)
    except ValueError:
        raise ValueError(f"{text!r}: day {day} does not exist in month {month}") from None
    return year == 0, (year, month, day)


def parse_date_spec(text: str) -> DateSpec:
    """Parse `MM-DD`, `YYYY-MM-DD` or a range `A..B` of the same kind; ValueError if invalid."""
    raw = text.strip()
    if ".." in raw:
        left, _, right = raw.partition("..")
        yearly_a, first = _parse_one_date(left.strip())
        yearly_b, last = _parse_one_date(right.strip())
        if yearly_a != yearly_b:
            raise ValueError(
                f"{text!r}: both ends of a range must be yearly (MM-DD) or both dated (YYYY-MM-DD)"
            )
        if not yearly_a and last < first:
            raise ValueError(f"{text!r}: the range ends before it starts")
        return DateSpec(raw, yearly_a, first, last)
    yearly, first = _parse_one_date(raw)
    return DateSpec(raw, yearly, first, first)


# --------------------------------------------------------------------------------------------
# Field types


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


class _Model(BaseModel):
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


class HostPort(_Model):
    """`HOST:PORT` (IPv6 hosts in brackets in the file, bare here)."""

    host: str
    port: int

    def __str__(self) -> str:
        return _join_host_port(self.host, self.port)


class ListenSpec(_Model):
    """A SIP listening address: `udp|tcp|tls:HOST:PORT`."""

    transport: Literal["udp", "tcp", "tls"]
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{_join_host_port(self.host, self.port)}"


class PortRange(_Model):
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


# --------------------------------------------------------------------------------------------
# Destinations


class _Destination(_Model):
    def to_config_dict(self) -> dict[str, Any]:
        """The destination as written in the file (defaults not written are left out)."""
        return self.model_dump(exclude_unset=True)


class DevicesDestination(_Destination):
    kind: Literal["devices"]


class VoicemailDestination(_Destination):
    kind: Literal["voicemail"]
    extension: Extension | None = None


class ExtensionDestination(_Destination):
    kind: Literal["extension"]
    extension: Extension
    voicemail: StrictBool = False


class MobileDestination(_Destination):
    kind: Literal["mobile"]
    bounce: StrictBool = False


class ExternalDestination(_Destination):
    kind: Literal["external"]
    number: PhoneNumber
    bounce: StrictBool = False


class SystemDestination(_Destination):
    kind: Literal["system"]
    extension: Extension


class BusyDestination(_Destination):
    kind: Literal["busy"]


class AnnouncementDestination(_Destination):
    kind: Literal["announcement"]
    message: NonEmptyStr


DestinationConfig = Annotated[
    DevicesDestination
    | VoicemailDestination
    | ExtensionDestination
    | MobileDestination
    | ExternalDestination
    | SystemDestination
    | BusyDestination
    | AnnouncementDestination,
    Field(discriminator="kind"),
]


def _voicemail() -> VoicemailDestination:
    return VoicemailDestination(kind="voicemail")


# --------------------------------------------------------------------------------------------
# Sections


class Server(_Model):
    domain: NonEmptyStr
    listen: Annotated[tuple[ListenField, ...], Field(min_length=1)] = (
        ListenSpec(transport="udp", host="0.0.0.0", port=5060),
    )
    http: HostPortField = HostPort(host="127.0.0.1", port=8080)
    data_dir: ConfigPath = Field(default=Path("var"), validate_default=True)
    timezone: TimeZoneName = "UTC"
    country_code: Annotated[StrictStr, Field(pattern=r"^[1-9][0-9]{0,2}$")] = "33"
    auth_algorithms: Annotated[tuple[Literal["SHA-256", "MD5"], ...], Field(min_length=1)] = (
        "SHA-256",
        "MD5",
    )
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    language: Literal["fr", "en"] = "fr"
    # Worker processes sharing the SIP addresses, one event loop each (docs/workers.md).
    workers: Annotated[StrictInt, Field(ge=1, le=16)] = 1


Seconds = Annotated[StrictInt, Field(ge=1, le=86400 * 7)]


class Registrar(_Model):
    min_expires: Seconds = 60
    max_expires: Seconds = 3600
    default_expires: Seconds = 3600
    nonce_ttl: Seconds = 300
    keepalive_interval: Annotated[StrictInt, Field(ge=0, le=3600)] = 30  # 0: no OPTIONS pings
    unreachable_grace: Seconds = 120
    lockout_failures: Annotated[StrictInt, Field(ge=1)] = 10
    lockout_window: Seconds = 60
    lockout_seconds: Seconds = 300


class Media(_Model):
    rtp_ports: PortRangeField = PortRange(first=20000, last=29999)
    rtp_timeout: Seconds = 60
    anchor: StrictBool = True  # False: bridged calls' RTP flows between the phones directly
    backend: Literal["builtin", "rtpengine"] = "builtin"
    rtpengine: HostPortField = HostPort(host="127.0.0.1", port=2223)  # Debian's listen-ng
    voicemail_max_seconds: Seconds = 180


class Trunk(_Model):
    name: NonEmptyStr
    address: HostPortField
    inbound_from: tuple[Network, ...] = ()
    did: dict[Annotated[str, AfterValidator(_phone_number)], Extension] = Field(
        default_factory=dict
    )


class Music(_Model):
    name: NonEmptyStr
    files: Annotated[tuple[ConfigPath, ...], Field(min_length=1)]


class Announcement(_Model):
    name: NonEmptyStr
    file: ConfigPath


class SystemExtension(_Model):
    extension: Extension
    name: NonEmptyStr
    kind: Literal["ring_group"] = "ring_group"
    members: Annotated[tuple[Extension, ...], Field(min_length=1)]


class Device(_Model):
    type: Literal["sip", "softphone", "teams", "other"]
    label: StrictStr
    username: Extension | None = None  # registers as this name instead of the extension
    contact: Annotated[StrictStr, Field(pattern=r"^sips?:\S+$")] | None = None  # static


class OfficeHours(_Model):
    start: TimeOfDay
    end: TimeOfDayEnd
    days: Annotated[tuple[str, ...], PlainValidator(_days)]
    months: Annotated[Literal["all"] | tuple[int, ...], PlainValidator(_months)] = "all"


class ExceptionalPeriod(_Model):
    name: NonEmptyStr
    dates: Annotated[
        tuple[Annotated[StrictStr, AfterValidator(_date_spec)], ...], Field(min_length=1)
    ]
    start: TimeOfDay | None = None
    end: TimeOfDayEnd | None = None
    destination: DestinationConfig

    @property
    def date_specs(self) -> tuple[DateSpec, ...]:
        return tuple(parse_date_spec(d) for d in self.dates)


class CallerException(_Model):
    callers: Annotated[StrictStr, AfterValidator(_callers)]
    destination: DestinationConfig


class Schedule(_Model):
    enabled: StrictBool = True
    closed: DestinationConfig = Field(default_factory=_voicemail)
    hours: tuple[OfficeHours, ...] = ()
    exceptional: tuple[ExceptionalPeriod, ...] = ()


class User(_Model):
    extension: Extension
    name: NonEmptyStr
    secret: NonEmptyStr
    mobile: PhoneNumber | None = None
    timezone: TimeZoneName | None = None  # filled with server.timezone after loading
    language: Literal["fr", "en"] | None = None  # filled with server.language after loading
    hold_music: NonEmptyStr = "default"
    ring_timeout: Annotated[StrictInt, Field(ge=1, le=600)] = 20
    no_answer: DestinationConfig = Field(default_factory=_voicemail)
    decline: Literal["all", "device"] = "all"
    forward: DestinationConfig | None = None
    devices: tuple[Device, ...] = ()
    schedule: Schedule | None = None
    exceptions: tuple[CallerException, ...] = ()

    @property
    def tz(self) -> str:
        """The user's time zone name (always set on a loaded configuration)."""
        return self.timezone or "UTC"


class Config(_Model):
    """The whole validated configuration. Relative paths are resolved against the file's folder."""

    server: Server
    registrar: Registrar = Field(default_factory=Registrar)
    media: Media = Field(default_factory=Media)
    trunks: tuple[Trunk, ...] = ()
    music: tuple[Music, ...] = ()
    announcements: tuple[Announcement, ...] = ()
    system_extensions: tuple[SystemExtension, ...] = ()
    users: tuple[User, ...] = ()

    _source: str = PrivateAttr(default="<config>")
    _lines: Mapping[KeyPath, int] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> str:
        """The file this configuration was read from, as given to `load_config`."""
        return self._source

    def line_of(self, path: Sequence[PathPart]) -> int:
        """Line of a field path in the source file (closest enclosing table when absent)."""
        return _line_for(self._lines, tuple(path))

    def issue(self, path: Sequence[PathPart], reason: str) -> ConfigIssue:
        """A `ConfigIssue` about `path` in this configuration's file."""
        return ConfigIssue(self._source, self.line_of(path), format_path(path), reason)

    def user(self, extension: str) -> User | None:
        for user in self.users:
            if user.extension == extension:
                return user
        return None

    def system_extension(self, extension: str) -> SystemExtension | None:
        for ext in self.system_extensions:
            if ext.extension == extension:
                return ext
        return None


# All field names, for "did you mean" suggestions on unknown keys.
_FIELD_NAMES: frozenset[str] = frozenset(
    name
    for model in (
        Server,
        Registrar,
        Media,
        Trunk,
        Music,
        Announcement,
        SystemExtension,
        Device,
        OfficeHours,
        ExceptionalPeriod,
        CallerException,
        Schedule,
        User,
        Config,
        VoicemailDestination,
        ExtensionDestination,
        ExternalDestination,
        AnnouncementDestination,
        MobileDestination,
        SystemDestination,
    )
    for name in model.model_fields
)


# --------------------------------------------------------------------------------------------
# Loading


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
    return _build(raw, _Locator(text).lines, file, base_dir)


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
        issues.append(ConfigIssue(file, _line_for(lines, path), format_path(path), reason))

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
    for path, reason in _cross_check(raw, lines):
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
        close = difflib.get_close_matches(key, _FIELD_NAMES, n=1)
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


def _line_for(lines: Mapping[KeyPath, int], path: KeyPath) -> int:
    for n in range(len(path), 0, -1):
        line = lines.get(path[:n])
        if line is not None:
            return line
    return 1


# --------------------------------------------------------------------------------------------
# Cross-reference checks on the raw document


def _tables(raw: Mapping[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = raw.get(key)
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield i, item


def _str(table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    return value if isinstance(value, str) else None


def _cross_check(raw: Mapping[str, Any], lines: Mapping[KeyPath, int]) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    users = {u: i for i, t in _tables(raw, "users") if (u := _str(t, "extension")) is not None}
    systems = {
        s: i
        for i, t in _tables(raw, "system_extensions")
        if (s := _str(t, "extension")) is not None
    }
    music = {n for _, t in _tables(raw, "music") if (n := _str(t, "name")) is not None}
    prompts = {n for _, t in _tables(raw, "announcements") if (n := _str(t, "name")) is not None}

    # Unique extensions; the later one in the file is reported.
    entries = sorted(
        (_line_for(lines, (section, i)), section, i, ext)
        for section in ("users", "system_extensions")
        for i, t in _tables(raw, section)
        if (ext := _str(t, "extension")) is not None
    )
    seen: dict[str, str] = {}
    for _, section, i, ext in entries:
        if ext in seen:
            out.append(
                ((section, i, "extension"), f"extension {ext!r} is already used by {seen[ext]}")
            )
        else:
            seen[ext] = f"{section}[{i}]"
    for section in ("trunks", "music", "announcements"):
        names: set[str] = set()
        for i, t in _tables(raw, section):
            name = _str(t, "name")
            if name is None:
                continue
            if name in names:
                out.append(((section, i, "name"), f"duplicate {section} name {name!r}"))
            names.add(name)
            if section == "music" and name in SHIPPED_MUSIC:
                out.append(
                    (
                        (section, i, "name"),
                        f"{name!r} is the shipped music class; choose another name",
                    )
                )

    # Server.
    server = raw.get("server")
    if isinstance(server, dict):
        listen = server.get("listen")
        if isinstance(listen, list) and any(
            isinstance(s, str) and s.startswith("tls:") for s in listen
        ):
            for key in ("tls_cert", "tls_key"):
                if key not in server:
                    out.append((("server", key), "required by the tls listener"))
        algos = server.get("auth_algorithms")
        if isinstance(algos, list) and len(set(map(str, algos))) != len(algos):
            out.append((("server", "auth_algorithms"), "an algorithm is listed twice"))

    # Registrar timers.
    reg = raw.get("registrar")
    if isinstance(reg, dict):
        lo, default, hi = (
            reg.get(k, d)
            for k, d in (("min_expires", 60), ("default_expires", 3600), ("max_expires", 3600))
        )
        if all(isinstance(v, int) for v in (lo, default, hi)):
            if lo > hi:
                out.append(
                    (
                        ("registrar", "min_expires"),
                        f"min_expires ({lo}) is above max_expires ({hi})",
                    )
                )
            elif not lo <= default <= hi:
                out.append(
                    (
                        ("registrar", "default_expires"),
                        f"default_expires ({default}) is not within min_expires..max_expires ({lo}..{hi})",
                    )
                )

    # System extensions: members are users.
    for i, t in _tables(raw, "system_extensions"):
        members = t.get("members")
        if isinstance(members, list):
            for j, member in enumerate(members):
                if isinstance(member, str) and member not in users:
                    out.append(
                        (
                            ("system_extensions", i, "members", j),
                            f"member {member!r} is not a user extension",
                        )
                    )
                elif members.index(member) != j:
                    out.append(
                        (
                            ("system_extensions", i, "members", j),
                            f"member {member!r} is listed twice",
                        )
                    )

    # Trunks: DIDs lead to an extension.
    for i, t in _tables(raw, "trunks"):
        did = t.get("did")
        if isinstance(did, dict):
            for number, target in did.items():
                if isinstance(target, str) and target not in users and target not in systems:
                    out.append(
                        (
                            ("trunks", i, "did", number),
                            f"extension {target!r} is neither a user nor a system extension",
                        )
                    )

    # Device usernames.
    usernames: dict[str, str] = {}
    for i, t in _tables(raw, "users"):
        for j, d in _tables(t, "devices"):
            name = _str(d, "username")
            if name is None:
                continue
            path = ("users", i, "devices", j, "username")
            if name in usernames:
                out.append((path, f"username {name!r} is already used by {usernames[name]}"))
            elif (name in users and users[name] != i) or name in systems:
                out.append((path, f"username {name!r} is another extension"))
            usernames.setdefault(name, format_path(path[:-1]))

    # Users.
    for i, t in _tables(raw, "users"):
        base: KeyPath = ("users", i)
        ext = _str(t, "extension")
        music_name = _str(t, "hold_music")
        if music_name is not None and music_name not in SHIPPED_MUSIC and music_name not in music:
            known = ", ".join(sorted(SHIPPED_MUSIC | music))
            out.append(
                ((*base, "hold_music"), f"unknown music class {music_name!r} (known: {known})")
            )
        exceptions = t.get("exceptions")
        if isinstance(exceptions, list) and len(exceptions) > MAX_EXCEPTIONS:
            out.append(
                (
                    (*base, "exceptions", MAX_EXCEPTIONS),
                    f"at most {MAX_EXCEPTIONS} caller-ID exceptions per user (this is number {MAX_EXCEPTIONS + 1})",
                )
            )

        dest = _DestinationChecker(out, ext, "mobile" in t, users, systems, prompts).check
        dest((*base, "no_answer"), t.get("no_answer"), where="no_answer")
        dest((*base, "forward"), t.get("forward"), where="forward")
        for j, e in _tables(t, "exceptions"):
            dest((*base, "exceptions", j, "destination"), e.get("destination"), where="exception")
        schedule = t.get("schedule")
        if isinstance(schedule, dict):
            sbase = (*base, "schedule")
            dest((*sbase, "closed"), schedule.get("closed"), where="closed")
            for j, h in _tables(schedule, "hours"):
                start, end = _str(h, "start"), _str(h, "end")
                if start is not None and end is not None and start == end:
                    out.append(
                        (
                            (*sbase, "hours", j, "end"),
                            "start and end are equal (use 00:00 and 24:00 for a whole day)",
                        )
                    )
            for j, p in _tables(schedule, "exceptional"):
                pbase = (*sbase, "exceptional", j)
                dest((*pbase, "destination"), p.get("destination"), where="exceptional")
                has_start, has_end = "start" in p, "end" in p
                if has_start != has_end:
                    missing = "end" if has_start else "start"
                    out.append(
                        (
                            (*pbase, missing),
                            "a daily window needs both start and end (omit both for whole days)",
                        )
                    )
                elif has_start and p.get("start") == p.get("end"):
                    out.append(
                        ((*pbase, "end"), "start and end are equal (omit both for whole days)")
                    )
    return out


@dataclass(slots=True)
class _DestinationChecker:
    """Cross-reference checks of one user's destinations; appends to `out`."""

    out: list[tuple[KeyPath, str]]
    own: str | None
    has_mobile: bool
    users: Mapping[str, int]
    systems: Mapping[str, int]
    prompts: set[str]

    def check(self, path: KeyPath, value: Any, *, where: str) -> None:
        if not isinstance(value, dict):
            return
        kind = value.get("kind")
        target = _str(value, "extension")
        out = self.out
        if kind == "devices" and where == "no_answer":
            out.append(((*path, "kind"), "no_answer cannot ring the same devices again"))
        elif kind == "mobile" and not self.has_mobile:
            out.append(
                ((*path, "kind"), "destination 'mobile' needs the user's mobile number (not set)")
            )
        elif kind == "voicemail" and target is not None and target not in self.users:
            out.append(
                ((*path, "extension"), f"no user with extension {target!r} (voicemail is a user's)")
            )
        elif kind == "extension" and target is not None:
            if target in self.systems:
                out.append(
                    ((*path, "extension"), f'{target!r} is a system extension: use kind = "system"')
                )
            elif target not in self.users:
                out.append(((*path, "extension"), f"unknown colleague extension {target!r}"))
            elif target == self.own and value.get("voicemail") is not True:
                out.append(
                    (
                        (*path, "extension"),
                        "the user's own extension (use 'devices' or 'voicemail')",
                    )
                )
        elif kind == "system" and target is not None and target not in self.systems:
            hint = ' (it is a user: use kind = "extension")' if target in self.users else ""
            out.append(((*path, "extension"), f"unknown system extension {target!r}{hint}"))
        elif kind == "announcement":
            message = _str(value, "message")
            if message is not None and message not in SHIPPED_PROMPTS | self.prompts:
                known = ", ".join(sorted(SHIPPED_PROMPTS | self.prompts))
                out.append(
                    ((*path, "message"), f"unknown announcement {message!r} (known: {known})")
                )


# --------------------------------------------------------------------------------------------
# Line locator


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")


class _Locator:
    """Maps key paths to line numbers by scanning TOML text that tomllib already accepted."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[KeyPath, int] = {}
        self.array_tables: dict[KeyPath, int] = {}
        try:
            self._document()
        except (IndexError, ValueError, tomllib.TOMLDecodeError):
            pass  # best effort: whatever was recorded so far still helps

    def _line(self) -> int:
        return bisect_left(self.newlines, self.pos) + 1

    def _mark(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)

    def _skip(self, newlines: bool) -> None:
        text = self.text
        n = len(text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self.pos += 1
            elif c == "#" and newlines:
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                break

    def _document(self) -> None:
        table: KeyPath = ()
        text = self.text
        while True:
            self._skip(newlines=True)
            if self.pos >= len(text):
                return
            line = self._line()
            if text[self.pos] == "[":
                array = text.startswith("[[", self.pos)
                self.pos += 2 if array else 1
                keys = self._key()
                self._skip(newlines=False)
                self.pos += 2 if array else 1
                table = self._resolve(keys, array)
                self._mark(table, line)
            else:
                keys = self._key()
                self._skip(newlines=False)
                self.pos += 1  # '='
                self._skip(newlines=False)
                for n in range(1, len(keys) + 1):
                    self._mark(table + keys[:n], line)
                self._value(table + keys)
            # rest of the line (comment)
            self._skip(newlines=False)
            if self.pos < len(text) and text[self.pos] == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end

    def _resolve(self, keys: KeyPath, array: bool) -> KeyPath:
        resolved: KeyPath = ()
        for i, key in enumerate(keys):
            resolved += (key,)
            if array and i == len(keys) - 1:
                count = self.array_tables.get(resolved, 0)
                self.array_tables[resolved] = count + 1
                resolved += (count,)
            elif resolved in self.array_tables:
                resolved += (self.array_tables[resolved] - 1,)
        return resolved

    def _key(self) -> KeyPath:
        parts: list[str] = []
        text = self.text
        while True:
            self._skip(newlines=False)
            c = text[self.pos]
            if c in "\"'":
                start = self.pos
                self._string()
                parts.append(tomllib.loads("k = " + text[start : self.pos])["k"])
            else:
                m = _BARE_KEY.match(text, self.pos)
                if m is None:
                    raise ValueError("key expected")
                parts.append(m.group())
                self.pos = m.end()
            self._skip(newlines=False)
            if self.pos < len(text) and text[self.pos] == ".":
                self.pos += 1
                continue
            return tuple(parts)

    def _value(self, path: KeyPath) -> None:
        text = self.text
        c = text[self.pos]
        if c == "{":
            self.pos += 1
            while True:
                self._skip(newlines=True)
                if text[self.pos] == "}":
                    self.pos += 1
                    return
                if text[self.pos] == ",":
                    self.pos += 1
                    continue
                line = self._line()
                keys = self._key()
                self._skip(newlines=False)
                self.pos += 1  # '='
                self._skip(newlines=False)
                for n in range(1, len(keys) + 1):
                    self._mark(path + keys[:n], line)
                self._value(path + keys)
        elif c == "[":
            self.pos += 1
            index = 0
            while True:
                self._skip(newlines=True)
                if text[self.pos] == "]":
                    self.pos += 1
                    return
                if text[self.pos] == ",":
                    self.pos += 1
                    continue
                self._mark((*path, index), self._line())
                self._value((*path, index))
                index += 1
        elif c in "\"'":
            self._string()
        else:
            m = _SCALAR.match(text, self.pos)
            assert m is not None
            self.pos = m.end()

    def _string(self) -> None:
        text = self.text
        for quote in ('"""', "'''"):
            if text.startswith(quote, self.pos):
                i = self.pos + 3
                while True:
                    if quote == '"""' and text[i] == "\\":
                        i += 2
                        continue
                    if text.startswith(quote, i):
                        i += 3
                        while i < len(text) and text[i] == quote[0]:
                            i += 1  # up to two quotes may end the content
                        self.pos = i
                        return
                    i += 1
        quote = text[self.pos]
        i = self.pos + 1
        while text[i] != quote:
            i += 2 if (quote == '"' and text[i] == "\\") else 1
        self.pos = i + 1
