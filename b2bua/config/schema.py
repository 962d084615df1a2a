"""The configuration's models, section by section (CONTRACT.md's TOML shape): frozen pydantic
models with unknown keys refused, and `Config`, the whole validated file."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from b2bua.config.fields import (
    Callers,
    ConfigModel,
    ConfigPath,
    DateSpecText,
    DialledNumber,
    Extension,
    HostPort,
    HostPortField,
    ListenField,
    ListenSpec,
    Months,
    Network,
    NonEmptyStr,
    PhoneNumber,
    PortRange,
    PortRangeField,
    TimeOfDay,
    TimeOfDayEnd,
    TimeZoneName,
    Weekdays,
)
from b2bua.config.issues import ConfigIssue, KeyPath, PathPart, format_path
from b2bua.config.locator import line_for
from b2bua.config.messages import Problem, render
from b2bua.config.timespec import DateSpec, parse_date_spec

# Prompt names an `announcement` destination may use without declaring them in [[announcements]].
# The media layer ships these recordings.
SHIPPED_PROMPTS: set[str] = {"absence", "closed", "unavailable", "locate", "voicemail_greeting"}
# Hold-music classes that always exist.
SHIPPED_MUSIC: frozenset[str] = frozenset({"default"})

MAX_EXCEPTIONS = 15
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


# --------------------------------------------------------------------------------------------
# Destinations


class _Destination(ConfigModel):
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


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


FeatureCode = Annotated[StrictStr, Field(pattern=r"^[*#][*#0-9]{0,5}$")]


def _allocator_installed(value: str) -> str:
    from b2bua.allocator import mimalloc_library

    if value == "mimalloc" and mimalloc_library() is None:
        raise ValueError(
            "mimalloc is not installed (Debian: libmimalloc3, or libmimalloc2.0 on Debian 12)")
    return value


class Server(ConfigModel):
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
    # Verifies the TLS peers we connect to (gateways, trunks); "" or absent: the system store.
    tls_ca: Annotated[ConfigPath | None, BeforeValidator(_empty_is_none)] = None
    language: Literal["fr", "en"] = "fr"
    # Memory allocator of `b2bua run` (b2bua.allocator): mimalloc gives a flood's memory back
    # for more CPU per call.
    allocator: Annotated[
        Literal["python", "mimalloc"], AfterValidator(_allocator_installed)
    ] = "python"
    # Worker processes sharing the SIP addresses, one event loop each (docs/workers.md).
    workers: Annotated[StrictInt, Field(ge=1, le=16)] = 1
    # Feature codes a device dials: **1001 takes a call ringing on 1001; *8 one ringing on a
    # member of a ring group of the caller's.
    pickup_prefix: FeatureCode = "**"
    group_pickup: FeatureCode = "*8"
    # RFC 4028 session timers on every leg: the interval we ask for (0: none) and our Min-SE.
    session_expires: Annotated[StrictInt, Field(ge=0, le=86400)] = 1800
    min_se: Annotated[StrictInt, Field(ge=90, le=86400)] = 90


Seconds = Annotated[StrictInt, Field(ge=1, le=86400 * 7)]


class Registrar(ConfigModel):
    min_expires: Seconds = 60
    max_expires: Seconds = 3600
    default_expires: Seconds = 3600
    nonce_ttl: Seconds = 300
    keepalive_interval: Annotated[StrictInt, Field(ge=0, le=3600)] = 30  # 0: no OPTIONS pings
    unreachable_grace: Seconds = 120
    lockout_failures: Annotated[StrictInt, Field(ge=1)] = 10
    lockout_window: Seconds = 60
    lockout_seconds: Seconds = 300


class Overload(ConfigModel):
    """Overload protection (docs/overload.md): request rates per source address, new calls
    refused while the event loop is too busy, caps on the transactions kept."""

    source_rate: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 500  # requests/s per address
    block_seconds: Seconds = 10
    action: Literal["drop", "reject"] = "drop"  # what a blocked source's requests get
    trusted: tuple[Network, ...] = ()  # never limited (trunks' inbound_from are added)
    loop_busy_percent: Annotated[StrictInt, Field(ge=10, le=100)] = 90
    loop_lag_ms: Annotated[StrictInt, Field(ge=10, le=60_000)] = 100
    retry_after: Seconds = 5
    max_waiting_transactions: Annotated[StrictInt, Field(ge=100, le=10_000_000)] = 4_096
    max_waiting_client_transactions: Annotated[StrictInt, Field(ge=100, le=10_000_000)] = 2_048
    max_transactions: Annotated[StrictInt, Field(ge=100, le=10_000_000)] = 65_536


class Media(ConfigModel):
    rtp_ports: PortRangeField = PortRange(first=20000, last=29999)
    rtp_timeout: Seconds = 60
    anchor: StrictBool = True  # False: bridged calls' RTP flows between the phones directly
    backend: Literal["builtin", "rtpengine"] = "builtin"
    rtpengine: HostPortField = HostPort(host="127.0.0.1", port=2223)  # Debian's listen-ng
    voicemail_max_seconds: Seconds = 180


def _push_url(field: str) -> Any:
    def check(value: str) -> str:
        from b2bua.push.credentials import check_url
        from b2bua.push.model import PushConfigError

        try:
            return check_url(field, value)
        except PushConfigError as exc:
            raise ValueError(exc.reason) from None

    return AfterValidator(check)


def _apns_key(value: Path) -> Path:
    from b2bua.push.credentials import load_apns_key
    from b2bua.push.model import PushConfigError

    try:
        load_apns_key(value)
    except PushConfigError as exc:
        raise ValueError(exc.reason) from None
    return value


def _service_account(value: Path) -> Path:
    from b2bua.push.credentials import ServiceAccount
    from b2bua.push.model import PushConfigError

    try:
        ServiceAccount.load(value)
    except PushConfigError as exc:
        raise ValueError(exc.reason) from None
    return value


def _ca_file(value: Path) -> Path:
    import ssl

    try:
        ssl.create_default_context(cafile=str(value))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{value}: {getattr(exc, 'strerror', None) or exc}") from None
    return value


def _apple_id(value: str) -> str:
    if len(value) != 10 or not value.isascii() or not value.isalnum() or value != value.upper():
        raise Problem("invalid_apple_id", value=value)
    return value


AppleId = Annotated[StrictStr, AfterValidator(_apple_id)]


class PushApns(ConfigModel):
    """`[push.apns]`: token-based authentication with Apple (docs/push.md)."""

    key_file: Annotated[ConfigPath, AfterValidator(_apns_key)]
    key_id: AppleId
    team_id: AppleId
    url: Annotated[StrictStr, _push_url("push.apns.url")] = "https://api.push.apple.com"
    ca_file: Annotated[ConfigPath, AfterValidator(_ca_file)] | None = None


class PushFcm(ConfigModel):
    """`[push.fcm]`: Firebase Cloud Messaging HTTP v1 with a service-account key."""

    service_account: Annotated[ConfigPath, AfterValidator(_service_account)]
    url: Annotated[StrictStr, _push_url("push.fcm.url")] = "https://fcm.googleapis.com"
    ca_file: Annotated[ConfigPath, AfterValidator(_ca_file)] | None = None


class Push(ConfigModel):
    """`[push]`: wake sleeping softphones (RFC 8599); no provider section, no push."""

    wait: Annotated[StrictInt | StrictFloat, Field(ge=1, le=120)] = 10
    apns: PushApns | None = None
    fcm: PushFcm | None = None


def _store_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("postgresql", "postgres") or not rest:
        raise Problem("invalid_store_url", value=value)
    return value


class Store(ConfigModel):
    """`[store]`: where settings, bindings and call records live (docs/cluster.md). Without
    `url`, SQLite in `data_dir`; with a PostgreSQL URL, shared by every node."""

    url: Annotated[StrictStr, AfterValidator(_store_url)] | None = None
    # This node's name in the cluster (its dialog journal and liveness): unique per node,
    # stable across restarts. Default: the host name and the first SIP port.
    node: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None


Transport = Literal["udp", "tcp", "tls"]
MediaEncryption = Literal["sdes", "optional", "none"]


def _dial_prefix(value: str) -> str:
    if not re.fullmatch(r"\+?[0-9*#]*", value):
        raise Problem("invalid_dial_prefix", value=value)
    return value


DialPrefix = Annotated[StrictStr, AfterValidator(_dial_prefix)]


class Trunk(ConfigModel):
    name: NonEmptyStr
    address: HostPortField
    inbound_from: tuple[Network, ...] = ()
    did: dict[DialledNumber, Extension] = Field(default_factory=dict)
    # Carriers and gateways (docs/trunks.md).
    transport: Transport = "udp"
    username: NonEmptyStr | None = None  # digest credentials: REGISTER and 401/407
    password: StrictStr | None = None
    # `register` in the file; the attribute has another name because pydantic models have a
    # class method of that name.
    register_: StrictBool = Field(default=False, alias="register")
    register_expires: Annotated[StrictInt, Field(ge=10, le=86400)] = 600
    lines: Annotated[StrictInt, Field(ge=0, le=100000)] = 0  # 0 = unlimited
    caller_id: PhoneNumber | None = None
    prefixes: tuple[DialPrefix, ...] = ()  # () takes every outbound number
    options_ping: Annotated[StrictInt, Field(ge=0, le=3600)] = 0  # seconds; 0 disables
    number_format: Literal["national", "e164"] = "e164"
    media_encryption: MediaEncryption = "optional"


class Music(ConfigModel):
    name: NonEmptyStr
    files: Annotated[tuple[ConfigPath, ...], Field(min_length=1)]


class Announcement(ConfigModel):
    name: NonEmptyStr
    file: ConfigPath


class SystemExtension(ConfigModel):
    extension: Extension
    name: NonEmptyStr
    kind: Literal["ring_group"] = "ring_group"
    members: Annotated[tuple[Extension, ...], Field(min_length=1)]


class Device(ConfigModel):
    type: Literal["sip", "softphone", "teams", "other"]
    label: StrictStr
    username: Extension | None = None  # registers as this name instead of the extension
    contact: Annotated[StrictStr, Field(pattern=r"^sips?:\S+$")] | None = None  # static
    transport: Transport = "udp"  # of a static contact (a registered device uses its own)
    media_encryption: MediaEncryption = "optional"


class OfficeHours(ConfigModel):
    start: TimeOfDay
    end: TimeOfDayEnd
    days: Weekdays
    months: Months = "all"


class ExceptionalPeriod(ConfigModel):
    name: NonEmptyStr
    dates: Annotated[tuple[DateSpecText, ...], Field(min_length=1)]
    start: TimeOfDay | None = None
    end: TimeOfDayEnd | None = None
    destination: DestinationConfig

    @property
    def date_specs(self) -> tuple[DateSpec, ...]:
        return tuple(parse_date_spec(d) for d in self.dates)


class CallerException(ConfigModel):
    callers: Callers
    destination: DestinationConfig


class Schedule(ConfigModel):
    enabled: StrictBool = True
    closed: DestinationConfig = Field(default_factory=_voicemail)
    hours: tuple[OfficeHours, ...] = ()
    exceptional: tuple[ExceptionalPeriod, ...] = ()


class Limits(ConfigModel):
    """A tenant's limits (0: none): users configured, devices registered at once (bindings),
    calls in progress at once."""

    users: Annotated[StrictInt, Field(ge=0, le=10_000_000)] = 0
    devices: Annotated[StrictInt, Field(ge=0, le=10_000_000)] = 0
    calls: Annotated[StrictInt, Field(ge=0, le=10_000_000)] = 0


_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _tenant_domain(value: str) -> str:
    if not _DOMAIN_RE.match(value) or value.replace(".", "").isdigit():
        raise Problem("invalid_domain", value=value)
    return value.lower()


TenantDomain = Annotated[StrictStr, AfterValidator(_tenant_domain)]


class User(ConfigModel):
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


class TenantSection(ConfigModel):
    """`[[tenants]]`: a company of a provider, with its own SIP domain (its devices register as
    `EXT@domain`, its digest realm), limits, and, scoped to it, the same sections as the top
    level (docs/tenants.md). The top level of the file is a tenant too: the one whose domain
    is `[server] domain`."""

    domain: TenantDomain
    name: NonEmptyStr
    limits: Limits = Field(default_factory=Limits)
    trunks: tuple[Trunk, ...] = ()
    music: tuple[Music, ...] = ()
    announcements: tuple[Announcement, ...] = ()
    system_extensions: tuple[SystemExtension, ...] = ()
    users: tuple[User, ...] = ()


# The sections a tenant has of its own (the rest of the file is the provider's, shared).
TENANT_SECTIONS: tuple[str, ...] = (
    "trunks", "music", "announcements", "system_extensions", "users",
)


class Config(ConfigModel):
    """The whole validated configuration. Relative paths are resolved against the file's folder."""

    server: Server
    registrar: Registrar = Field(default_factory=Registrar)
    overload: Overload = Field(default_factory=Overload)
    media: Media = Field(default_factory=Media)
    push: Push = Field(default_factory=Push)
    store: Store = Field(default_factory=Store)
    trunks: tuple[Trunk, ...] = ()
    music: tuple[Music, ...] = ()
    announcements: tuple[Announcement, ...] = ()
    system_extensions: tuple[SystemExtension, ...] = ()
    users: tuple[User, ...] = ()
    tenants: tuple[TenantSection, ...] = ()

    _source: str = PrivateAttr(default="<config>")
    _lines: Mapping[KeyPath, int] = PrivateAttr(default_factory=dict)
    # Where this configuration's sections are in the file: () for the file itself and its
    # top-level tenant, ("tenants", i) for the view of tenant i (`tenant_view`).
    _prefix: KeyPath = PrivateAttr(default=())

    @property
    def source(self) -> str:
        """The file this configuration was read from, as given to `load_config`."""
        return self._source

    @property
    def prefix(self) -> KeyPath:
        """Where this configuration's sections are in the file (`tenant_view`)."""
        return self._prefix

    def line_of(self, path: Sequence[PathPart]) -> int:
        """Line of a field path in the source file (closest enclosing table when absent)."""
        return line_for(self._lines, self._in_file(path))

    def _in_file(self, path: Sequence[PathPart]) -> KeyPath:
        if self._prefix and path and path[0] in TENANT_SECTIONS:
            return (*self._prefix, *path)
        return tuple(path)

    def _field(self, path: Sequence[PathPart]) -> str:
        return format_path(self._in_file(path))

    def problem(self, path: Sequence[PathPart], code: str, **params: Any) -> ConfigIssue:
        """A `ConfigIssue` about `path` with a code of b2bua.config.messages (`path` from this
        configuration's root; `field` names it as in the file)."""
        return ConfigIssue(
            self._source, self.line_of(path), self._field(path), render(code, params, "en"),
            code, params, tuple(path),
        )  # fmt: skip

    def issue(self, path: Sequence[PathPart], reason: str) -> ConfigIssue:
        """A `ConfigIssue` about `path` in this configuration's file."""
        return ConfigIssue(
            self._source, self.line_of(path), self._field(path), reason, path=tuple(path)
        )

    def tenant_view(self, section: TenantSection | None = None, index: int | None = None
                    ) -> Config:
        """The configuration one tenant runs with: the provider's sections (server, registrar,
        media...) with `server.domain` the tenant's, and the tenant's own users, trunks,
        system extensions, music and announcements at the top level, where every per-company
        part (the call directory, the rule compiler, the settings store, the dashboard) reads
        them. Without `section`: the top-level tenant (the file without its `[[tenants]]`).
        `index`: the section's place in `tenants` (issues then name `tenants[i]...`)."""
        if section is None:
            view = self.model_copy(update={"tenants": ()}) if self.tenants else self
            return view
        server = self.server.model_copy(update={"domain": section.domain})
        view = self.model_copy(update={
            "server": server, "trunks": section.trunks, "music": section.music,
            "announcements": section.announcements,
            "system_extensions": section.system_extensions, "users": section.users,
            "tenants": (),
        })  # fmt: skip
        view._prefix = ("tenants", index) if index is not None else ()
        return view

    def tenant_section(self, domain: str) -> tuple[int, TenantSection] | None:
        """The `[[tenants]]` entry of `domain` (case-insensitive) and its index."""
        wanted = domain.lower()
        for i, section in enumerate(self.tenants):
            if section.domain == wanted:
                return i, section
        return None

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
FIELD_NAMES: frozenset[str] = frozenset(
    name
    for model in (
        Server,
        Registrar,
        Media,
        Push,
        PushApns,
        PushFcm,
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
        Limits,
        TenantSection,
    )
    for name in model.model_fields
)
