"""REST handlers of a user's settings: the section itself, devices and their QR codes,
exceptional periods as iCalendar, and where calls go (trace, week, call history)."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, Field

from b2bua.api import worker
from b2bua.api.common import (
    ApiError,
    Dashboard,
    Issue,
    account,
    body_json,
    config_issues,
    dashboard,
    invalid,
    iso,
    msg,
    parse_model,
    request_lang,
    require_admin,
    user_extension,
)
from b2bua.config import (
    MAX_EXCEPTIONS,
    SHIPPED_MUSIC,
    SHIPPED_PROMPTS,
    WEEKDAYS,
    User,
    format_path,
    french_dates,
    parse_day,
    parse_instant,
)
from b2bua.config.lang import Lang
from b2bua.rules.i18n import describe
from b2bua.settings import user_to_raw

# Keys of a user's section a user may change; an admin may change every key but `extension`.
USER_KEYS = frozenset({
    "mobile", "language", "hold_music", "ring_timeout", "no_answer", "decline", "forward",
    "devices", "schedule", "exceptions",
})  # fmt: skip
ADMIN_KEYS = USER_KEYS | {"name", "secret", "timezone"}
DEVICE_TYPES = ("sip", "softphone", "teams", "other")
# Devices a QR code can set up: a softphone scans it (a desk phone or a gateway cannot).
PROVISIONABLE = frozenset({"softphone", "other"})
_EXT = re.compile(r"^[0-9A-Za-z_]{1,32}$")


def _user(board: Dashboard, ext: str) -> User:
    user = board.config.user(ext)
    if user is None:
        raise ApiError(404, "not_found", msg("no_user", extension=ext))
    return user


def _public(user: User) -> dict[str, Any]:
    raw = user_to_raw(user)
    raw.pop("secret", None)
    return raw


def _warnings(board: Dashboard, ext: str, lang: Lang) -> list[dict[str, str]]:
    """The warnings about `ext`'s rules (docs/api.md, Warnings), fields relative to the user."""
    from b2bua.rules.warnings import user_warnings

    config = board.config
    index = next(i for i, u in enumerate(config.users) if u.extension == ext)
    scope = ("users", index)
    today = datetime.fromtimestamp(board.now(), ZoneInfo(config.users[index].tz)).date()
    pairs = [(w.path[2:], w) for w in user_warnings(config, index, today) if w.path[:2] == scope]
    return [issue.to_json(lang) for issue in config_issues(pairs)]


def _user_json(board: Dashboard, ext: str, role: str, lang: Lang) -> dict[str, Any]:
    user = _user(board, ext)
    override = board.store.overrides().get(ext)
    return {
        "extension": ext,
        "settings": _public(user),
        "stored": sorted(override.values) if override else [],
        "created": bool(override and override.created),
        "editable": sorted(ADMIN_KEYS if role == "admin" else USER_KEYS),
        "warnings": _warnings(board, ext, lang),
    }


