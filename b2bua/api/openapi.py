"""The route table of the REST API and the OpenAPI 3.1 document generated from it
(`GET /api/openapi.json`): one list, so the document cannot drift from what is served."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from b2bua.api import announcements, auth, media, tenants, trunks, users
from b2bua.config import User

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    access: str = "user"  # public | user (own extension, or admin) | admin
    body: type[BaseModel] | str | None = None  # a model, or a media type / schema name
    returns: str = "application/json"
    query: tuple[tuple[str, str], ...] = ()
    form: tuple[str, ...] = ("name", "file")  # multipart fields ("file" is the upload)


UE = "/api/users/{ext}"

ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/login", auth.login, "Sign in; sets the session cookie, returns the CSRF "
          "token", "public", auth.LoginRequest),
    Route("POST", "/api/logout", auth.logout, "Sign out"),
    Route("GET", "/api/session", auth.session, "The signed-in account and its CSRF token"),
    Route("POST", "/api/password", auth.change_own_password, "Change one's own dashboard password",
          body=auth.PasswordChange),
    Route("GET", "/api/options", users.options, "Choices for the forms (device types, music, "
          "announcements, colleagues...)"),
    Route("GET", "/api/users", users.list_users, "Users (an admin sees all, a user themself)"),
    Route("POST", "/api/users", users.create_user, "Create a user", "admin", users.NewUser),
    Route("GET", UE, users.get_user, "A user's settings (CONTRACT.md shape, no secret), the keys "
          "stored over the file, warnings"),
    Route("PATCH", UE, users.patch_user, "Change top-level settings of a user; each key given "
          "replaces the current value (null removes it)", body="UserPatch"),
    Route("DELETE", UE, users.delete_user, "Delete a user", "admin"),
    Route("DELETE", UE + "/settings", users.reset_user, "Forget a user's stored settings (back to "
          "the TOML file's)", "admin"),
    Route("PUT", UE + "/password", auth.set_user_password, "Set a user's dashboard password "
          "(null: back to the SIP secret)", "admin", auth.PasswordSet),
    Route("GET", UE + "/devices", users.list_devices, "Devices with their live registration "
          "state"),
    Route("POST", UE + "/devices", users.add_device, "Add a device", body=users.DeviceIn),
    Route("PATCH", UE + "/devices/{n}", users.patch_device, "Rename or retype device n (1-based)",
          body=users.DevicePatch),
    Route("DELETE", UE + "/devices/{n}", users.delete_device, "Remove device n"),
    Route("POST", UE + "/devices/{n}/qr", users.device_qr, "A one-time provisioning link for "
          "device n and its QR code (PNG data URL)"),
    Route("GET", UE + "/exceptional.ics", users.export_ics, "Exceptional periods as iCalendar",
          returns="text/calendar"),
    Route("POST", UE + "/exceptional.ics", users.import_ics, "Import exceptional periods from "
          "an iCalendar body", body="text/calendar",
          query=(("mode", "append (default) or replace"),
                 ("destination", "JSON destination for events that carry none"))),
    Route("GET", UE + "/trace", users.trace, "Test a call: destination and why (trace in words, "
          "steps as data)",
          query=(("caller", "caller number"),
                 ("at", "ISO 8601 or DD/MM/YYYY HH:MM; without offset, the user's local time; "
                  "default now"),
                 ("lang", "fr or en (default: Accept-Language, then the user's language)"))),
    Route("GET", UE + "/week", users.week, "Where calls land, half hour by half hour, over a week",
          query=(("caller", "caller number (default any)"),
                 ("start", "first day YYYY-MM-DD or DD/MM/YYYY"), ("lang", "fr or en"))),
    Route("GET", UE + "/week.svg", users.week_svg, "The same week as an SVG picture",
          returns="image/svg+xml", query=(("caller", ""), ("start", ""))),
    Route("GET", UE + "/calls", users.calls, "Call history with each call's decision trace",
          query=(("limit", "1..500, default 50"),
                 ("lang", "fr or en (default: the user's language)"))),
    Route("GET", UE + "/voicemail", media.list_voicemail_h, "Voicemail messages and the unread "
          "count"),
    Route("GET", UE + "/voicemail/{id}/audio", media.voicemail_audio, "A message's recording "
          "(WAV)", returns="audio/wav", query=(("download", "1: as an attachment"),)),
    Route("PATCH", UE + "/voicemail/{id}", media.patch_voicemail, "Mark a message read or unread",
          body=media.VoicemailPatch),
    Route("DELETE", UE + "/voicemail/{id}", media.delete_voicemail, "Delete a message"),
    Route("GET", "/api/trunks", trunks.list_trunks, "Trunks: registration, health and lines in "
          "use, as `b2bua trunks --json` shows them", "admin"),
    Route("GET", "/api/music", media.list_music, "Hold-music classes (shipped and uploaded)"),
    Route("POST", "/api/music", media.upload_music, "Upload a file as a hold-music class "
          "(multipart: name, file); converted before the answer", "admin", "multipart/form-data"),
    Route("GET", "/api/music/{name}/audio", media.music_audio, "Listen to a class (WAV)",
          returns="audio/wav"),
    Route("DELETE", "/api/music/{name}", media.delete_music, "Delete an uploaded class (refused "
          "while users choose it)", "admin"),
    Route("GET", "/api/announcements", announcements.list_shared, "Announcements: shipped, "
          "configured and uploaded (admins also see who uses each)",
          query=(("lang", "fr or en: durations of shipped prompts in that language"),)),
    Route("POST", "/api/announcements", announcements.upload, "Upload an announcement "
          "(multipart: name, label, file); converted before the answer", "admin",
          "multipart/form-data", form=("name", "label", "file")),
    Route("DELETE", "/api/announcements/{name}", announcements.delete, "Delete an uploaded "
          "announcement (refused while a rule names it)", "admin"),
    Route("GET", UE + "/announcements", announcements.list_for_user, "The announcements this "
          "user may choose, and their own absence message and voicemail greeting"),
    Route("GET", UE + "/announcements/{name}/audio", announcements.audio, "Listen to an "
          "announcement (WAV)", returns="audio/wav", query=(("lang", "fr or en"),)),
    Route("PUT", UE + "/messages/{slot}", announcements.put_message, "Upload or record one's own "
          "message: slot absence (the announcement absence.EXT) or greeting (voicemail)",
          body="multipart/form-data", form=("file",)),
    Route("DELETE", UE + "/messages/{slot}", announcements.delete_message, "Delete one's own "
          "message (absence: refused while a rule names it)"),
    Route("GET", UE + "/messages/{slot}/audio", announcements.message_audio, "Listen to one's "
          "own message (WAV)", returns="audio/wav"),
    Route("GET", "/api/tenants", tenants.list_tenants, "Tenants, with their limits, users, "
          "registered devices and calls in progress (platform administrator)", "admin"),
    Route("POST", "/api/tenants", tenants.create_tenant, "Create a tenant, served at once "
          "(platform administrator)", "admin", tenants.NewTenant),
    Route("GET", "/api/tenants/{domain}", tenants.get_tenant, "A tenant (platform "
          "administrator)", "admin"),
    Route("PATCH", "/api/tenants/{domain}", tenants.change_tenant, "Change a tenant's name, "
          "limits or administrator's password (platform administrator)", "admin",
          tenants.TenantChange),
    Route("DELETE", "/api/tenants/{domain}", tenants.delete_tenant, "Delete a tenant created "
          "from the API (platform administrator)", "admin"),
)

_ISSUE = {
    "type": "object",
    "required": ["code", "field", "message"],
    "properties": {
        "code": {"type": "string", "description": "stable code (docs/api.md)"},
        "field": {"type": "string", "description": "rows counted from 1: schedule.hours[5].end"},
        "message": {"type": "string", "description": "in the request's language"},
        "reason": {"type": "string", "description": "the same as message (older clients)"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "issues": {"type": "array", "items": {"$ref": "#/components/schemas/Issue"}},
    },
}


def _user_patch_schema(defs: dict[str, Any]) -> dict[str, Any]:
    schema = User.model_json_schema(ref_template="#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    props = {k: v for k, v in schema["properties"].items() if k in users.ADMIN_KEYS}
    return {
        "type": "object",
        "description": "Keys a user may change: " + ", ".join(sorted(users.USER_KEYS))
        + "; an admin also: name, secret, timezone. null removes a key.",
        "properties": props,
        "additionalProperties": False,
    }


def build_openapi() -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR, "Issue": _ISSUE}
    components["UserPatch"] = _user_patch_schema(components)
    user_schema = User.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(user_schema.pop("$defs", {}))
    components["User"] = user_schema
    paths: dict[str, Any] = {}
    for r in ROUTES:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": f"{r.method.lower()}_{r.handler.__name__}",
            "responses": {
                "200": {"description": "OK", "content": {r.returns: {}}},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"},
            },
        }
        if r.access == "public":
            op["security"] = []
        if r.access == "admin":
            op["description"] = "Administrators only."
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("ext", "n", "id", "name", "slot")
            if "{" + name + "}" in r.path
        ]
        params += [
            {"name": name, "in": "query", "required": False, "description": text,
             "schema": {"type": "string"}}
            for name, text in r.query
        ]
        if params:
            op["parameters"] = params
        if r.body is not None:
            if r.body == "multipart/form-data":
                content = {r.body: {"schema": {
                    "type": "object",
                    "properties": {
                        f: {"type": "string", "format": "binary"} if f == "file"
                        else {"type": "string"} for f in r.form
                    },
                }}}
            elif isinstance(r.body, str) and "/" in r.body:
                content = {r.body: {"schema": {"type": "string"}}}
            elif isinstance(r.body, str):
                content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.body}"}}}
            else:
                model_schema = r.body.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[r.body.__name__] = model_schema
                content = {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}}}
            op["requestBody"] = {"required": True, "content": content}
        if r.method in auth.UNSAFE and r.access != "public":
            op["parameters"] = [*op.get("parameters", []), {
                "name": auth.CSRF_HEADER, "in": "header", "required": True,
                "schema": {"type": "string"}, "description": "the session's CSRF token",
            }]
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "b2bua dashboard API",
            "version": "1",
            "description": "Everything the dashboard does. Sign in with POST /api/login; send "
            "the session cookie and, on every POST/PUT/PATCH/DELETE, the X-CSRF-Token header. "
            "Errors: {error, message, issues: [{code, field, message}]}; every successful write "
            "answers warnings: [{code, field, message}]. Messages follow ?lang=, then "
            "Accept-Language (fr, en), then the user's language.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {"Error": {"description": "Error", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "securitySchemes": {"session": {"type": "apiKey", "in": "cookie",
                                            "name": auth.COOKIE}},
        },
        "security": [{"session": []}],
    }
