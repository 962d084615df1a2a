"""Configuration loading: values, defaults, and errors at the right file, line and field."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from b2bua.config import (
    SHIPPED_PROMPTS,
    ConfigError,
    ConfigIssue,
    HostPort,
    ListenSpec,
    config_from_text,
    load_config,
    parse_date_spec,
    parse_hhmm,
)

ROOT = Path(__file__).resolve().parents[2]

SERVER = """\
[server]
domain = "pbx.test"
"""


def issues(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        config_from_text(text, file="t.toml")
    return [(i.line, i.field, i.reason) for i in info.value.issues]


def one_issue(text: str) -> tuple[int, str, str]:
    found = issues(text)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------------------------
# The shipped configuration


def test_default_config_loads() -> None:
    config = load_config(ROOT / "conf" / "default.toml")
    assert config.server.domain == "pbx.local"
    assert config.server.listen == (
        ListenSpec(transport="udp", host="127.0.0.1", port=5060),
        ListenSpec(transport="tcp", host="127.0.0.1", port=5060),
    )
    assert config.server.http == HostPort(host="127.0.0.1", port=8080)
    assert config.server.data_dir == (ROOT / "var").resolve()
    assert config.server.auth_algorithms == ("SHA-256", "MD5")
    assert [u.extension for u in config.users] == ["1001", "1002", "1003"]
    alice = config.users[0]
    assert alice.timezone == "Europe/Paris"  # filled from server.timezone
    assert alice.language == "fr"
    assert alice.devices[0].type == "sip"
    assert alice.schedule is not None and len(alice.schedule.hours) == 3
    assert config.user("1003") is not None and config.user("9999") is None
    assert config.system_extension("800") is not None
    assert config.trunks[0].inbound_from == (ipaddress.ip_network("127.0.0.1/32"),)
    assert config.trunks[0].did["0442930699"] == "800"


def test_contract_example_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "pbx.toml").write_text(example, encoding="utf-8")
    config = load_config(tmp_path / "pbx.toml")
    alice = config.users[0]
    assert alice.forward is not None and alice.forward.to_config_dict() == {
        "kind": "external",
        "number": "0611111111",
    }
    assert config.music[0].files[0] == (tmp_path / "sounds" / "promo.mp3").resolve()
    assert config.announcements[0].file == (tmp_path / "sounds/absence-retour-6-janvier.wav")
    assert alice.devices[1].contact == "sip:1001@127.0.0.1:5090"


def test_defaults() -> None:
    config = config_from_text(
        SERVER + '[[users]]\nextension = "1"\nname = "A"\nsecret = "s"\n', file="t.toml"
    )
    assert config.registrar.min_expires == 60
    assert config.registrar.max_expires == 3600
    assert config.registrar.default_expires == 3600
    assert config.registrar.nonce_ttl == 300
    assert config.registrar.keepalive_interval == 30
    assert config.registrar.unreachable_grace == 120
    assert config.registrar.lockout_failures == 10
    assert config.registrar.lockout_window == 60
    assert config.registrar.lockout_seconds == 300
    assert (config.media.rtp_ports.first, config.media.rtp_ports.last) == (20000, 29999)
    assert config.media.rtp_timeout == 60
    assert config.media.backend == "builtin"
    assert config.media.anchor is True
    assert str(config.media.rtpengine) == "127.0.0.1:2223"
    assert config.media.voicemail_max_seconds == 180
    assert config.server.language == "fr"
    assert config.server.workers == 1
    user = config.users[0]
    assert user.ring_timeout == 20
    assert user.no_answer.to_config_dict() == {"kind": "voicemail"}
    assert user.decline == "all"
    assert user.forward is None and user.schedule is None
    assert user.hold_music == "default"
    assert user.timezone == "UTC"


def test_listen_forms() -> None:
    config = config_from_text(
        '[server]\ndomain = "d"\nlisten = ["udp:[::1]:5060", "tls:pbx.example.com:5061"]\n'
        'tls_cert = "cert.pem"\ntls_key = "/etc/key.pem"\n',
        file="t.toml",
        base_dir=Path("/srv/pbx"),
    )
    assert config.server.listen[0] == ListenSpec(transport="udp", host="::1", port=5060)
    assert str(config.server.listen[0]) == "udp:[::1]:5060"
    assert str(config.server.listen[1]) == "tls:pbx.example.com:5061"
    assert config.server.tls_cert == Path("/srv/pbx/cert.pem")
    assert config.server.tls_key == Path("/etc/key.pem")


def test_config_is_frozen() -> None:
    config = config_from_text(SERVER)
    with pytest.raises(ValueError):
        config.server.domain = "x"  # type: ignore[misc]


def test_value_parsers() -> None:
    assert parse_hhmm("08:30") == 510
    assert parse_hhmm("24:00", allow_24=True) == 1440
    with pytest.raises(ValueError):
        parse_hhmm("24:00")
    with pytest.raises(ValueError):
        parse_hhmm("25:00", allow_24=True)
    spec = parse_date_spec("12-20..01-05")
    assert spec.yearly and spec.crosses_new_year
    assert parse_date_spec("2026-05-01").first == (2026, 5, 1)
    assert parse_date_spec("02-29").yearly
    for bad in ("13-01", "02-30", "2026-12-20..12-31", "2026-02-01..2026-01-01", "tomorrow"):
        with pytest.raises(ValueError):
            parse_date_spec(bad)


def test_issue_format() -> None:
    issue = ConfigIssue("conf/x.toml", 12, "users[0].name", "required field missing")
    assert str(issue) == "conf/x.toml:12: users[0].name: required field missing"


# ---------------------------------------------------------------------------------------------
# Errors: exact file, line and field


def test_syntax_error_line() -> None:
    text = SERVER + '[[users]]\nextension = "1001\nname = "A"\n'
    with pytest.raises(ConfigError) as info:
        config_from_text(text, file="conf/bad.toml")
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.field) == ("conf/bad.toml", 4, "(syntax)")
    assert str(info.value).startswith("conf/bad.toml:4: (syntax): TOML syntax error")


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/pbx.toml")
    assert str(info.value).startswith("/nonexistent/pbx.toml:1: (file): cannot read")


USER = """\
[[users]]
extension = "1001"
name = "Alice"
secret = "s"
"""


def test_office_hours_25_00() -> None:
    text = (
        SERVER
        + USER
        + """\
  [users.schedule]
  enabled = true

  [[users.schedule.hours]]
  start = "08:00"
  end = "12:00"
  days = ["mon"]

  [[users.schedule.hours]]
  start = "13:00"
  end = "25:00"
  days = ["mon"]
