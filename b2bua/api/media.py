"""REST handlers of sounds: hold-music classes (list, listen, upload, delete) and voicemail
(list, listen, download, mark read, delete)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import shutil
import uuid
import wave
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import BaseModel

from b2bua.api.common import (
    ApiError,
    Dashboard,
    Issue,
    account,
    body_json,
    dashboard,
    invalid,
    iso,
    msg,
    parse_model,
    require_admin,
    user_extension,
)
from b2bua.config import SHIPPED_MUSIC
from b2bua.settings import (
    UPLOADS_DIR,
    MusicUpload,
    get_voicemail,
    list_voicemail,
    voicemail_file,
)

log = logging.getLogger("b2bua.api")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SUFFIXES = frozenset({".wav", ".mp3", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".webm"})
PREVIEW_SECONDS = 300


def audio_problem(reason: str, library: Any) -> tuple[str, dict[str, Any]]:
    """The issue code of an audio file the media library refused (its reason names files
    on the server: never shown as such)."""
    if "too long" in reason:
        return "audio_too_long", {"seconds": f"{getattr(library, 'max_seconds', 0):g}"}
    if "too big" in reason:
        mb = max(1, int(getattr(library, "max_upload_bytes", 0)) // (1024 * 1024))
        return "file_too_large", {"max_mb": mb}
    if "empty file" in reason:
        return "empty_file", {}
    if "took longer" in reason:
        return "audio_timeout", {}
    if "is not installed" in reason:
        return "audio_unavailable", {}
    return "not_audio", {}


def _music_dir(board: Dashboard) -> Path:
    return (board.data_dir / UPLOADS_DIR / "music").resolve()


# ---- hold music -------------------------------------------------------------------------------


async def list_music(request: web.Request) -> web.Response:
    board = dashboard(request)
    acc = account(request)
    uploads = {u.name: u for u in board.store.uploads()}
    used: dict[str, list[str]] = {}
    for user in board.config.users:
        used.setdefault(user.hold_music, []).append(user.extension)
    classes = []
    for name in sorted(SHIPPED_MUSIC | {m.name for m in board.config.music}):
        u = uploads.get(name)
        row: dict[str, Any] = {
            "name": name,
            "shipped": name in SHIPPED_MUSIC,
            "uploaded": u is not None,
            "original": u.original if u else None,
            "duration": u.duration if u else None,
            "uploaded_at": iso(u.uploaded_at) if u else None,
        }
        if acc.role == "admin":
            row["used_by"] = used.get(name, [])
        classes.append(row)
    return web.json_response({"classes": classes})


async def _sound(board: Dashboard, name: str) -> Any:
    library = board.library
    if library.has_music(name):
        return await asyncio.to_thread(library.music, name)
    for music in board.config.music:
        if music.name == name:
            return await library.ensure_music(name, list(music.files))
    raise ApiError(404, "not_found", msg("no_music", name=name))


def _wav(sound: Any) -> bytes:
    from media.g711 import PCMU

    frames = sound.pcmu[: PREVIEW_SECONDS * 50]
    pcm = PCMU.decode(b"".join(frames))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return buf.getvalue()


async def music_audio(request: web.Request) -> web.Response:
    """The class as a WAV file the browser can play (its first five minutes)."""
    from media.errors import MediaError

    account(request)
    board = dashboard(request)
    name = request.match_info["name"]
    if name not in SHIPPED_MUSIC | {m.name for m in board.config.music}:
        raise ApiError(404, "not_found", msg("no_music", name=name))
    key = (name, board.store.revision())
    data = board.wav_cache.get(key)
    if data is None:
        try:
            sound = await _sound(board, name)
        except MediaError as exc:
            log.warning("hold music %r cannot be played: %s", name, exc)
            raise ApiError(409, "unplayable", msg("unplayable")) from None
        data = await asyncio.to_thread(_wav, sound)
        if len(board.wav_cache) > 8:
            board.wav_cache.clear()
        board.wav_cache[key] = data
    return web.Response(body=data, content_type="audio/wav",
                        headers={"Cache-Control": "private, max-age=60"})


async def _read_upload(request: web.Request, board: Dashboard) -> tuple[str, str, Path]:
    """Stream the multipart body (fields `name`, `file`) to a temporary file inside the data
    directory; returns (class name, original file name, temporary path)."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", msg("send_multipart"))
    limit = int(getattr(board.library, "max_upload_bytes", 50 * 1024 * 1024))
    tmp_dir = _music_dir(board) / ".incoming"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / uuid.uuid4().hex
    name: str | None = None
    original = "upload"
    size = 0
    got_file = False
    reader = await request.multipart()
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "name":
                name = (await part.text()).strip()
            elif part.name == "file":
                got_file = True
                original = Path((part.filename or "upload").replace("\\", "/")).name[:128]
                with tmp.open("wb") as f:
                    while chunk := await part.read_chunk(256 * 1024):
                        size += len(chunk)
                        if size > limit:
                            mb = max(1, limit // (1024 * 1024))
                            raise ApiError(413, "too_large", None,
                                           [Issue("file_too_large", "file", {"max_mb": mb})])
                        f.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    issues = []
    if not name:
        issues.append(Issue("name_required", "name"))
    elif not _NAME.match(name):
        issues.append(Issue("invalid_name", "name", {"value": name}))
    elif name in SHIPPED_MUSIC:
        issues.append(Issue("name_shipped", "name", {"name": name}))
    elif name in {m.name for m in board.config.music} and name not in {
        u.name for u in board.store.uploads()
    }:
        issues.append(Issue("name_in_file", "name", {"name": name}))
    if not got_file:
        issues.append(Issue("file_required", "file"))
    elif size == 0:
        issues.append(Issue("empty_file", "file"))
    if issues:
        tmp.unlink(missing_ok=True)
        raise invalid(*issues)
    assert name is not None
    return name, original, tmp


async def upload_music(request: web.Request) -> web.Response:
    """Admin: upload a file as hold-music class `name` (created or replaced). The file is
    converted (ffmpeg) before the answer; a file that is not audio, too long or too big is
    refused with the reason and nothing is kept."""
    from media.errors import MediaError

    acc = require_admin(request)
    board = dashboard(request)
    name, original, tmp = await _read_upload(request, board)
    suffix = Path(original).suffix.lower()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(original).stem).strip("_-")[:40] or "upload"
    target_dir = _music_dir(board) / name
    target = (target_dir / f"{stem}{suffix if suffix in _SUFFIXES else '.bin'}").resolve()
    if target.parent != (_music_dir(board) / name).resolve():
        tmp.unlink(missing_ok=True)
        raise invalid(Issue("invalid_name", "name", {"value": name}))
    # Staged under the final file name: the library's manifest names the source by its base
    # name, so a later `ensure_music` over the configured file finds the class up to date.
    staging = _music_dir(board) / f".new-{name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    staged = staging / target.name
    tmp.rename(staged)
    try:
        sound = await board.library.import_music(name, [staged])
    except MediaError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        log.info("hold-music upload %r refused: %s", original, exc)
        code, params = audio_problem(str(exc), board.library)
        raise ApiError(422, "bad_audio", None, [Issue(code, "file", params)]) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if target_dir.exists():
        old = target_dir.with_name(f".old-{name}-{uuid.uuid4().hex[:8]}")
        target_dir.rename(old)
    staging.rename(target_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    relative = str(target.relative_to(board.data_dir.resolve()))
    upload = MusicUpload(name, (relative,), original, round(sound.duration, 1), board.now(),
                         acc.login)
    store = board.store

    def build() -> tuple[dict[str, Any], Any]:
        return store.music_candidate(upload), upload

    def save(row: Any, config: Any) -> None:
        store.save_music(row, None, config, board.install)

    await board.change(build, save, None)
    board.wav_cache.clear()
    return web.json_response(
        {"name": name, "duration": upload.duration, "original": original}, status=201
    )


async def delete_music(request: web.Request) -> web.Response:
    from media.errors import MediaError

    require_admin(request)
    board = dashboard(request)
    name = request.match_info["name"]
    store = board.store
    if name not in {u.name for u in store.uploads()}:
        raise ApiError(404, "not_found", msg("no_upload", name=name))

    def build() -> tuple[dict[str, Any], Any]:
        return store.music_candidate(None, remove=name), None

    def save(row: Any, config: Any) -> None:
        store.save_music(None, name, config, board.install)

    try:
        await board.change(build, save, None)
    except ApiError as exc:
        raise ApiError(409, "in_use", msg("music_in_use", name=name), exc.issues) from None
    target = _music_dir(board) / name
    if target.is_dir() and target.resolve().parent == _music_dir(board):
        shutil.rmtree(target, ignore_errors=True)
    try:
        board.library.delete_music(name)
    except MediaError:
        pass
    board.wav_cache.clear()
    return web.json_response({"ok": True})


# ---- voicemail -------------------------------------------------------------------------------


async def list_voicemail_h(request: web.Request) -> web.Response:
    ext = user_extension(request)
    board = dashboard(request)
    from zoneinfo import ZoneInfo

    user = board.config.user(ext)
    tz = ZoneInfo(user.tz) if user else None
    messages = list_voicemail(board.store.conn, board.box(ext))
    rows = []
    for m in messages:
        row = m.to_json()
        row["received"] = iso(m.received_at, tz)
        rows.append(row)
    return web.json_response(
        {"unread": sum(1 for m in messages if not m.read), "messages": rows}
    )


def _message(request: web.Request) -> tuple[Dashboard, Any]:
    ext = user_extension(request)
    board = dashboard(request)
    try:
        vm_id = int(request.match_info["id"])
    except ValueError:
        vm_id = -1
    vm = get_voicemail(board.store.conn, board.box(ext), vm_id)
    if vm is None:
        raise ApiError(404, "not_found", msg("no_voicemail"))
    return board, vm


async def voicemail_audio(request: web.Request) -> web.StreamResponse:
    board, vm = _message(request)
    path = voicemail_file(board.root_dir, vm)
    if path is None or not path.is_file():
        raise ApiError(410, "gone", msg("recording_missing"))
    headers = {"Cache-Control": "private, no-store"}
    if request.query.get("download"):
        caller = re.sub(r"[^0-9A-Za-z+_-]", "", vm.caller)[:32] or "unknown"
        headers["Content-Disposition"] = (
            f'attachment; filename="voicemail-{vm.id}-{caller}{path.suffix}"'
        )
    response = web.FileResponse(path, headers=headers)
    response.content_type = "audio/wav" if path.suffix.lower() == ".wav" else "application/octet-stream"
    return response


class VoicemailPatch(BaseModel):
    read: bool


async def patch_voicemail(request: web.Request) -> web.Response:
    board, vm = _message(request)
    data = parse_model(VoicemailPatch, await body_json(request))
    board.store.conn.execute("UPDATE voicemail SET read = ? WHERE id = ?", (int(data.read), vm.id))
    return web.json_response({"id": vm.id, "read": data.read})


async def delete_voicemail(request: web.Request) -> web.Response:
    board, vm = _message(request)
    path = voicemail_file(board.root_dir, vm)
    board.store.conn.execute("DELETE FROM voicemail WHERE id = ?", (vm.id,))
    if path is not None:
        path.unlink(missing_ok=True)
    return web.json_response({"ok": True})