def french_dates_in(changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` with the `dates` of exceptional periods typed the French way (`31/12/2026`,
    `20/12..05/01`) in the configuration's form (docs/api.md, Dates)."""
    schedule = changes.get("schedule")
    if not isinstance(schedule, dict) or not isinstance(schedule.get("exceptional"), list):
        return changes
    periods = []
    for period in schedule["exceptional"]:
        if isinstance(period, dict) and isinstance(period.get("dates"), list):
            dates = [french_dates(d) if isinstance(d, str) else d for d in period["dates"]]
            period = {**period, "dates": dates}
        periods.append(period)
    return {**changes, "schedule": {**schedule, "exceptional": periods}}


def _announcements_in(value: Any, path: tuple[str | int, ...] = ()
                      ) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, message) of every `announcement` destination inside `value`."""
    if isinstance(value, dict):
        if value.get("kind") == "announcement" and isinstance(value.get("message"), str):
            yield (*path, "message"), value["message"]
        for key, item in value.items():
            yield from _announcements_in(item, (*path, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _announcements_in(item, (*path, i))


def personal_owner(board: Dashboard, name: str) -> str | None:
    """The extension whose own message `name` is (`absence.EXT` of a user, or a message a user
    stored), None for a shared announcement."""
    from b2bua.settings.announcements import stored_announcements

    for row in stored_announcements(board.store.conn, board.tenant):
        if row.name == name and row.owner is not None:
            return row.owner
    prefix, dot, ext = name.partition(".")
    if dot and prefix == "absence" and board.config.user(ext) is not None:
        return ext
    return None


def _check_own_messages(request: web.Request, ext: str, changes: dict[str, Any]) -> None:
    """A user's own absence message is theirs: another user may not choose it (an admin may).
    A choice already in the user's settings (an admin's) is kept when the user saves."""
    if account(request).role == "admin":
        return
    board = dashboard(request)
    user = board.config.user(ext)
    before = {m for _, m in _announcements_in(user_to_raw(user))} if user is not None else set()
    issues = []
    for path, name in _announcements_in(changes):
        owner = personal_owner(board, name) if name not in before else None
        if owner is not None and owner != ext:
            issues.append(Issue("not_own_message", format_path(path, first=1),
                                {"name": name, "owner": owner}))
    if issues:
        raise invalid(*issues)


async def _save(request: web.Request, ext: str, changes: dict[str, Any] | None, *,
                create: bool = False) -> None:
    board = dashboard(request)
    acc = account(request)
    store = board.store

    if changes is not None:
        changes = french_dates_in(changes)
        _check_own_messages(request, ext, changes)

    def build() -> tuple[dict[str, Any], Any]:
        return store.user_candidate(ext, changes, create=create)

    def save(row: Any, config: Any) -> None:
        store.save_user(row, config, board.install, acc.login, board.now())

    await board.change(build, save, ext)


def _check_keys(request: web.Request, data: Any) -> dict[str, Any]:
    acc = account(request)
    if not isinstance(data, dict) or not data:
        raise invalid(Issue("body_not_object", "(body)"))
    allowed = ADMIN_KEYS if acc.role == "admin" else USER_KEYS
    issues = []
    for key in data:
        if key not in allowed:
            code = "not_a_setting" if key not in ADMIN_KEYS | {"extension"} else "admin_only"
            issues.append(Issue(code, str(key), {"key": key}))
    if issues:
        if all(i.code == "admin_only" for i in issues):
            raise ApiError(403, "forbidden", msg("admin_only"), issues)
        raise invalid(*issues)
    return dict(data)


def _check_devices(request: web.Request, ext: str, devices: Any) -> None:
    """A user may add, relabel, retype, reorder and remove devices, but not give one a static
    contact or a username of their own choosing (an administrator's job)."""
    if not isinstance(devices, list):
        return
    empty = [
        Issue("empty", f"devices[{i + 1}].label")
        for i, d in enumerate(devices)
        if isinstance(d, dict) and isinstance(d.get("label"), str) and not d["label"].strip()
    ]
    if empty:
        raise invalid(*empty)
    if account(request).role == "admin":
        return
    current = _user(dashboard(request), ext).devices
    allowed = {(d.username, d.contact) for d in current}
    for i, d in enumerate(devices):
        if isinstance(d, dict) and (d.get("username"), d.get("contact")) not in allowed | {
            (None, None)
        }:
            raise ApiError(403, "forbidden", msg("device_admin_fields"),
                           [Issue("device_admin_fields", f"devices[{i + 1}]")])


# ---- the user's section ----------------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    board = dashboard(request)
    acc = account(request)
    overrides = board.store.overrides()
    out = []
    for user in board.config.users:
        if acc.role != "admin" and user.extension != acc.extension:
            continue
        o = overrides.get(user.extension)
        out.append({
            "extension": user.extension, "name": user.name, "devices": len(user.devices),
            "stored": bool(o and o.values), "created": bool(o and o.created),
        })  # fmt: skip
    return web.json_response({"users": out})


class NewUser(BaseModel):
    extension: str = Field(pattern=r"^[0-9A-Za-z_]{1,32}$")
    name: str = Field(min_length=1, max_length=100)
    secret: str = Field(min_length=8, max_length=128)
    mobile: str | None = None
    devices: list[dict[str, Any]] = Field(default_factory=lambda: [{"type": "sip", "label": "Bureau"}])


def _user_limit(board: Dashboard) -> int:
    """The most users the board's tenant may have (0: no limit)."""
    service = getattr(board.server, "tenant_service", None)
    return service.limits(board.tenant).users if service is not None and board.tenant else 0


async def create_user(request: web.Request) -> web.Response:
    require_admin(request)
    board = dashboard(request)
    data = parse_model(NewUser, await body_json(request))
    if board.config.user(data.extension) is not None or board.config.system_extension(
        data.extension
    ):
        raise ApiError(409, "exists", msg("extension_exists", extension=data.extension),
                       [Issue("extension_exists", "extension", {"extension": data.extension})])
    most = _user_limit(board)
    if most and len(board.config.users) >= most:  # docs/tenants.md, limits
        raise ApiError(403, "tenant_user_limit",
                       msg("tenant_user_limit", max=most, count=len(board.config.users) + 1),
                       [Issue("tenant_user_limit", "extension",
                              {"max": most, "count": len(board.config.users) + 1})])
    section = data.model_dump(exclude_none=True, exclude={"extension"})
    _check_devices(request, data.extension, section.get("devices"))
    await _save(request, data.extension, section, create=True)
    body = _user_json(board, data.extension, "admin", request_lang(request))
    return web.json_response(body, status=201)


async def delete_user(request: web.Request) -> web.Response:
    require_admin(request)
    ext = user_extension(request)
    await _save(request, ext, None)
    return web.json_response({"ok": True})


async def reset_user(request: web.Request) -> web.Response:
    """Admin: forget a user's stored settings (back to the TOML file's)."""
    require_admin(request)
    ext = user_extension(request)
    board = dashboard(request)
    acc = account(request)
    store = board.store
    override = store.overrides().get(ext)
    if override is None or override.created:
        raise ApiError(409, "nothing_stored", msg("nothing_stored", extension=ext))

    def build() -> tuple[dict[str, Any], Any]:
        from b2bua.settings import UserOverride

        return store.reset_user(ext), UserOverride(ext, {}, False, False)

    def save(row: Any, config: Any) -> None:
        store.save_user(row, config, board.install, acc.login, board.now())

    await board.change(build, save, ext)
    return web.json_response(_user_json(board, ext, "admin", request_lang(request)))


async def get_user(request: web.Request) -> web.Response:
    ext = user_extension(request)
    body = _user_json(dashboard(request), ext, account(request).role, request_lang(request))
    return web.json_response(body)


async def patch_user(request: web.Request) -> web.Response:
    ext = user_extension(request)
    data = _check_keys(request, await body_json(request))
    if "devices" in data:
        _check_devices(request, ext, data["devices"])
    await _save(request, ext, data)
    body = _user_json(dashboard(request), ext, account(request).role, request_lang(request))
    return web.json_response(body)


# ---- devices ---------------------------------------------------------------------------------


class _OneUser:
    def __init__(self, user: User) -> None:
        self.users = [user]


def _devices_json(board: Dashboard, ext: str) -> list[dict[str, Any]]:
    from b2bua.registrar.report import device_report

    user = _user(board, ext)
    now = board.now()
    registrar = board.server.registrar
    report: list[dict[str, Any]] = device_report(
        _OneUser(user), registrar.bindings(board.box(ext)), now
    )[0]["devices"]
    tz = ZoneInfo(user.tz)
    for row in report:
        expires_in = row.get("expires_in")
        row["expires_at"] = iso(now + expires_in, tz) if expires_in else None
        push = row.get("push")
        if push and push.get("last_push_at") is not None:
            push["last_push_at"] = iso(push["last_push_at"], tz)
        row["registered_at"] = iso(row.get("registered_at"), tz)
        row["provisionable"] = (
            row["device"] is not None and row["state"] != "static" and row["type"] in PROVISIONABLE
        )
    return report


def _devices_body(request: web.Request, board: Dashboard, ext: str) -> dict[str, Any]:
    """The device list after a change, with the user's warnings."""
    return {
        "devices": _devices_json(board, ext),
        "warnings": _warnings(board, ext, request_lang(request)),
    }


async def list_devices(request: web.Request) -> web.Response:
    ext = user_extension(request)
    return web.json_response({"devices": _devices_json(dashboard(request), ext)})


class DeviceIn(BaseModel):
    type: Literal["sip", "softphone", "teams", "other"]
    label: str = Field(min_length=1, max_length=64)
    username: str | None = None
    contact: str | None = None


class DevicePatch(BaseModel):
    type: Literal["sip", "softphone", "teams", "other"] | None = None
    label: str | None = Field(default=None, min_length=1, max_length=64)
    username: str | None = None
    contact: str | None = None


def _device_index(request: web.Request, count: int) -> int:
    try:
        n = int(request.match_info["n"])
    except ValueError:
        n = 0
    if not 1 <= n <= count:
        raise ApiError(404, "not_found", msg("no_device", n=request.match_info["n"]))
    return n - 1


def _raw_devices(user: User) -> list[dict[str, Any]]:
    return [d.model_dump(mode="json", exclude_none=True, exclude_unset=True) for d in user.devices]


async def add_device(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    data = parse_model(DeviceIn, await body_json(request))
    devices = _raw_devices(_user(board, ext))
    devices.append(data.model_dump(exclude_none=True))
    _check_devices(request, ext, devices)
    await _save(request, ext, {"devices": devices})
    return web.json_response(_devices_body(request, board, ext), status=201)


async def patch_device(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    devices = _raw_devices(_user(board, ext))
    i = _device_index(request, len(devices))
    data = parse_model(DevicePatch, await body_json(request))
    devices[i].update(data.model_dump(exclude_unset=True))
    devices[i] = {k: v for k, v in devices[i].items() if v is not None}
    _check_devices(request, ext, devices)
    await _save(request, ext, {"devices": devices})
    return web.json_response(_devices_body(request, board, ext))


async def delete_device(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    devices = _raw_devices(_user(board, ext))
    i = _device_index(request, len(devices))
    del devices[i]
    await _save(request, ext, {"devices": devices})
    return web.json_response(_devices_body(request, board, ext))


def _http_base(request: web.Request, board: Dashboard) -> str:
    served = getattr(board.server, "http", None) or str(board.config.server.http)
    host, _, port = str(served).rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return f"{request.scheme}://{request.host}"
    if ":" in host:
        host = f"[{host}]"
    return f"{request.scheme}://{host}:{port}"


async def device_qr(request: web.Request) -> web.Response:
    """A one-time provisioning link for a softphone, as a QR code (PNG, data URL)."""
    import segno

    from b2bua.registrar.provisioning import (
        TOKEN_TTL,
        ProvisioningError,
        create_token,
        device_settings,
    )

    ext = user_extension(request)
    board = dashboard(request)
    user = _user(board, ext)
    i = _device_index(request, max(1, len(user.devices)))
    spec = user.devices[i] if user.devices else None
    if spec is not None and spec.contact:
        why = ("has a fixed address (it does not register)",
               "a une adresse fixe (il ne s'enregistre pas)")
    elif spec is not None and spec.type not in PROVISIONABLE:
        why = ("is a desk phone or a gateway: it cannot scan a code",
               "est un téléphone de bureau ou une passerelle : il ne lit pas de code")
    else:
        why = None
        try:
            device_settings(board.config, ext, i, getattr(board.server, "listen", None))
        except ProvisioningError:
            why = ("cannot be set up this way", "ne peut pas être configuré ainsi")
    if why is not None:
        raise ApiError(409, "not_provisionable",
                       msg("not_provisionable", why=why[0], why_fr=why[1]))
    now = board.now()
    # A tenant's extension is named EXT@DOMAIN in the token (docs/tenants.md).
    token = create_token(board.store.conn, board.box(ext), i, now, ttl=TOKEN_TTL)
    url = f"{_http_base(request, board)}/provision/{token}"
    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="png", scale=6, border=4)
    return web.json_response({
        "url": url,
        "expires_at": iso(now + TOKEN_TTL, ZoneInfo(user.tz)),
        "png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
        "device": i + 1,
    }, headers={"Cache-Control": "no-store"})  # fmt: skip


# ---- exceptional periods as iCalendar -----------------------------------------------------


async def export_ics(request: web.Request) -> web.Response:
    from b2bua.rules.ical import export_ics as render

    ext = user_extension(request)
    board = dashboard(request)
    user = _user(board, ext)
    now = datetime.fromtimestamp(board.now(), UTC)
    text = render(user, domain=board.config.server.domain, now=now)
    return web.Response(
        body=text.encode("utf-8"), content_type="text/calendar", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="exceptional-{ext}.ics"'},
    )


async def import_ics(request: web.Request) -> web.Response:
    """Add (or with `?mode=replace`, replace) exceptional periods from an .ics body. Events
    exported by us keep their destination; others get the closed destination (or `destination`
    given as a JSON query parameter)."""
    import json

    from b2bua.rules.ical import import_ics as parse

    ext = user_extension(request)
    board = dashboard(request)
    user = _user(board, ext)
    mode = request.query.get("mode", "append")
    if mode not in ("append", "replace"):
        raise invalid(Issue("invalid_mode", "mode"))
    raw_body = await request.read()
    if len(raw_body) > 2 * 1024 * 1024:
        raise ApiError(413, "too_large", msg("ics_too_large"), [Issue("file_too_large", "file",
                                                                      {"max_mb": 2})])
    try:
        text = raw_body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise invalid(Issue("not_utf8", "file")) from None
    if "BEGIN:VCALENDAR" not in text.upper():
        raise invalid(Issue("not_icalendar", "file"))
    schedule = user_to_raw(user).get("schedule") or {"enabled": False}
    default = schedule.get("closed") or {"kind": "voicemail"}
    if "destination" in request.query:
        try:
            default = json.loads(request.query["destination"])
        except ValueError:
            raise invalid(Issue("destination_not_json", "destination")) from None
    result = parse(text, timezone=user.tz, default_destination=default)
    lang = request_lang(request)
    notes = [
        Issue("ics_event_skipped" if n.skipped else "ics_event_note", "file", literal=n.text(lang))
        for n in result.notes
    ]
    if not result.periods:
        raise invalid(Issue("no_usable_event", "file"), *notes)
    old = [] if mode == "replace" else list(schedule.get("exceptional", []))
    schedule["exceptional"] = old + result.periods
    await _save(request, ext, {"schedule": schedule})
    body = _user_json(board, ext, account(request).role, lang)
    return web.json_response({
        "added": len(result.periods),
        "warnings": [n.to_json(lang) for n in notes] + body["warnings"],
        "schedule_enabled": bool(schedule.get("enabled", True)),
        "user": body,
    })  # fmt: skip


# ---- where calls go -----------------------------------------------------------------------


def _parse_at(text: str | None, tz: ZoneInfo, board: Dashboard) -> datetime:
    from b2bua.rules import local_instant

    if not text:
        return datetime.fromtimestamp(board.now(), UTC)
    try:
        when = parse_instant(text)
    except ValueError:
        raise invalid(Issue("invalid_datetime", "at")) from None
    return local_instant(when, tz) if when.tzinfo is None else when


_CALLER = re.compile(r"^\+?[0-9 .()/-]{1,40}$")
_ANONYMOUS = frozenset({"anonymous", "unknown", "private", "restricted", "unavailable",
                        "withheld", "anonyme", "inconnu", "masqué", "*"})


def _caller(request: web.Request) -> str:
    """The test caller: a phone number, or nothing / `anonymous` for a hidden number."""
    caller = request.query.get("caller", "").strip()
    if len(caller) > 64:
        raise invalid(Issue("caller_too_long", "caller", {"max": 64}))
    if caller and caller.lower() not in _ANONYMOUS and not (
        _CALLER.match(caller) and any(c.isdigit() for c in caller)
    ):
        raise invalid(Issue("invalid_caller", "caller", {"value": caller}))
    return caller


async def trace(request: web.Request) -> web.Response:
    """Test a call: where a call from `caller` at `at` (local time by default) goes, and why,
    in the request's language."""
    ext = user_extension(request)
    board = dashboard(request)
    table = board.table
    tz = table.zone(ext)
    caller = _caller(request)
    when = _parse_at(request.query.get("at"), tz, board)
    decision = table.decide(ext, caller, when)
    lang = request_lang(request)
    body = decision.to_json(lang)
    body["description"] = describe(decision.destination, lang)
    body["at"] = when.astimezone(tz).isoformat(timespec="minutes")
    body["caller"] = caller
    return web.json_response(body)


def week_json(
    table: Any, ext: str, caller: str, monday: date, lang: str = "en"
) -> dict[str, Any]:
    from b2bua.rules.week import sample_week

    week = sample_week(table, ext, caller, monday)
    index = {id(o): i for i, o in enumerate(week.outcomes)}
    outcomes: list[dict[str, Any]] = []
    for o in week.outcomes:
        destination = o.target.to_config_dict() if o.target is not None else None
        outcomes.append({
            "rule": o.rule, "rule_name": o.rule_name,
            "description": describe(o.target, lang) if o.target is not None else o.destination,
            "destination": destination, "color": o.color,
        })  # fmt: skip
    return {
        "extension": ext,
        "caller": caller,
        "zone": week.zone,
        "days": [d.isoformat() for d in week.days],
        "outcomes": outcomes,
        "cells": [[None if c is None else index[id(c)] for c in row] for row in week.cells],
        "changes": [{"at": when, "outcome": index[id(o)]} for when, o in week.changes],
    }


def _monday(request: web.Request, board: Dashboard, tz: ZoneInfo) -> date:
    text = request.query.get("start")
    if text:
        try:
            return parse_day(text)
        except ValueError:
            raise invalid(Issue("invalid_day", "start")) from None
    today = datetime.fromtimestamp(board.now(), UTC).astimezone(tz).date()
    return today - timedelta(days=today.weekday())


async def week(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    table = board.table
    caller = _caller(request)
    monday = _monday(request, board, table.zone(ext))
    data = await board.worker.run(worker.week, board.config, ext,
                                  "" if caller == "*" else caller, monday, request_lang(request))
    return web.json_response(data)


async def week_svg(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    table = board.table
    caller = _caller(request)
    monday = _monday(request, board, table.zone(ext))
    svg = await board.worker.run(worker.week_svg, board.config, ext,
                                 "" if caller == "*" else caller, monday, request_lang(request))
    return web.Response(text=svg, content_type="image/svg+xml")


async def calls(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        limit = 50
    user = _user(board, ext)
    tz = ZoneInfo(user.tz)
    lang = request_lang(request)  # ?lang=, the dashboard's language, else the user's
    records = board.server.recorder.last(limit, ext, tenant=board.tenant)
    out = []
    for r in records:
        row = r.to_dict(lang)
        row["description"] = describe(r.destination, lang) if r.destination else None
        row["started_at"] = iso(r.started, tz)
        row["duration"] = round(r.ended - (r.answered or r.started), 1) if r.answered else 0
        out.append(row)
    return web.json_response({"calls": out})


# ---- choices for the forms ------------------------------------------------------------------


async def options(request: web.Request) -> web.Response:
    board = dashboard(request)
    config = board.config
    admin = account(request).role == "admin"
    return web.json_response({
        "device_types": list(DEVICE_TYPES),
        "destination_kinds": ["devices", "voicemail", "extension", "mobile", "external",
                              "system", "busy", "announcement"],
        "weekdays": list(WEEKDAYS),
        "max_exceptions": MAX_EXCEPTIONS,
        "music": sorted(SHIPPED_MUSIC | {m.name for m in config.music}),
        "announcements": sorted(SHIPPED_PROMPTS | {
            a.name for a in config.announcements
            if admin or personal_owner(board, a.name) in (None, account(request).extension)}),
        "colleagues": [{"extension": u.extension, "name": u.name} for u in config.users],
        "system_extensions": [
            {"extension": s.extension, "name": s.name} for s in config.system_extensions
        ],
        "languages": ["fr", "en"],
        "default_language": config.server.language,
    })  # fmt: skip


def valid_extension(ext: str) -> bool:
    return bool(_EXT.match(ext))
