"""The sounds of `b2bua export --out FILE.toml` and `b2bua import FILE.toml`.

Theory of operation. An exported installation is a TOML file and, beside it, a folder of the
same name ending in `.audio` (`backup.toml`, `backup.audio/`):

    backup.audio/music/<class>/NN-<file>          every hold-music file the configuration names
    backup.audio/announcements/<name>.<ext>       every announcement: the file's, the uploaded
                                                  ones and each user's own absence.EXT
    backup.audio/greetings/<ext>.wav              each user's voicemail greeting
    backup.audio/manifest.json                    what the TOML cannot say: display labels and
                                                  owners of announcements, and the greetings

The TOML names its music and announcement files with paths relative to itself
(`backup.audio/announcements/absence.1001.wav`), so it is a configuration `b2bua check` and
`b2bua run` read as they are, and the pair can be moved together anywhere. Export builds the
folder under a temporary name and swaps it in, then writes the TOML atomically.

Import makes the music, announcements and greetings of FILE the stored ones of this installation
(what the dashboard would have stored), except the names this installation's own TOML declares,
which stay the file's. Every sound is decoded by ffmpeg first: one that does not decode refuses
the whole import and nothing is written. The sounds are written under new names in `data_dir`,
then the rows are replaced in one transaction, then the sound library is brought up to date and
the files of what was replaced are removed: a crash leaves either the old rows or the new ones,
each with its files (a running server that missed a sound makes it at its next start).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b2bua.config import Config
from b2bua.settings import UPLOADS_DIR, MusicUpload, config_to_raw, raw_to_toml
from b2bua.settings.announcements import AnnouncementUpload, own_name, stored_announcements
from b2bua.settings.voicemail import greeting_file
from b2bua.tenants.names import scoped

__all__ = ["ImportPlan", "audio_folder", "plan_import", "write_export"]

FORMAT = 1
MANIFEST = "manifest.json"
GREETINGS = "greetings"
ANNOUNCEMENTS = Path(UPLOADS_DIR) / "announcements"
MAX_LABEL = 80
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def audio_folder(toml: Path) -> Path:
    """The folder of sounds beside an exported file: `backup.toml` -> `backup.audio`."""
    return toml.with_name(toml.stem + ".audio")


def _safe(name: str) -> str:
    return _SAFE.sub("_", name).strip("._-")[:60] or "sound"


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


# ---- export ----------------------------------------------------------------------------------


def write_export(config: Config, conn: Any, out: Path, header: str, tenant: str = ""
                 ) -> list[str]:
    """Write `config` (the effective configuration) to `out` and its sounds to
    `audio_folder(out)`; `conn` is the settings database (None without one); `tenant` the
    company exported (docs/tenants.md: its announcements' labels and its greetings). Returns
    notes about what could not be carried (a file the configuration names that does not
    exist)."""
    out = out.resolve()
    folder = audio_folder(out)
    data_dir = Path(config.server.data_dir)
    raw = config_to_raw(config)
    notes: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=out.parent))
    try:
        for i, music in enumerate(config.music):
            files = []
            for j, path in enumerate(music.files):
                if not path.is_file():
                    notes.append(f"music {music.name!r}: {path} not found: named as it is")
                    files.append(str(path))
                    continue
                relative = f"music/{_safe(music.name)}/{j + 1:02d}-{_safe(path.name)}"
                _copy(path, tmp / relative)
                files.append(f"{folder.name}/{relative}")
            raw["music"][i]["files"] = files
        for i, ann in enumerate(config.announcements):
            if not ann.file.is_file():
                notes.append(f"announcement {ann.name!r}: {ann.file} not found: named as it is")
                continue
            relative = f"announcements/{_safe(ann.name)}{ann.file.suffix.lower() or '.wav'}"
            _copy(ann.file, tmp / relative)
            raw["announcements"][i]["file"] = f"{folder.name}/{relative}"
        rows = ({r.name: r for r in stored_announcements(conn, tenant)} if conn is not None
                else {})
        labels = {a.name: {"label": rows[a.name].label, "owner": rows[a.name].owner}
                  for a in config.announcements if a.name in rows}
        greetings = {}
        for user in config.users:
            greeting = greeting_file(data_dir, scoped(str(user.extension), tenant))
            if greeting.is_file():
                relative = f"greetings/{_safe(user.extension)}.wav"
                _copy(greeting, tmp / relative)
                greetings[user.extension] = relative
        manifest = {"format": FORMAT, "announcements": labels, "greetings": greetings}
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n",
                                    encoding="utf-8")
        _swap(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    from media.library import atomic_write

    atomic_write(out, raw_to_toml(raw, header).encode("utf-8"))
    return notes


def _swap(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---- import ----------------------------------------------------------------------------------


@dataclass
class ImportPlan:
    """What `b2bua import` stores besides the users: each sound decoded already."""

    music: dict[str, list[Path]] = field(default_factory=dict)  # class -> source files
    announcements: dict[str, tuple[Path, bytes, str | None, str | None]] = field(
        default_factory=dict)  # name -> (source, 8 kHz PCM, label, owner)
    greetings: dict[str, bytes] | None = None  # ext -> PCM; None: not in the file (kept)
    notes: list[str] = field(default_factory=list)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # in the new files' names

    def music_uploads(self, now: float) -> list[MusicUpload]:
        """The rows naming the files `store` will write."""
        return [MusicUpload(name, tuple(str(p) for p in self._music_targets(name, files)),
                            files[0].name if files else None, None, now, "import")
                for name, files in self.music.items()]

    def announcement_rows(self, now: float) -> list[AnnouncementUpload]:
        return [AnnouncementUpload(name, label, owner, str(self._announcement_target(name)),
                                   source.name, round(len(pcm) / 16000, 1), now, "import")
                for name, (source, pcm, label, owner) in self.announcements.items()]

    def _music_targets(self, name: str, files: Sequence[Path]) -> list[Path]:
        return [Path(UPLOADS_DIR) / "music" / name
                / f"{j + 1:02d}-{self.tag}-{re.sub(r'^[0-9]{2}-', '', _safe(f.name))}"
                for j, f in enumerate(files)]

    def _announcement_target(self, name: str) -> Path:
        return ANNOUNCEMENTS / f"{name}-{self.tag}.wav"

    def write_files(self, data_dir: Path) -> None:
        """Before the rows: the uploads under names no one uses yet (nothing replaced); on a
        failure, what was written is removed."""
        from media.library import atomic_write, write_wav_atomic

        try:
            for name, files in self.music.items():
                for source, target in zip(files, self._music_targets(name, files), strict=True):
                    atomic_write(data_dir / target, source.read_bytes())
            for name, (_source, pcm, _label, _owner) in self.announcements.items():
                write_wav_atomic(data_dir / self._announcement_target(name), pcm)
        except BaseException:
            self.remove_files(data_dir)
            raise

    def remove_files(self, data_dir: Path) -> None:
        """Undo `write_files` (the rows were not stored)."""
        for name, files in self.music.items():
            for target in self._music_targets(name, files):
                (data_dir / target).unlink(missing_ok=True)
        for name in self.announcements:
            (data_dir / self._announcement_target(name)).unlink(missing_ok=True)

    async def apply(self, data_dir: Path, old_music: Sequence[MusicUpload],
                    old_announcements: Sequence[AnnouncementUpload], declared: set[str]) -> None:
        """After the rows: the sound library and the greetings; then what was replaced goes.
        `declared`: the announcement names of this installation's TOML (their sounds stay)."""
        from media.errors import MediaError
        from media.library import SoundLibrary, write_wav_atomic

        library = SoundLibrary(data_dir, recover=False)
        for name, files in self.music.items():
            await library.import_music(name, [data_dir / t for t in self._music_targets(name, files)])
        for name, (_source, pcm, _label, _owner) in self.announcements.items():
            await library.store_prompt(name, pcm)
        if self.greetings is not None:
            folder = data_dir / GREETINGS
            for ext, pcm in self.greetings.items():
                write_wav_atomic(folder / f"{ext}.wav", pcm)
            for path in folder.glob("*.wav") if folder.is_dir() else ():
                if path.stem not in self.greetings:
                    path.unlink(missing_ok=True)
        kept = {str(t) for name, files in self.music.items()
                for t in self._music_targets(name, files)}
        for upload in old_music:
            for f in upload.files:
                if f not in kept:
                    with contextlib.suppress(OSError):
                        (data_dir / f).unlink()
            if upload.name not in self.music:
                with contextlib.suppress(MediaError, OSError):
                    library.delete_music(upload.name)
                with contextlib.suppress(OSError):
                    (data_dir / UPLOADS_DIR / "music" / upload.name).rmdir()
        for row in old_announcements:
            (data_dir / row.file).unlink(missing_ok=True)
            if row.name not in self.announcements and row.name not in declared:
                with contextlib.suppress(MediaError, OSError):
                    library.delete_prompt(row.name)


def _manifest(file: Path) -> Mapping[str, Any] | None:
    path = audio_folder(file.resolve()) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a manifest this version reads (format {FORMAT})")
    return data


async def plan_import(base: Config, source: Config, file: Path,
                      users: set[str]) -> ImportPlan:
    """Every sound FILE brings that `base` (this installation's TOML) does not declare itself,
    decoded; `users`: the extensions the import leaves. ValueError naming the first file that
    cannot be used (nothing is written)."""
    from media.errors import MediaError
    from media.library import SoundLibrary

    plan = ImportPlan()
    library = SoundLibrary(Path(base.server.data_dir), recover=False)
    manifest = _manifest(file)
    labels: Mapping[str, Any] = (manifest or {}).get("announcements") or {}

    async def decode(what: str, path: Path) -> bytes:
        try:
            pcm: bytes = await library.decode(path)
        except MediaError as exc:
            raise ValueError(f"{what}: {exc}") from None
        return pcm

    base_music = {m.name for m in base.music}
    for music in source.music:
        if music.name in base_music:
            continue
        for path in music.files:
            await decode(f"music {music.name!r}", path)
        plan.music[music.name] = list(music.files)
    declared = {a.name for a in base.announcements}
    for ann in source.announcements:
        if ann.name in declared:
            plan.notes.append(f"announcement {ann.name!r}: this installation's file declares it:"
                              " kept as it is")
            continue
        pcm = await decode(f"announcement {ann.name!r}", ann.file)
        entry = labels.get(ann.name)
        info: Mapping[str, Any] = entry if isinstance(entry, dict) else {}
        label = info.get("label") if isinstance(info.get("label"), str) else None
        owner = info.get("owner") if isinstance(info.get("owner"), str) else None
        prefix, dot, ext = ann.name.partition(".")
        if owner is None and dot and prefix == "absence" and own_name(ext) == ann.name:
            owner = ext
        if owner is not None and owner not in users:
            owner = None
        plan.announcements[ann.name] = (ann.file, pcm, label[:MAX_LABEL] if label else None,
                                        owner)
    if manifest is None:
        plan.notes.append(f"no {audio_folder(file).name}/{MANIFEST} beside {file.name}: voicemail"
                          " greetings are left as they are and announcements keep no label")
        return plan
    greetings = manifest.get("greetings") or {}
    if not isinstance(greetings, dict):
        raise ValueError(f"{MANIFEST}: greetings: expected a table")
    folder = audio_folder(file.resolve())
    plan.greetings = {}
    for ext, relative in sorted(greetings.items()):
        path = (folder / str(relative)).resolve()
        if not path.is_relative_to(folder):
            raise ValueError(f"{MANIFEST}: greeting of {ext}: {relative} is outside {folder.name}")
        if ext not in users:
            plan.notes.append(f"greeting of {ext}: no such user: left out")
            continue
        plan.greetings[ext] = await decode(f"greeting of {ext}", path)
    return plan