"""
    )
    assert one_issue(text) == (
        17,
        "users[0].schedule.hours[1].end",
        "'25:00': hour 25 is not in 00..23",
    )


def test_month_13_and_unknown_weekday() -> None:
    text = (
        SERVER
        + USER
        + """\
  [users.schedule]

  [[users.schedule.hours]]
  start = "08:00"
  end = "12:00"
  days = ["mon", "tues"]
  months = [
    1,
    13,
  ]
"""
    )
    assert issues(text) == [
        (12, "users[0].schedule.hours[0].days", "unknown weekday 'tues' (expected mon, tue, wed, thu, fri, sat, sun)"),
        (13, "users[0].schedule.hours[0].months", "month 13 is not in 1..12"),
    ]  # fmt: skip


def test_missing_required_field_points_at_table_header() -> None:
    text = (
        SERVER
        + USER
        + """\

[[users]]
extension = "1002"
secret = "s"
"""
    )
    assert one_issue(text) == (8, "users[1].name", "required field missing")


def test_sixteenth_exception() -> None:
    exc = '[[users.exceptions]]\ncallers = "06*"\ndestination = { kind = "busy" }\n'
    text = SERVER + USER + exc * 16
    # SERVER 2 lines + USER 4 lines; each exception is 3 lines; the 16th starts at 7 + 15 * 3.
    assert one_issue(text) == (
        52,
        "users[0].exceptions[15]",
        "at most 15 caller-ID exceptions per user (this is number 16)",
    )
    assert len(config_from_text(SERVER + USER + exc * 15).users[0].exceptions) == 15


def test_unknown_destination_kind() -> None:
    text = SERVER + USER + 'forward = { kind = "teleport" }\n'
    line, field, reason = one_issue(text)
    assert (line, field) == (7, "users[0].forward")
    assert reason.startswith("unknown destination kind 'teleport'")


def test_destination_as_subtable() -> None:
    text = (
        SERVER
        + USER
        + """\
