"""Announcements: the messages an `announcement` destination plays, and each user's own
absence message and voicemail greeting (REST handlers and their store).

Theory of operation
-------------------
- Shipped prompts (`absence`, `closed`...) come with the media layer, in French and English.
- An administrator uploads an announcement like hold music: an identifier, a display name and
  an audio file. A user uploads or records (the browser's MediaRecorder, WebM/Opus) their own
  absence message and voicemail greeting.
- Every upload is decoded once by ffmpeg (`SoundLibrary.decode`: size, format and length are
  checked there). The result is written atomically twice: as an 8 kHz mono WAV under
  `data_dir/uploads/announcements/` (what `b2bua export` names), and as the library's prompt of
  that name under `data_dir/prompts/any/<name>/`, which is where the media engine finds it when a
  call reaches `{kind = "announcement", message = NAME}` (`SoundLibrary.prompt`).
- Stored announcements are rows of `announcement_uploads`; `merge_announcements` adds them to the
  effective configuration as `[[announcements]]` entries (called by the settings store), so a
  rule may name them and `b2bua check` knows them. A row is added or removed through
  `Dashboard.change`, in the transaction that installs the new configuration; removing one a
  rule still names is refused (409) and nothing is deleted.
- A user's own absence message is the announcement `absence.<extension>` (a name no upload can
  take: uploaded identifiers have no dot). Their greeting is `data_dir/greetings/<ext>.wav`,
  which voicemail plays instead of the standard one (b2bua/calls/media.py).

Errors follow the API's shape (docs/api.md): `{"error", "message", "issues": [{"code", "field",
"message"}]}` with the message in the request's language (`Accept-Language`, French or English).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import uuid
import wave
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from b2bua.api.common import (
    ApiError,
    Dashboard,
    account,
    dashboard,
    iso,
    request_lang,
    require_admin,
    user_extension,
)
from b2bua.config import SHIPPED_PROMPTS
from b2bua.settings.announcements import (
    AnnouncementUpload,
    ensure_schema,
    merge_announcements,
    own_name,
    stored_announcements,
)
from b2bua.store import transaction

log = logging.getLogger("b2bua.api")

UPLOADS = Path("uploads") / "announcements"
GREETINGS = "greetings"
SLOTS = ("absence", "greeting")
# Uploaded identifiers: like hold-music names, no dot (dotted names are users' own messages).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_LABEL = 80
MAX_PERSONAL_SECONDS = 300.0
_SAMPLE_RATE = 8000


def _save_row(conn: sqlite3.Connection, tenant: str, row: AnnouncementUpload | None,
              remove: str | None, apply: Any, config: Any) -> None:
    from b2bua.settings.overrides import bump_revision

    with transaction(conn):
        if remove is not None:
            conn.execute("DELETE FROM announcement_uploads WHERE tenant = ? AND name = ?",
                         (tenant, remove))
        if row is not None:
            conn.execute(
                "INSERT INTO announcement_uploads (tenant, name, label, owner, file, original,"
                " duration, uploaded_at, uploaded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant, name)"
                " DO UPDATE SET label = excluded.label, owner = excluded.owner,"
                " file = excluded.file, original = excluded.original,"
                " duration = excluded.duration, uploaded_at = excluded.uploaded_at,"
                " uploaded_by = excluded.uploaded_by",
                (tenant, row.name, row.label, row.owner, row.file, row.original, row.duration,
                 row.uploaded_at, row.uploaded_by),
            )
        bump_revision(conn, tenant)
        apply(config)


async def _change(board: Dashboard, row: AnnouncementUpload | None, remove: str | None) -> None:
    """Validate the configuration with `row` stored (and `remove` gone) and install it, in the
    transaction that writes the row."""
    store = board.store
    conn = store.conn
    ensure_schema(conn)

    def build() -> tuple[dict[str, Any], Any]:
        current = stored_announcements(conn, board.tenant)
        merged = {(r.name, str(board.data_dir / r.file)) for r in current}
        raw = store.merged_raw()
        raw["announcements"] = [a for a in raw.get("announcements", [])
                                if (a.get("name"), a.get("file")) not in merged]
        gone = {remove, row.name if row is not None else None}
        rows = [r for r in current if r.name not in gone] + ([row] if row is not None else [])
        return merge_announcements(raw, conn, board.data_dir, rows), row

    def save(stored: Any, config: Any) -> None:
        _save_row(conn, board.tenant, stored, remove, board.install, config)

    await board.change(build, save, None)


# ---- messages in the request's language ---------------------------------------------------

_TEXTS: dict[str, tuple[str, str]] = {
    "name_invalid": ("1 à 64 lettres, chiffres, « - » ou « _ », sans espace.",
                     "1 to 64 letters, digits, “-” or “_”, no spaces."),
    "name_taken": ("Ce nom est déjà celui d'une annonce fournie ou du fichier de configuration.",
                   "This name is already a built-in announcement or one of the configuration file."),
    "label_required": ("Donnez un nom affiché à l'annonce.", "Give the announcement a display name."),
    "label_long": (f"{MAX_LABEL} caractères au plus.", f"{MAX_LABEL} characters at most."),
    "file_required": ("Choisissez un fichier audio.", "Choose an audio file."),
    "too_large": ("Fichier trop volumineux (50 Mo au plus).", "File too large (50 MB at most)."),
    "not_audio": ("Ce fichier n'est pas un fichier audio lisible.",
                  "This file is not a readable audio file."),
    "too_long": ("Enregistrement trop long ({max} s au plus).",
                 "Recording too long ({max} s at most)."),
    "empty": ("Le fichier est vide.", "The file is empty."),
    "in_use": ("Cette annonce est utilisée par {users} : choisissez-en une autre dans leurs règles"
               " avant de la supprimer.",
               "This announcement is used by {users}: choose another one in their rules before"
               " deleting it."),
    "own_in_use": ("Ce message est utilisé dans vos règles : choisissez un autre message avant de"
                   " le supprimer.",
                   "This message is used in your rules: choose another message before deleting"
                   " it."),
    "not_found": ("Annonce introuvable.", "No such announcement."),
    "no_message": ("Pas de message enregistré.", "No message recorded."),
    "slot": ("Message inconnu : « absence » ou « greeting ».",
             "Unknown message: “absence” or “greeting”."),
    "multipart": ("Envoyez un formulaire multipart/form-data.", "Send multipart/form-data."),
}


def _lang(request: web.Request) -> str:
    return request_lang(request)


def _text(request: web.Request, key: str, **values: Any) -> str:
    fr, en = _TEXTS[key]
    return (fr if _lang(request) == "fr" else en).format(**values)


# Text key -> (the answer's `error`, the issue's `code`), in the API's vocabulary (docs/api.md).
_CODES: dict[str, tuple[str, str]] = {
    "name_invalid": ("validation", "invalid_format"),
    "name_taken": ("exists", "duplicate_name"),
    "label_required": ("validation", "required"),
    "label_long": ("validation", "too_long"),
    "file_required": ("validation", "file_required"),
    "too_large": ("too_large", "file_too_large"),
    "not_audio": ("bad_audio", "not_audio"),
    "too_long": ("bad_audio", "too_long"),
    "empty": ("bad_audio", "file_required"),
    "in_use": ("in_use", "in_use"),
    "own_in_use": ("in_use", "in_use"),
    "not_found": ("not_found", "not_found"),
    "no_message": ("not_found", "not_found"),
    "slot": ("not_found", "not_found"),
    "multipart": ("unsupported_media_type", "unsupported_media_type"),
}


def _refuse(request: web.Request, status: int, key: str, field: str, **values: Any) -> ApiError:
    message = _text(request, key, **values)
    error, code = _CODES[key]
    sep = " : " if _lang(request) == "fr" else ": "
    summary = f"{field}{sep}{message}" if error == "validation" else message
    return ApiError(status, error, summary, [{"code": code, "field": field, "message": message,
                                             "reason": message}])


# ---- reading uploads -----------------------------------------------------------------------


async def _read_form(request: web.Request, board: Dashboard) -> tuple[dict[str, str], str, Path | None]:
    """The text fields, the file's original name and a temporary copy of the file (None when
    no file part or an empty one), streamed inside the data directory with the size checked."""
    if not request.content_type.startswith("multipart/"):
        raise _refuse(request, 415, "multipart", "file")
    limit = int(getattr(board.library, "max_upload_bytes", 50 * 1024 * 1024))
    tmp_dir = (board.data_dir / UPLOADS / ".incoming").resolve()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / uuid.uuid4().hex
    fields: dict[str, str] = {}
    original = "upload"
    size = 0
    reader = await request.multipart()
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                original = Path((part.filename or "upload").replace("\\", "/")).name[:128]
                with tmp.open("wb") as f:
                    while chunk := await part.read_chunk(256 * 1024):
                        size += len(chunk)
                        if size > limit:
                            raise _refuse(request, 413, "too_large", "file")
                        f.write(chunk)
            elif part.name:
                fields[part.name] = (await part.text()).strip()[:1000]
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if size == 0:
        tmp.unlink(missing_ok=True)
        return fields, original, None
    return fields, original, tmp


async def _decode(request: web.Request, board: Dashboard, tmp: Path, max_seconds: float) -> bytes:
    """8 kHz mono s16le audio of the upload, or a 422 naming the field `file` (never a path)."""
    from media.errors import MediaError

    try:
        pcm: bytes = await board.library.decode(tmp)
    except MediaError as exc:
        text = str(exc)
        key = "too_long" if "too long" in text else "too_large" if "too big" in text else (
            "empty" if "empty" in text else "not_audio")
        raise _refuse(request, 422, key, "file", max=int(board.library.max_seconds)) from None
    finally:
        tmp.unlink(missing_ok=True)
    if len(pcm) / 2 / _SAMPLE_RATE > max_seconds:
        raise _refuse(request, 422, "too_long", "file", max=int(max_seconds))
    return pcm


def _write_wav(path: Path, pcm: bytes) -> None:
    from media.library import write_wav_atomic

    write_wav_atomic(path, pcm)


def _wav_bytes(pcm: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(_SAMPLE_RATE)
        w.writeframes(pcm)
    return buf.getvalue()


def _wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as w:
            return round(w.getnframes() / w.getframerate(), 1)
    except (OSError, wave.Error, EOFError, ZeroDivisionError):
        return None


# ---- who uses what -------------------------------------------------------------------------


def _messages(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        if value.get("kind") == "announcement" and isinstance(value.get("message"), str):
            yield value["message"]
        for v in value.values():
            yield from _messages(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _messages(v)


def _used_by(board: Dashboard) -> dict[str, list[str]]:
    from b2bua.settings import user_to_raw

    used: dict[str, list[str]] = {}
    for user in board.config.users:
        for name in set(_messages(user_to_raw(user))):
            used.setdefault(name, []).append(user.extension)
    return used


# ---- handlers: shared announcements ---------------------------------------------------------


def _entries(board: Dashboard, uploads: list[AnnouncementUpload], language: str,
             owner: str | None, admin: bool) -> list[dict[str, Any]]:
    """Every announcement one may choose (runs in a thread: loading shipped prompts reads
    files; `uploads` were read on the loop, which owns the SQLite connection)."""
    library = board.library
    used = _used_by(board) if admin else {}
    out: list[dict[str, Any]] = []
    for name in sorted(SHIPPED_PROMPTS):
        duration = None
        with contextlib.suppress(Exception):
            duration = round(library.prompt(name, language).duration, 1)
        out.append({"name": name, "kind": "shipped", "label": None, "duration": duration})
    declared = {a.name for a in board.config.announcements} - {u.name for u in uploads}
    if not admin:  # another user's own absence message, declared in the file, is not offered
        declared = {n for n in declared if not (n.startswith("absence.") and n[8:] != owner
                                                and board.config.user(n[8:]) is not None)}
    for name in sorted(declared - SHIPPED_PROMPTS):
        out.append({"name": name, "kind": "configured", "label": None, "duration": None})
    for u in uploads:
        if u.owner is None:
            out.append({"name": u.name, "kind": "uploaded", "label": u.label,
                        "duration": u.duration, "uploaded_at": iso(u.uploaded_at)})
        elif u.owner == owner:
            out.append({"name": u.name, "kind": "own", "slot": "absence", "label": None,
                        "duration": u.duration, "uploaded_at": iso(u.uploaded_at)})
    if admin:
        for row in out:
            row["used_by"] = used.get(row["name"], [])
    return out


async def list_shared(request: web.Request) -> web.Response:
    """Shipped, configured and uploaded announcements (admins also see who uses each)."""
    acc = account(request)
    board = dashboard(request)
    language = request.query.get("lang") or _lang(request)
    uploads = stored_announcements(board.store.conn, board.tenant)
    rows = await asyncio.to_thread(_entries, board, uploads, language, None, acc.role == "admin")
    return web.json_response({"announcements": rows})


async def upload(request: web.Request) -> web.Response:
    """Admin: upload (or replace) announcement `name` shown as `label`; converted before the
    answer. Refused with the reason, and nothing kept, when the file is not audio, too big or
    too long, or the name is taken."""
    acc = require_admin(request)
    board = dashboard(request)
    fields, original, tmp = await _read_form(request, board)
    name = fields.get("name", "")
    label = fields.get("label", "")
    issues: list[ApiError] = []
    uploads = {u.name for u in stored_announcements(board.store.conn, board.tenant)}
    if not _NAME.match(name):
        issues.append(_refuse(request, 422, "name_invalid", "name"))
    elif name in SHIPPED_PROMPTS or (
        name in {a.name for a in board.config.announcements} and name not in uploads
    ):
        issues.append(_refuse(request, 409, "name_taken", "name"))
    if not label:
        issues.append(_refuse(request, 422, "label_required", "label"))
    elif len(label) > MAX_LABEL:
        issues.append(_refuse(request, 422, "label_long", "label"))
    if tmp is None:
        issues.append(_refuse(request, 422, "file_required", "file"))
    if issues:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        first = issues[0]
        raise ApiError(first.status if len(issues) == 1 else 422,
                       first.code if len(issues) == 1 else "validation", first.message,
                       [i for e in issues for i in e.issues])
    assert tmp is not None
    pcm = await _decode(request, board, tmp, float(board.library.max_seconds))
    row = await _store(board, name, label, None, pcm, original, acc.login, replacing=name in uploads)
    return web.json_response({"name": name, "label": label, "duration": row.duration,
                              "original": original}, status=201)


async def _store(board: Dashboard, name: str, label: str | None, owner: str | None, pcm: bytes,
                 original: str, by: str, *, replacing: bool) -> AnnouncementUpload:
    """Write the WAV and the prompt, then store the row and install the configuration; on a
    refusal, what this wrote is removed and the previous announcement stays as it was."""
    from media.errors import MediaError

    relative = UPLOADS / f"{name}-{uuid.uuid4().hex[:8]}.wav"
    path = board.data_dir / relative
    await asyncio.to_thread(_write_wav, path, pcm)
    old = next((r for r in stored_announcements(board.store.conn, board.tenant) if r.name == name), None)
    previous = None
    if replacing and board.library.has_prompt(name):
        previous = await asyncio.to_thread(_prompt_pcm, board, name)
    try:
        sound = await board.library.store_prompt(name, pcm, None, "upload0")
        row = AnnouncementUpload(name, label, owner, str(relative), original,
                                 round(sound.duration, 1), board.now(), by)
        await _change(board, row, None)
    except BaseException:
        path.unlink(missing_ok=True)
        with contextlib.suppress(MediaError, OSError):
            if previous is not None:
                await board.library.store_prompt(name, previous, None, "upload0")
            else:
                board.library.delete_prompt(name)
        raise
    if old is not None and old.file != str(relative):
        (board.data_dir / old.file).unlink(missing_ok=True)
    return row


def _prompt_pcm(board: Dashboard, name: str) -> bytes:
    from media.g711 import PCMU

    sound = board.library.prompt(name)
    return bytes(PCMU.decode(b"".join(sound.pcmu)))


async def _remove(request: web.Request, board: Dashboard, row: AnnouncementUpload,
                  in_use_key: str) -> None:
    from media.errors import MediaError

    used = _used_by(board).get(row.name, [])
    if used:
        raise _refuse(request, 409, in_use_key, "name", users=", ".join(used))
    try:
        await _change(board, None, row.name)
    except ApiError as exc:
        raise _refuse(request, 409, in_use_key, "name", users="?") from exc
    (board.data_dir / row.file).unlink(missing_ok=True)
    with contextlib.suppress(MediaError, OSError):
        board.library.delete_prompt(row.name)


async def delete(request: web.Request) -> web.Response:
    """Admin: delete an uploaded announcement (409 while a rule names it)."""
    require_admin(request)
    board = dashboard(request)
    name = request.match_info["name"]
    row = next((r for r in stored_announcements(board.store.conn, board.tenant)
                if r.name == name and r.owner is None), None)
    if row is None:
        raise _refuse(request, 404, "not_found", "name")
    await _remove(request, board, row, "in_use")
    return web.json_response({"ok": True})


# ---- handlers: a user's announcements and own messages -----------------------------------


def _own(board: Dashboard, ext: str) -> dict[str, Any]:
    out: dict[str, Any] = {"absence": None, "greeting": None}
    for r in stored_announcements(board.store.conn, board.tenant):
        if r.owner == ext and r.name == own_name(ext):
            out["absence"] = {"name": r.name, "duration": r.duration,
                              "updated_at": iso(r.uploaded_at)}
    greeting = board.data_dir / GREETINGS / f"{ext}.wav"
    if greeting.is_file():
        out["greeting"] = {"name": None, "duration": _wav_seconds(greeting),
                           "updated_at": iso(greeting.stat().st_mtime)}
    return out


async def list_for_user(request: web.Request) -> web.Response:
    """The announcements this user may choose (shipped, configured, uploaded, their own) and
    their own messages."""
    ext = user_extension(request)
    board = dashboard(request)
    acc = account(request)
    user = board.config.user(ext)
    language = request.query.get("lang") or getattr(user, "language", None) or _lang(request)
    uploads = stored_announcements(board.store.conn, board.tenant)
    rows = await asyncio.to_thread(_entries, board, uploads, language, ext, acc.role == "admin")
    return web.json_response({"announcements": rows, "own": _own(board, ext)})


def _wav_response(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="audio/wav",
                        headers={"Cache-Control": "private, no-store"})


async def audio(request: web.Request) -> web.Response:
    """An announcement as WAV, in `lang` (default the user's language) for shipped ones."""
    from media.errors import MediaError
    from media.g711 import PCMU

    ext = user_extension(request)
    board = dashboard(request)
    name = request.match_info["name"]
    if "." in name and name != own_name(ext):
        raise _refuse(request, 404, "not_found", "name")
    user = board.config.user(ext)
    language = request.query.get("lang") or getattr(user, "language", None)
    if language not in ("fr", "en", None):
        language = None
    known = SHIPPED_PROMPTS | {a.name for a in board.config.announcements} | {
        r.name for r in stored_announcements(board.store.conn, board.tenant)}
    if name not in known:
        raise _refuse(request, 404, "not_found", "name")
    try:
        sound = await asyncio.to_thread(board.library.prompt, name, language)
    except MediaError:
        raise _refuse(request, 404, "not_found", "name") from None
    pcm = await asyncio.to_thread(lambda: PCMU.decode(b"".join(sound.pcmu[:300 * 50])))
    return _wav_response(_wav_bytes(bytes(pcm)))


def _slot(request: web.Request) -> str:
    slot = request.match_info["slot"]
    if slot not in SLOTS:
        raise _refuse(request, 404, "slot", "slot")
    return slot


async def put_message(request: web.Request) -> web.Response:
    """Upload or record the user's own absence message or voicemail greeting (multipart:
    `file`, any audio ffmpeg reads, such as the browser's WebM/Opus recording)."""
    ext = user_extension(request)
    slot = _slot(request)
    acc = account(request)
    board = dashboard(request)
    _fields, original, tmp = await _read_form(request, board)
    if tmp is None:
        raise _refuse(request, 422, "file_required", "file")
    pcm = await _decode(request, board, tmp, MAX_PERSONAL_SECONDS)
    seconds = round(len(pcm) / 2 / _SAMPLE_RATE, 1)
    if slot == "greeting":
        await asyncio.to_thread(_write_wav, board.data_dir / GREETINGS / f"{ext}.wav", pcm)
    else:
        name = own_name(ext)
        exists = any(r.name == name for r in stored_announcements(board.store.conn, board.tenant))
        await _store(board, name, None, ext, pcm, original, acc.login, replacing=exists)
    return web.json_response({"slot": slot, "duration": seconds, "own": _own(board, ext),
                              "warnings": []})


async def delete_message(request: web.Request) -> web.Response:
    """Delete the user's own message; the standard one plays again. An absence message a rule
    still names is kept (409)."""
    ext = user_extension(request)
    slot = _slot(request)
    board = dashboard(request)
    if slot == "greeting":
        path = board.data_dir / GREETINGS / f"{ext}.wav"
        if not path.is_file():
            raise _refuse(request, 404, "no_message", "slot")
        path.unlink()
    else:
        row = next((r for r in stored_announcements(board.store.conn, board.tenant)
                    if r.name == own_name(ext)), None)
        if row is None:
            raise _refuse(request, 404, "no_message", "slot")
        await _remove(request, board, row, "own_in_use")
    return web.json_response({"ok": True, "own": _own(board, ext), "warnings": []})


async def message_audio(request: web.Request) -> web.StreamResponse:
    ext = user_extension(request)
    slot = _slot(request)
    board = dashboard(request)
    if slot == "greeting":
        path = board.data_dir / GREETINGS / f"{ext}.wav"
    else:
        row = next((r for r in stored_announcements(board.store.conn, board.tenant)
                    if r.name == own_name(ext)), None)
        path = board.data_dir / row.file if row is not None else board.data_dir / "-"
    if not path.is_file():
        raise _refuse(request, 404, "no_message", "slot")
    return web.FileResponse(path, headers={"Cache-Control": "private, no-store",
                                           "Content-Type": "audio/wav"})
