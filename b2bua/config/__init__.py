"""Configuration: the TOML file of CONTRACT.md, validated into a frozen `Config`.

Theory of operation
-------------------
`load_config(path)` runs three passes and reports every problem it finds at once:

1. `tomllib` parses the text. A syntax error becomes one issue at the line tomllib names.
2. pydantic validates shapes and single values (extra keys are forbidden, so a typo such as
   `ring_timout` is reported instead of silently ignored). Scalars are strict: TOML already has
   types, and `ring_timeout = "20"` is more likely a mistake than an intent.
3. `cross_check` walks the raw document for what one field cannot tell on its own: an unknown
   colleague, a `mobile` destination for a user without a mobile number, duplicate extensions,
   a 16th caller-ID exception...

Neither tomllib nor pydantic knows line numbers, so `Locator` scans the text once and records
the line of every key path; a missing field falls back to its closest enclosing table.

Every issue is a `ConfigIssue(file, line, field, reason)`; `str(ConfigError)` is one
`FILE:LINE: field: reason` line per issue, sorted by line.

The modules, by concept:

- `schema`: the models, section by section, and `Config`;
- `fields`: the field types (extensions, numbers, caller patterns, addresses, paths...);
- `timespec`: `HH:MM` times, weekdays and the date specs of exceptional periods;
- `locator`: line numbers of key paths in the TOML text;
- `checks`: cross-reference checks on the raw document;
- `issues`: `ConfigIssue`, `ConfigError` and field paths;
- `loader`: `load_config`, `config_from_text`, `config_from_dict`.
"""

from b2bua.config.fields import HostPort, ListenSpec, PortRange
from b2bua.config.issues import ConfigError, ConfigIssue, KeyPath, PathPart, format_path
from b2bua.config.loader import config_from_dict, config_from_text, load_config
from b2bua.config.schema import (
    DESTINATION_KINDS,
    MAX_EXCEPTIONS,
    SHIPPED_MUSIC,
    SHIPPED_PROMPTS,
    Announcement,
    CallerException,
    Config,
    DestinationConfig,
    Device,
    ExceptionalPeriod,
    Limits,
    Media,
    Music,
    OfficeHours,
    Overload,
    Registrar,
    Schedule,
    Server,
    SystemExtension,
    TenantSection,
    Trunk,
    User,
)
from b2bua.config.timespec import (
    WEEKDAYS,
    DateSpec,
    french_dates,
    parse_date_spec,
    parse_day,
    parse_hhmm,
    parse_instant,
)

__all__ = [
    "DESTINATION_KINDS",
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
    "KeyPath",
    "Limits",
    "ListenSpec",
    "Media",
    "Music",
    "OfficeHours",
    "Overload",
    "PathPart",
    "PortRange",
    "Registrar",
    "Schedule",
    "Server",
    "SystemExtension",
    "TenantSection",
    "Trunk",
    "User",
    "config_from_dict",
    "config_from_text",
    "format_path",
    "french_dates",
    "load_config",
    "parse_date_spec",
    "parse_day",
    "parse_hhmm",
    "parse_instant",
]