[users.forward]
kind = "external"
bounce = "yes"
"""
    )
    assert issues(text) == [
        (7, "users[0].forward.number", "required field missing"),
        (9, "users[0].forward.bounce", "expected a valid boolean (got 'yes')"),
    ]


def test_mobile_without_number() -> None:
    text = (
        SERVER
        + USER
        + """\
  [[users.exceptions]]
  callers = "06* 07*"
  destination = { kind = "mobile", bounce = true }
"""
    )
    assert one_issue(text) == (
        9,
        "users[0].exceptions[0].destination.kind",
        "destination 'mobile' needs the user's mobile number (not set)",
    )
    assert config_from_text(text.replace('secret = "s"', 'secret = "s"\nmobile = "0600000001"'))


def test_unknown_colleague_system_extension_and_voicemail() -> None:
    text = (
        SERVER
        + USER
        + """\
no_answer = { kind = "voicemail", extension = "1009" }
forward = { kind = "extension", extension = "1002" }

  [users.schedule]
  closed = { kind = "system", extension = "801" }
"""
    )
    assert issues(text) == [
        (7, "users[0].no_answer.extension", "no user with extension '1009' (voicemail is a user's)"),
        (8, "users[0].forward.extension", "unknown colleague extension '1002'"),
        (11, "users[0].schedule.closed.extension", "unknown system extension '801'"),
    ]  # fmt: skip


def test_unknown_announcement_and_music() -> None:
    text = (
        SERVER
        + """\
[[music]]
name = "promo"
files = ["promo.mp3"]

[[announcements]]
name = "absence-janvier"
file = "a.wav"

"""
        + USER
        + """\
hold_music = "jazz"

  [[users.schedule.exceptional]]
  name = "Noël"
  dates = ["12-25"]
  destination = { kind = "announcement", message = "absence-fevrier" }

  [[users.schedule.exceptional]]
  name = "Nouvel an"
  dates = ["01-01"]
  destination = { kind = "announcement", message = "closed" }
"""
    )
    found = issues(text)
    assert [(line, field) for line, field, _ in found] == [
        (15, "users[0].hold_music"),
        (20, "users[0].schedule.exceptional[0].destination.message"),
    ]
    assert "known: default, promo" in found[0][2]
    assert "absence-janvier" in found[1][2] and "closed" in found[1][2]
    assert "closed" in SHIPPED_PROMPTS
    ok = text.replace('"jazz"', '"promo"').replace("absence-fevrier", "absence-janvier")
    assert config_from_text(ok).users[0].hold_music == "promo"


def test_exceptional_dates_and_windows() -> None:
    text = (
        SERVER
        + USER
        + """\
  [[users.schedule.exceptional]]
  name = "x"
  dates = ["12-20..01-05", "13-01", "2026-02-30"]
  start = "08:00"
  destination = { kind = "busy" }
"""
    )
    assert issues(text) == [
        (7, "users[0].schedule.exceptional[0].end", "a daily window needs both start and end (omit both for whole days)"),
        (9, "users[0].schedule.exceptional[0].dates[1]", "'13-01': month 13 is not in 1..12"),
        (9, "users[0].schedule.exceptional[0].dates[2]", "'2026-02-30': day 30 does not exist in month 2"),
    ]  # fmt: skip


def test_all_issues_reported_together_in_line_order() -> None:
    text = """\
