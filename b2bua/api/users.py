"""REST handlers of a user's settings: the section itself, devices and their QR codes,
exceptional periods as iCalendar, and where calls go (trace, week, call history)."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, Field

from b2bua.api import worker
from b2bua.api.common import (
    ApiError,
    Dashboard,
    account,
    body_json,
    dashboard,
    iso,
    parse_model,
    require_admin,
    user_extension,
)
from b2bua.config import MAX_EXCEPTIONS, SHIPPED_MUSIC, SHIPPED_PROMPTS, WEEKDAYS, User
from b2bua.settings import user_to_raw

# Keys of a user's section a user may change; an admin may change every key but `extension`.
USER_KEYS = frozenset({
    "mobile", "language", "hold_music", "ring_timeout", "no_answer", "decline", "forward",
    "devices", "schedule", "exceptions",
})  # fmt: skip
ADMIN_KEYS = USER_KEYS | {"name", "secret", "timezone"}
DEVICE_TYPES = ("sip", "softphone", "teams", "other")
_EXT = re.compile(r"^[0-9A-Za-z_]{1,32}$")


def _user(board: Dashboard, ext: str) -> User:
    user = board.config.user(ext)
    if user is None:
        raise ApiError(404, "not_found", f"no user with extension {ext}")
    return user


def _public(user: User) -> dict[str, Any]:
    raw = user_to_raw(user)
    raw.pop("secret", None)
    return raw


def _warnings(board: Dashboard, ext: str) -> list[dict[str, str]]:
    from b2bua.rules.warnings import check_warnings

    config = board.config
    index = next(i for i, u in enumerate(config.users) if u.extension == ext)
    prefix = f"users[{index}]"
    out = []
    for issue in check_warnings(config, datetime.fromtimestamp(board.now(), UTC).date()):
        if issue.field == prefix or issue.field.startswith(prefix + "."):
            out.append({"field": issue.field[len(prefix) + 1 :], "reason": issue.reason})
    return out


def _user_json(board: Dashboard, ext: str, role: str) -> dict[str, Any]:
    user = _user(board, ext)
    override = board.store.overrides().get(ext)
    return {
        "extension": ext,
        "settings": _public(user),
        "stored": sorted(override.values) if override else [],
        "created": bool(override and override.created),
        "editable": sorted(ADMIN_KEYS if role == "admin" else USER_KEYS),
        "warnings": _warnings(board, ext),
    }


async def _save(request: web.Request, ext: str, changes: dict[str, Any] | None, *,
                create: bool = False) -> None:
    board = dashboard(request)
    acc = account(request)
    store = board.store

    def build() -> tuple[dict[str, Any], Any]:
        return store.user_candidate(ext, changes, create=create)

    def save(row: Any, config: Any) -> None:
        store.save_user(row, config, board.install, acc.login, board.now())

    await board.change(build, save, ext)


def _check_keys(request: web.Request, data: Any) -> dict[str, Any]:
    acc = account(request)
    if not isinstance(data, dict) or not data:
        raise ApiError(422, "validation", "send an object of settings to change",
                       [{"field": "(body)", "reason": "expected a non-empty JSON object"}])
    allowed = ADMIN_KEYS if acc.role == "admin" else USER_KEYS
    issues = []
    for key in data:
        if key not in allowed:
            reason = ("not a setting" if key not in ADMIN_KEYS | {"extension"}
                      else "only an administrator may change it")
            issues.append({"field": key, "reason": reason})
    if issues:
        status = 403 if all(i["reason"].startswith("only") for i in issues) else 422
        raise ApiError(status, "validation" if status == 422 else "forbidden",
                       f"{issues[0]['field']}: {issues[0]['reason']}", issues)
    return dict(data)


def _check_devices(request: web.Request, ext: str, devices: Any) -> None:
    """A user may add, relabel, retype, reorder and remove devices, but not give one a static
    contact or a username of their own choosing (an administrator's job)."""
    if account(request).role == "admin" or not isinstance(devices, list):
        return
    current = _user(dashboard(request), ext).devices
    allowed = {(d.username, d.contact) for d in current}
    for i, d in enumerate(devices):
        if isinstance(d, dict) and (d.get("username"), d.get("contact")) not in allowed | {
            (None, None)
        }:
            raise ApiError(403, "forbidden", "only an administrator may set a device's "
                           "username or static contact",
                           [{"field": f"devices[{i}]", "reason": "contact/username set by admin"}])


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


async def create_user(request: web.Request) -> web.Response:
    require_admin(request)
    board = dashboard(request)
    data = parse_model(NewUser, await body_json(request))
    if board.config.user(data.extension) is not None or board.config.system_extension(
        data.extension
    ):
        raise ApiError(409, "exists", f"extension {data.extension} already exists",
                       [{"field": "extension", "reason": "already exists"}])
    section = data.model_dump(exclude_none=True, exclude={"extension"})
    await _save(request, data.extension, section, create=True)
    return web.json_response(_user_json(board, data.extension, "admin"), status=201)


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
        raise ApiError(409, "nothing_stored", f"{ext} has no stored settings over the file")

    def build() -> tuple[dict[str, Any], Any]:
        from b2bua.settings import UserOverride

        return store.reset_user(ext), UserOverride(ext, {}, False, False)

    def save(row: Any, config: Any) -> None:
        store.save_user(row, config, board.install, acc.login, board.now())

    await board.change(build, save, ext)
    return web.json_response(_user_json(board, ext, "admin"))


async def get_user(request: web.Request) -> web.Response:
    ext = user_extension(request)
    return web.json_response(_user_json(dashboard(request), ext, account(request).role))


async def patch_user(request: web.Request) -> web.Response:
    ext = user_extension(request)
    data = _check_keys(request, await body_json(request))
    if "devices" in data:
        _check_devices(request, ext, data["devices"])
    await _save(request, ext, data)
    return web.json_response(_user_json(dashboard(request), ext, account(request).role))


# ---- devices ---------------------------------------------------------------------------------


class _OneUser:
    def __init__(self, user: User) -> None:
        self.users = [user]


def _devices_json(board: Dashboard, ext: str) -> list[dict[str, Any]]:
    from b2bua.registrar.report import device_report

    user = _user(board, ext)
    now = board.now()
    registrar = board.server.registrar
    report = device_report(_OneUser(user), registrar.bindings(ext), now)[0]["devices"]
    tz = ZoneInfo(user.tz)
    for row in report:
        expires_in = row.get("expires_in")
        row["expires_at"] = iso(now + expires_in, tz) if expires_in else None
        push = row.get("push")
        if push and push.get("last_push_at") is not None:
            push["last_push_at"] = iso(push["last_push_at"], tz)
        row["provisionable"] = row["device"] is not None and row["state"] != "static"
    return report


async def list_devices(request: web.Request) -> web.Response:
    ext = user_extension(request)
    return web.json_response({"devices": _devices_json(dashboard(request), ext)})


class DeviceIn(BaseModel):
    type: Literal["sip", "softphone", "teams", "other"]
    label: str = Field(max_length=64)
    username: str | None = None
    contact: str | None = None


class DevicePatch(BaseModel):
    type: Literal["sip", "softphone", "teams", "other"] | None = None
    label: str | None = Field(default=None, max_length=64)
    username: str | None = None
    contact: str | None = None


def _device_index(request: web.Request, count: int) -> int:
    try:
        n = int(request.match_info["n"])
    except ValueError:
        n = 0
    if not 1 <= n <= count:
        raise ApiError(404, "not_found", f"no device {request.match_info['n']}")
    return n - 1


def _raw_devices(user: User) -> list[dict[str, Any]]:
    return [d.model_dump(mode="json", exclude_none=True) for d in user.devices]


async def add_device(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    data = parse_model(DeviceIn, await body_json(request))
    devices = _raw_devices(_user(board, ext))
    devices.append(data.model_dump(exclude_none=True))
    _check_devices(request, ext, devices)
    await _save(request, ext, {"devices": devices})
    return web.json_response({"devices": _devices_json(board, ext)}, status=201)


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
    return web.json_response({"devices": _devices_json(board, ext)})


async def delete_device(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    devices = _raw_devices(_user(board, ext))
    i = _device_index(request, len(devices))
    del devices[i]
    await _save(request, ext, {"devices": devices})
    return web.json_response({"devices": _devices_json(board, ext)})


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
    try:
        device_settings(board.config, ext, i, getattr(board.server, "listen", None))
    except ProvisioningError as exc:
        raise ApiError(409, "not_provisionable", str(exc)) from None
    now = board.now()
    token = create_token(board.store.conn, ext, i, now, ttl=TOKEN_TTL)
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
        raise ApiError(422, "validation", "mode: append or replace",
                       [{"field": "mode", "reason": "expected append or replace"}])
    raw_body = await request.read()
    if len(raw_body) > 2 * 1024 * 1024:
        raise ApiError(413, "too_large", "an .ics file of at most 2 MB")
    try:
        text = raw_body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(422, "validation", "file: not UTF-8 text",
                       [{"field": "file", "reason": "not UTF-8 text"}]) from None
    if "BEGIN:VCALENDAR" not in text.upper():
        raise ApiError(422, "validation", "file: not an iCalendar file",
                       [{"field": "file", "reason": "no BEGIN:VCALENDAR"}])
    schedule = user_to_raw(user).get("schedule") or {"enabled": False}
    default = schedule.get("closed") or {"kind": "voicemail"}
    if "destination" in request.query:
        try:
            default = json.loads(request.query["destination"])
        except ValueError:
            raise ApiError(422, "validation", "destination: not JSON",
                           [{"field": "destination", "reason": "not JSON"}]) from None
    result = parse(text, timezone=user.tz, default_destination=default)
    if not result.periods:
        raise ApiError(422, "validation", "file: no usable event",
                       [{"field": "file", "reason": w} for w in result.warnings]
                       or [{"field": "file", "reason": "no usable event"}])
    old = [] if mode == "replace" else list(schedule.get("exceptional", []))
    schedule["exceptional"] = old + result.periods
    await _save(request, ext, {"schedule": schedule})
    return web.json_response({
        "added": len(result.periods), "warnings": result.warnings,
        "schedule_enabled": bool(schedule.get("enabled", True)),
        "user": _user_json(board, ext, account(request).role),
    })  # fmt: skip


# ---- where calls go -----------------------------------------------------------------------


def _parse_at(text: str | None, tz: ZoneInfo, board: Dashboard) -> datetime:
    from b2bua.rules import local_instant

    if not text:
        return datetime.fromtimestamp(board.now(), UTC)
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "validation", "at: not a date and time (2026-07-01T10:00)",
                       [{"field": "at", "reason": "expected ISO 8601, e.g. 2026-07-01T10:00"}]
                       ) from None
    return local_instant(when, tz) if when.tzinfo is None else when


async def trace(request: web.Request) -> web.Response:
    """Test a call: where a call from `caller` at `at` (local time by default) goes, and why."""
    ext = user_extension(request)
    board = dashboard(request)
    table = board.server.rulebook.table
    tz = table.zone(ext)
    caller = request.query.get("caller", "").strip()
    if len(caller) > 64:
        raise ApiError(422, "validation", "caller: too long",
                       [{"field": "caller", "reason": "at most 64 characters"}])
    when = _parse_at(request.query.get("at"), tz, board)
    decision = table.decide(ext, caller, when)
    body = decision.to_json()
    body["description"] = decision.destination.describe()
    body["at"] = when.astimezone(tz).isoformat(timespec="minutes")
    body["caller"] = caller
    return web.json_response(body)


def week_json(table: Any, ext: str, caller: str, monday: date) -> dict[str, Any]:
    from b2bua.rules import local_instant
    from b2bua.rules.week import sample_week

    week = sample_week(table, ext, caller, monday)
    tz = table.zone(ext)
    index = {id(o): i for i, o in enumerate(week.outcomes)}
    outcomes: list[dict[str, Any]] = []
    for o in week.outcomes:
        destination = None
        for d, row in enumerate(week.cells):
            for h, cell in enumerate(row):
                if cell is o and destination is None:
                    start = datetime.combine(week.days[d], datetime.min.time()) + timedelta(
                        minutes=30 * h
                    )
                    for m in range(30):
                        dec = table.decide(ext, caller, local_instant(start + timedelta(minutes=m), tz))
                        if (dec.rule, dec.rule_name, dec.destination.describe()) == (
                            o.rule, o.rule_name, o.destination
                        ):
                            destination = dec.destination.to_config_dict()
                            break
        outcomes.append({
            "rule": o.rule, "rule_name": o.rule_name, "description": o.destination,
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
            return date.fromisoformat(text)
        except ValueError:
            raise ApiError(422, "validation", "start: not a date (YYYY-MM-DD)",
                           [{"field": "start", "reason": "expected YYYY-MM-DD"}]) from None
    today = datetime.fromtimestamp(board.now(), UTC).astimezone(tz).date()
    return today - timedelta(days=today.weekday())


async def week(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    table = board.server.rulebook.table
    caller = request.query.get("caller", "").strip()[:64]
    monday = _monday(request, board, table.zone(ext))
    data = await board.worker.run(worker.week, board.config, ext,
                                  "" if caller == "*" else caller, monday)
    return web.json_response(data)


async def week_svg(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    table = board.server.rulebook.table
    caller = request.query.get("caller", "").strip()[:64]
    monday = _monday(request, board, table.zone(ext))
    svg = await board.worker.run(worker.week_svg, board.config, ext,
                                 "" if caller == "*" else caller, monday)
    return web.Response(text=svg, content_type="image/svg+xml")


async def calls(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        limit = 50
    tz = ZoneInfo(_user(board, ext).tz)
    records = board.server.recorder.last(limit, ext)
    out = []
    for r in records:
        row = r.to_dict()
        row["started_at"] = iso(r.started, tz)
        row["duration"] = round(r.ended - (r.answered or r.started), 1) if r.answered else 0
        out.append(row)
    return web.json_response({"calls": out})


# ---- choices for the forms ------------------------------------------------------------------


async def options(request: web.Request) -> web.Response:
    board = dashboard(request)
    config = board.config
    return web.json_response({
        "device_types": list(DEVICE_TYPES),
        "destination_kinds": ["devices", "voicemail", "extension", "mobile", "external",
                              "system", "busy", "announcement"],
        "weekdays": list(WEEKDAYS),
        "max_exceptions": MAX_EXCEPTIONS,
        "music": sorted(SHIPPED_MUSIC | {m.name for m in config.music}),
        "announcements": sorted(SHIPPED_PROMPTS | {a.name for a in config.announcements}),
        "colleagues": [{"extension": u.extension, "name": u.name} for u in config.users],
        "system_extensions": [
            {"extension": s.extension, "name": s.name} for s in config.system_extensions
        ],
        "languages": ["fr", "en"],
        "default_language": config.server.language,
    })  # fmt: skip


def valid_extension(ext: str) -> bool:
    return bool(_EXT.match(ext))
