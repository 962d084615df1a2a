"""The sound library: hold-music classes and prompts as ready G.711 frames.

Theory of operation. A `Sound` is a sequence of 20 ms frames (160 bytes at 8 kHz) in both PCMU
and PCMA, so playing it costs one `sendto` per packet and no encoding. Sounds are decoded once:

- uploads (WAV, MP3, OGG, FLAC, anything ffmpeg reads) go through an ffmpeg subprocess (asyncio,
  off the event loop) to 8 kHz mono s16le, are checked (size before decoding, length after), then
  encoded to both laws and written; a refused upload raises `MediaError` with the reason.
- on disk each stored sound is a directory of pieces, `NN-<stem>-pcmu.g711` and
  `NN-<stem>-pcma.g711` (raw G.711, no header), played in NN order. A piece with only one law on
  disk gets the other by transcoding when loaded; a `.wav` piece (8 kHz mono 16-bit) is encoded
  when loaded.
- writes are atomic: every file is written to a temporary name in its directory, fsynced and
  renamed, and a whole sound is built in a temporary directory that then replaces the old one
  (a crash leaves either the old or the new sound; leftovers are cleaned at start).

Layout under `data_dir`:
    music/<class>/NN-<stem>-pcmu.g711, -pcma.g711, manifest.json
    prompts/<lang>/<name>/NN-<stem>-pcm?.g711        (<lang> is "any" for language-neutral)
Shipped defaults (`media/sounds/`):
    music/default/NN-<title>-pcmu.g711
    prompts/<lang>/<name>.wav                        (digits are digit_0 ... digit_9)
A stored sound hides a shipped one of the same name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import uuid
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from media.errors import MediaError
from media.g711 import PCMA, PCMU, alaw_to_ulaw, ulaw_to_alaw

__all__ = [
    "FRAME_BYTES",
    "SHIPPED_DIR",
    "Sound",
    "SoundLibrary",
    "atomic_write",
    "write_wav_atomic",
]

SAMPLE_RATE = 8000
FRAME_BYTES = 160  # 20 ms of G.711 at 8 kHz
SHIPPED_DIR = Path(__file__).resolve().parent / "sounds"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PIECE = re.compile(r"^(?P<stem>.+?)(?:-(?P<law>pcmu|pcma)\.g711|\.wav)$")


@dataclass(frozen=True, slots=True)
class Sound:
    """A sound as 20 ms G.711 frames, in both laws."""

    name: str
    pcmu: tuple[bytes, ...]
    pcma: tuple[bytes, ...]

    def frames(self, codec: str) -> tuple[bytes, ...]:
        """The frames for an SDP encoding name ("PCMU" or "PCMA")."""
        name = codec.upper()
        if name == "PCMU":
            return self.pcmu
        if name == "PCMA":
            return self.pcma
        raise MediaError(f"no frames of sound {self.name!r} for codec {codec}")

    @property
    def duration(self) -> float:
        return len(self.pcmu) * FRAME_BYTES / SAMPLE_RATE

    @classmethod
    def from_linear(cls, name: str, pcm: bytes) -> Sound:
        """From 8 kHz mono s16le; the last frame is padded with silence."""
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        pad = -len(pcm) % (2 * FRAME_BYTES)
        pcm += b"\x00" * pad
        return cls(name, _split(PCMU.encode(pcm)), _split(PCMA.encode(pcm)))

    @classmethod
    def from_g711(cls, name: str, pcmu: bytes | None, pcma: bytes | None) -> Sound:
        """From raw mu-law and/or A-law bytes (the missing law is transcoded)."""
        if pcmu is None and pcma is None:
            raise MediaError(f"sound {name!r} has no audio")
        if pcmu is None:
            assert pcma is not None
            pcmu = alaw_to_ulaw(pcma)
        if pcma is None:
            pcma = ulaw_to_alaw(pcmu)
        if len(pcmu) != len(pcma):
            raise MediaError(f"sound {name!r}: PCMU and PCMA pieces differ in length")
        return cls(name, _split(pcmu, PCMU.silence), _split(pcma, PCMA.silence))

    @classmethod
    def from_wav(cls, name: str, path: Path | str) -> Sound:
        """From an 8 kHz mono 16-bit WAV file (e.g. a recorded greeting); MediaError otherwise
        (use `SoundLibrary.decode` for anything else)."""
        return cls.from_linear(name, _read_wav(Path(path)))

    @classmethod
    def silence(cls, seconds: float, name: str = "silence") -> Sound:
        n = max(0, round(seconds * SAMPLE_RATE / FRAME_BYTES))
        return cls(name, (bytes([PCMU.silence]) * FRAME_BYTES,) * n,
                   (bytes([PCMA.silence]) * FRAME_BYTES,) * n)  # fmt: skip

    @classmethod
    def concat(cls, name: str, sounds: Sequence[Sound]) -> Sound:
        return cls(
            name,
            tuple(f for s in sounds for f in s.pcmu),
            tuple(f for s in sounds for f in s.pcma),
        )


def _split(data: bytes, silence: int = 0) -> tuple[bytes, ...]:
    if len(data) % FRAME_BYTES:
        data += bytes([silence]) * (-len(data) % FRAME_BYTES)
    return tuple(data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES))


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise MediaError(f"invalid {kind} name {name!r}: use 1-64 letters, digits, '_', '-' or '.'")
    return name


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_wav_atomic(path: Path, pcm: bytes) -> None:
    """Write 8 kHz mono s16le audio as a WAV file, atomically."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    atomic_write(path, buf.getvalue())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_wav(path: Path) -> bytes:
    if not path.is_file():
        raise MediaError(f"{path.name}: no such file")
    try:
        with wave.open(str(path), "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, SAMPLE_RATE):
                raise MediaError(f"{path.name}: expected 8 kHz mono 16-bit WAV")
            return w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise MediaError(f"{path.name}: not a readable WAV file ({e})") from None


def _load_dir(name: str, directory: Path) -> Sound:
    """All the pieces of a stored sound directory, in file-name order."""
    pieces: dict[str, dict[str, Path]] = {}
    for entry in sorted(directory.iterdir()):
        m = _PIECE.match(entry.name)
        if m and entry.is_file():
            pieces.setdefault(m["stem"], {})[m["law"] or "wav"] = entry
    sounds = []
    for stem, files in sorted(pieces.items()):
        if "pcmu" in files or "pcma" in files:
            pcmu = files["pcmu"].read_bytes() if "pcmu" in files else None
            pcma = files["pcma"].read_bytes() if "pcma" in files else None
            sounds.append(Sound.from_g711(stem, pcmu, pcma))
        else:
            sounds.append(Sound.from_linear(stem, _read_wav(files["wav"])))
    if not sounds:
        raise MediaError(f"sound {name!r} has no audio files in {directory}")
    return Sound.concat(name, sounds)


def _nothing(name: str) -> None:
    pass


class SoundLibrary:
    """Hold-music classes and prompts, shipped and uploaded, cached as `Sound`s."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        shipped_dir: Path | str = SHIPPED_DIR,
        language: str = "fr",
        max_upload_bytes: int = 50 * 1024 * 1024,
        max_seconds: float = 900.0,
        ffmpeg: str = "ffmpeg",
        decode_timeout: float = 120.0,
        recover: bool = True,
    ) -> None:
        """`recover`: undo what a crash left half-stored (not in a worker that starts while
        the first one may be storing)."""
        self.data_dir = Path(data_dir)
        self.shipped_dir = Path(shipped_dir)
        self.language = language
        self.max_upload_bytes = max_upload_bytes
        self.max_seconds = max_seconds
        self.ffmpeg = ffmpeg
        self.decode_timeout = decode_timeout
        self._cache: dict[tuple[str, str, str], Sound] = {}
        # Called with a sound's name after it was stored or removed (several workers).
        self.changed: Callable[[str], None] = _nothing
        if recover:
            self._recover()

    # ---- lookup -----------------------------------------------------------------------------

    def music_classes(self) -> list[str]:
        """The names of every hold-music class, shipped and uploaded."""
        names: set[str] = set()
        for base in (self.data_dir / "music", self.shipped_dir / "music"):
            if base.is_dir():
                names.update(p.name for p in base.iterdir() if p.is_dir() and _NAME.match(p.name))
        return sorted(names)

    def has_music(self, name: str) -> bool:
        return _NAME.match(name) is not None and self._music_dir(name) is not None

    def music(self, name: str) -> Sound:
        """A hold-music class: all its pieces in order, as one sound (the player loops it)."""
        _check_name("music class", name)
        key = ("music", "", name)
        sound = self._cache.get(key)
        if sound is None:
            directory = self._music_dir(name)
            if directory is None:
                raise MediaError(f"no hold-music class {name!r}")
            sound = self._cache[key] = _load_dir(name, directory)
        return sound

    def prompt(self, name: str, language: str | None = None) -> Sound:
        """A prompt: uploaded for the language, uploaded language-neutral, shipped for the
        language, shipped in the library's default language, in that order."""
        _check_name("prompt", name)
        lang = language or self.language
        key = ("prompt", lang, name)
        sound = self._cache.get(key)
        if sound is not None:
            return sound
        for directory in (
            self.data_dir / "prompts" / lang / name,
            self.data_dir / "prompts" / "any" / name,
        ):
            if directory.is_dir():
                sound = _load_dir(name, directory)
                break
        else:
            for wav in (
                self.shipped_dir / "prompts" / lang / f"{name}.wav",
                self.shipped_dir / "prompts" / self.language / f"{name}.wav",
            ):
                if wav.is_file():
                    sound = Sound.from_linear(name, _read_wav(wav))
                    break
            else:
                raise MediaError(f"no prompt {name!r} for language {lang!r}")
        self._cache[key] = sound
        return sound

    def locate_prompt(self, extension: str, language: str | None = None) -> Sound:
        """ "Please wait while we locate extension" followed by the extension's digits, each
        spoken from the digit_0 ... digit_9 prompts (other characters are skipped)."""
        parts = [self.prompt("locate", language), Sound.silence(0.1)]
        for ch in extension:
            if ch.isdigit():
                parts.append(self.prompt(f"digit_{ch}", language))
        return Sound.concat(f"locate {extension}", parts)

    def _music_dir(self, name: str) -> Path | None:
        for base in (self.data_dir / "music", self.shipped_dir / "music"):
            if (base / name).is_dir():
                return base / name
        return None

    async def preload(self) -> None:
        """Load every hold-music class into the cache, in a thread."""

        def load() -> None:
            for name in self.music_classes():
                self.music(name)

        await asyncio.to_thread(load)

    # ---- import -----------------------------------------------------------------------------

    async def decode(self, source: Path | str | bytes) -> bytes:
        """Decode an audio file (path or content) to 8 kHz mono s16le with ffmpeg.

        Raises `MediaError` if it is too big, not audio, empty or longer than `max_seconds`."""
        if isinstance(source, bytes):
            size, label, stdin, arg = len(source), "upload", source, "pipe:0"
        else:
            path = Path(source)
            label = path.name
            try:
                size = path.stat().st_size
            except OSError as e:
                raise MediaError(f"{label}: cannot read ({e.strerror})") from None
            stdin, arg = None, str(path)
        if size > self.max_upload_bytes:
            raise MediaError(
                f"{label}: file too big ({size} bytes; the limit is {self.max_upload_bytes})"
            )
        if size == 0:
            raise MediaError(f"{label}: empty file")
        args = [
            self.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", arg,
            "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
            "-t", f"{self.max_seconds + 0.5:.3f}", "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1",
        ]  # fmt: skip
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise MediaError(f"cannot decode audio: {self.ffmpeg!r} is not installed") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.decode_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise MediaError(
                f"{label}: decoding took longer than {self.decode_timeout} s"
            ) from None
        if proc.returncode != 0 or not out:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            # ffmpeg names its input by its path: the message names the file only.
            why = detail[-1].replace(arg, label)[:200] if detail else "no audio stream"
            raise MediaError(f"{label}: not a readable audio file ({why})")
        seconds = len(out) / 2 / SAMPLE_RATE
        if seconds > self.max_seconds:
            raise MediaError(f"{label}: too long (more than {self.max_seconds:g} s)")
        return out

    async def import_music(self, name: str, sources: Sequence[Path | str | bytes]) -> Sound:
        """Create or replace hold-music class `name` with `sources`, played in that order.
        Nothing is written unless every source decodes."""
        _check_name("music class", name)
        if not sources:
            raise MediaError(f"music class {name!r}: no files given")
        pcms = [await self.decode(s) for s in sources]
        stems = [_stem(s, i) for i, s in enumerate(sources)]
        manifest = {"sources": await asyncio.to_thread(lambda: [_source_info(s) for s in sources])}
        target = self.data_dir / "music" / name
        sound = await asyncio.to_thread(self._store, name, target, pcms, stems, manifest)
        self._cache.pop(("music", "", name), None)
        self.changed(name)
        return sound

    async def ensure_music(self, name: str, sources: Sequence[Path | str]) -> Sound:
        """`import_music` unless the stored class was made from these very files already."""
        _check_name("music class", name)
        manifest = self.data_dir / "music" / name / "manifest.json"
        try:
            stored = json.loads(manifest.read_text())
            wanted = [await asyncio.to_thread(_source_info, s) for s in sources]
            if stored.get("sources") == wanted:
                return self.music(name)
        except (OSError, ValueError):
            pass
        return await self.import_music(name, sources)

    async def ensure_prompt(self, name: str, source: Path | str, origin: str) -> Sound:
        """The language-neutral prompt `name` decoded from file `source`, unless the stored one
        was made from this very file (name and SHA-256) by the same `origin` already. `origin`
        says who declared it ("config": the configuration file), kept in its manifest for
        `stored_prompts`."""
        _check_name("prompt", name)
        target = self.data_dir / "prompts" / "any" / name
        wanted = {"sources": [await asyncio.to_thread(_source_info, source)], "origin": origin}
        try:
            if json.loads((target / "manifest.json").read_text()) == wanted:
                return await asyncio.to_thread(_load_dir, name, target)
        except (OSError, ValueError, MediaError):
            pass
        pcm = await self.decode(source)
        stem = _stem(source, 0)
        sound = await asyncio.to_thread(self._store, name, target, [pcm], [stem], wanted)
        self._forget_prompt(name)
        return sound

    def stored_prompts(self) -> dict[str, str | None]:
        """The stored language-neutral prompts, each with the `origin` `ensure_prompt` gave it
        (None: stored otherwise)."""
        base = self.data_dir / "prompts" / "any"
        out: dict[str, str | None] = {}
        for directory in sorted(base.iterdir()) if base.is_dir() else ():
            if not directory.is_dir() or not _NAME.match(directory.name):
                continue
            try:
                manifest = json.loads((directory / "manifest.json").read_text())
            except (OSError, ValueError):
                manifest = None
            origin = manifest.get("origin") if isinstance(manifest, dict) else None
            out[directory.name] = origin if isinstance(origin, str) else None
        return out

    async def import_prompt(
        self, name: str, source: Path | str | bytes, language: str | None = None
    ) -> Sound:
        """Create or replace prompt `name` (for `language`, or for every language if None)."""
        _check_name("prompt", name)
        pcm = await self.decode(source)
        return await self.store_prompt(name, pcm, language, _stem(source, 0))

    async def store_prompt(
        self, name: str, pcm: bytes, language: str | None = None, stem: str = "upload0"
    ) -> Sound:
        """Store already decoded 8 kHz mono s16le audio (`decode`) as prompt `name`, replacing
        it atomically; for `language`, or for every language if None."""
        _check_name("prompt", name)
        lang = _check_name("language", language) if language else "any"
        target = self.data_dir / "prompts" / lang / name
        sound = await asyncio.to_thread(self._store, name, target, [pcm], [stem], {"sources": []})
        self._forget_prompt(name)
        return sound

    def has_prompt(self, name: str, language: str | None = None) -> bool:
        """Whether `prompt(name, language)` finds a sound (stored or shipped)."""
        if _NAME.match(name) is None or ".." in name:
            return False
        lang = language or self.language
        return any(p.exists() for p in (
            self.data_dir / "prompts" / lang / name,
            self.data_dir / "prompts" / "any" / name,
            self.shipped_dir / "prompts" / lang / f"{name}.wav",
            self.shipped_dir / "prompts" / self.language / f"{name}.wav",
        ))  # fmt: skip

    def delete_prompt(self, name: str, language: str | None = None) -> None:
        """Remove a stored prompt (for `language`, or the language-neutral one if None); a
        shipped prompt of the same name is heard again."""
        _check_name("prompt", name)
        lang = _check_name("language", language) if language else "any"
        target = self.data_dir / "prompts" / lang / name
        if not target.is_dir():
            raise MediaError(f"no stored prompt {name!r}")
        old = target.with_name(f".old-{name}-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        shutil.rmtree(old)
        self._forget_prompt(name)

    def _forget_prompt(self, name: str) -> None:
        self._cache = {
            k: v for k, v in self._cache.items() if not (k[0] == "prompt" and k[2] == name)
        }
        self.changed(name)

    def delete_music(self, name: str) -> None:
        """Remove an uploaded music class (shipped classes cannot be removed)."""
        _check_name("music class", name)
        target = self.data_dir / "music" / name
        if not target.is_dir():
            raise MediaError(f"no uploaded hold-music class {name!r}")
        old = target.with_name(f".old-{name}-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        shutil.rmtree(old)
        self._cache.pop(("music", "", name), None)
        self.changed(name)

    def forget(self) -> None:
        """Drop every cached sound: another process changed the stored ones."""
        self._cache.clear()

    def _store(
        self,
        name: str,
        target: Path,
        pcms: list[bytes],
        stems: list[str],
        manifest: Mapping[str, object],
    ) -> Sound:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            sounds = []
            for i, (pcm, stem) in enumerate(zip(pcms, stems, strict=True)):
                sound = Sound.from_linear(stem, pcm)
                sounds.append(sound)
                for law, frames in (("pcmu", sound.pcmu), ("pcma", sound.pcma)):
                    atomic_write(tmp / f"{i:02d}-{stem}-{law}.g711", b"".join(frames))
            atomic_write(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
            _swap_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Sound.concat(name, sounds)

    def _recover(self) -> None:
        """Undo what a crash in the middle of `_store` may have left."""
        for base in (self.data_dir / "music", *(self.data_dir / "prompts").glob("*")):
            if not base.is_dir():
                continue
            for entry in base.iterdir():
                if entry.name.startswith(".tmp-"):
                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.name.startswith(".old-"):
                    original = base / entry.name[5:].rsplit("-", 1)[0]
                    if original.exists():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        os.rename(entry, original)


def _swap_dir(new: Path, target: Path) -> None:
    """Put directory `new` in place of `target` (which may exist)."""
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    os.rename(new, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _stem(source: Path | str | bytes, index: int) -> str:
    if isinstance(source, bytes):
        return f"upload{index}"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).stem).strip("._-")[:40]
    return stem or f"piece{index}"


def _source_info(source: Path | str | bytes) -> dict[str, object]:
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    name = "" if isinstance(source, bytes) else Path(source).name
    return {"name": name, "sha256": hashlib.sha256(data).hexdigest()}