[server]
domain = "pbx.test"
listen = ["udp:0.0.0.0:5060", "sctp:1.2.3.4:5"]
timezone = "Europe/Pariss"
auth_algorithms = ["SHA-256", "SHA-1"]
workers = 17

[registrar]
min_expires = 600
max_expires = 300

[[trunks]]
name = "carrier"
address = "127.0.0.1:5080"
inbound_from = ["10.0.0.1/24"]
did = { "0442930600" = "1009" }

[[users]]
extension = "1001"
name = "A"
secret = "x"
ring_timout = 20
"""
    with pytest.raises(ConfigError) as info:
        config_from_text(text, file="pbx.toml")
    lines = str(info.value).splitlines()
    assert lines == [
        "pbx.toml:3: server.listen[1]: 'sctp:1.2.3.4:5': expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT",
        "pbx.toml:4: server.timezone: unknown time zone 'Europe/Pariss' (e.g. Europe/Paris)",
        "pbx.toml:5: server.auth_algorithms[1]: expected 'SHA-256' or 'MD5' (got 'SHA-1')",
        "pbx.toml:6: server.workers: expected less than or equal to 16 (got 17)",
        "pbx.toml:9: registrar.min_expires: min_expires (600) is above max_expires (300)",
        "pbx.toml:15: trunks[0].inbound_from[0]: '10.0.0.1/24' has host bits set; did you mean 10.0.0.0/24?",
        "pbx.toml:16: trunks[0].did.0442930600: extension '1009' is neither a user nor a system extension",
        "pbx.toml:22: users[0].ring_timout: unknown key 'ring_timout' (did you mean 'ring_timeout'?)",
    ]  # fmt: skip


def test_duplicate_extensions_and_ring_group_members() -> None:
    text = (
        SERVER
        + """\
[[system_extensions]]
extension = "800"
name = "Accueil"
kind = "ring_group"
members = ["1001", "1005"]

"""
        + USER
        + """\

[[users]]
extension = "800"
name = "B"
secret = "s"
"""
    )
    assert issues(text) == [
        (7, "system_extensions[0].members[1]", "member '1005' is not a user extension"),
        (15, "users[1].extension", "extension '800' is already used by system_extensions[0]"),
    ]


def test_strict_types() -> None:
    text = SERVER + USER + 'ring_timeout = "20"\ndecline = "some"\n'
    assert issues(text) == [
        (7, "users[0].ring_timeout", "expected a valid integer (got '20')"),
        (8, "users[0].decline", "expected 'all' or 'device' (got 'some')"),
    ]


def test_tls_listener_needs_certificate() -> None:
    text = '[server]\ndomain = "d"\nlisten = ["tls:0.0.0.0:5061"]\n'
    assert issues(text) == [
        (1, "server.tls_cert", "required by the tls listener"),
        (1, "server.tls_key", "required by the tls listener"),
    ]


def test_caller_patterns_syntax() -> None:
    text = (
        SERVER
        + USER
        + """\
  [[users.exceptions]]
  callers = "06*,07*"
  destination = { kind = "busy" }

  [[users.exceptions]]
  callers = "*06"
  destination = { kind = "busy" }
"""
    )
    assert issues(text) == [
        (8, "users[0].exceptions[0].callers", "'06*,07*': separate several patterns with spaces"),
        (
            12,
            "users[0].exceptions[1].callers",
            "'*06': '*' is only allowed at the end of a pattern",
        ),
    ]


def test_locator_inline_and_dotted_keys() -> None:
    text = (
        SERVER
        + USER
        + """\
schedule.enabled = true
schedule.hours = [
  { start = "08:00", end = "12:00", days = ["mon"] },
  { start = "13:00", end = "24:01", days = ["mon"] },
]
"""
    )
    assert one_issue(text) == (
        10,
        "users[0].schedule.hours[1].end",
        "'24:01': hour 24 is not in 00..23",
    )
