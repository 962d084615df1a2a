"""The sound library: shipped sounds, imports through ffmpeg, refusals, atomic storage."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from media.errors import MediaError
from media.g711 import PCMA, PCMU
from media.library import FRAME_BYTES, SHIPPED_DIR, Sound, SoundLibrary, atomic_write

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def tone(freq: float, seconds: float, rate: int = 8000, amp: float = 0.5) -> bytes:
    n = int(seconds * rate)
    return struct.pack(
        f"<{n}h", *(round(amp * 32767 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    )


def write_wav(path: Path, pcm: bytes, rate: int = 8000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def dominant_freq(pcm: bytes, rate: int = 8000) -> float:
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    crossings = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    return crossings * rate / len(samples)


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1 s 440 Hz tone as 44.1 kHz stereo WAV, and as MP3, OGG and FLAC made from it."""
    d = tmp_path_factory.mktemp("uploads")
    n = 44100
    mono = tone(440, 1.0, rate=44100)
    stereo = b"".join(mono[2 * i : 2 * i + 2] * 2 for i in range(n))
    files = {"wav": write_wav(d / "tone.wav", stereo, rate=44100, channels=2)}
    if shutil.which("ffmpeg"):
        for ext in ("mp3", "ogg", "flac"):
            out = d / f"tone.{ext}"
            subprocess.run(["ffmpeg", "-v", "error", "-i", str(files["wav"]), str(out)], check=True)
            files[ext] = out
    (d / "notes.txt").write_text("this is not audio\n" * 50)
    files["text"] = d / "notes.txt"
    return files


def test_shipped_default_music() -> None:
    lib = SoundLibrary("/nonexistent-data-dir")
    assert "default" in lib.music_classes()
    music = lib.music("default")
    assert 100 < music.duration < 200
    assert len(music.pcmu) == len(music.pcma)
    assert {len(f) for f in music.pcmu} == {FRAME_BYTES}
    assert lib.music("default") is music  # cached
    pieces = sorted((SHIPPED_DIR / "music" / "default").glob("*-pcmu.g711"))
    assert len(pieces) >= 3
    assert sum(-(-p.stat().st_size // FRAME_BYTES) for p in pieces) == len(music.pcmu)
    # PCMA frames carry the same audio as the PCMU ones
    u = struct.unpack("<160h", PCMU.decode(music.pcmu[2000]))
    a = struct.unpack("<160h", PCMA.decode(music.pcma[2000]))
    assert max(abs(x - y) for x, y in zip(u, a, strict=True)) < 600


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_shipped_prompts(lang: str) -> None:
    lib = SoundLibrary("/nonexistent-data-dir", language=lang)
    for name in ("locate", "unavailable", "voicemail_greeting", "closed", "absence"):
        sound = lib.prompt(name)
        assert 1.0 < sound.duration < 8.0, name
    beep = lib.prompt("beep")
    assert beep.duration == pytest.approx(0.4)
    assert dominant_freq(PCMU.decode(b"".join(beep.pcmu))) == pytest.approx(1000, rel=0.01)
    located = lib.locate_prompt("1001")
    digits = [lib.prompt(f"digit_{d}") for d in "1001"]
    assert len(located.pcmu) == len(lib.prompt("locate").pcmu) + 5 + sum(
        len(d.pcmu) for d in digits
    )


def test_prompt_language_fallback_and_errors() -> None:
    lib = SoundLibrary("/nonexistent-data-dir", language="fr")
    assert lib.prompt("closed", "de").pcmu == lib.prompt("closed", "fr").pcmu
    with pytest.raises(MediaError, match="no prompt"):
        lib.prompt("nope")
    with pytest.raises(MediaError, match="no hold-music class"):
        lib.music("nope")
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(MediaError, match="invalid"):
            lib.music(bad)
        with pytest.raises(MediaError, match="invalid"):
            lib.prompt(bad)


def test_sound_building() -> None:
    s = Sound.from_linear("t", b"\x00\x00" * 200)  # 1.25 frames: padded with silence
    assert s.pcmu == (b"\xff" * 160, b"\xff" * 160) and s.pcma == (b"\xd5" * 160,) * 2
    g = Sound.from_g711("g", None, b"\xd5" * 170)
    assert len(g.pcmu) == 2 and g.pcmu[1][10:] == b"\xff" * 150  # A-law 0xd5 is +8, not 0
    with pytest.raises(MediaError):
        Sound.from_g711("g", None, None)
    with pytest.raises(MediaError):
        Sound.from_g711("g", b"\xff" * 160, b"\xd5" * 320)
    assert Sound.silence(0.1).duration == pytest.approx(0.1)
    assert Sound.concat("c", [s, g]).duration == pytest.approx(0.08)
    with pytest.raises(MediaError):
        s.frames("G722")


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["wav", "mp3", "ogg", "flac"])
async def test_import_music_formats(kind: str, uploads: dict[str, Path], tmp_path: Path) -> None:
    lib = SoundLibrary(tmp_path)
    sound = await lib.import_music("promo", [uploads[kind]])
    assert sound.duration == pytest.approx(1.0, abs=0.08)
    assert dominant_freq(PCMU.decode(b"".join(sound.pcmu[5:45]))) == pytest.approx(440, rel=0.02)
    names = sorted(p.name for p in (tmp_path / "music" / "promo").iterdir())
    assert names == ["00-tone-pcma.g711", "00-tone-pcmu.g711", "manifest.json"]
    assert SoundLibrary(tmp_path).music("promo") == lib.music("promo")
    assert "promo" in lib.music_classes() and lib.has_music("promo")
    assert leftovers(tmp_path) == []


@needs_ffmpeg
async def test_import_bytes_and_several_pieces_in_order(
    uploads: dict[str, Path], tmp_path: Path
) -> None:
    lib = SoundLibrary(tmp_path)
    short = write_wav(tmp_path / "short.wav", tone(1000, 0.2))
    sound = await lib.import_music("jingle", [uploads["flac"].read_bytes(), short])
    assert len(sound.pcmu) == 50 + 10
    assert dominant_freq(PCMU.decode(b"".join(sound.pcmu[51:59]))) == pytest.approx(1000, rel=0.02)


@needs_ffmpeg
@pytest.mark.parametrize(
    ("source", "limits", "reason"),
    [
        ("text", {}, "not a readable audio file"),
        ("wav", {"max_upload_bytes": 1000}, "too big"),
        ("mp3", {"max_seconds": 0.5}, "too long"),
        ("garbage", {}, "not a readable audio file"),
        ("empty", {}, "empty"),
        ("missing", {}, "cannot read"),
    ],
)
async def test_refused_uploads_leave_nothing(
    source: str, limits: dict[str, float], reason: str, uploads: dict[str, Path], tmp_path: Path
) -> None:
    lib = SoundLibrary(tmp_path / "data", **limits)  # type: ignore[arg-type]
    src: Path | bytes
    if source == "garbage":
        src = os.urandom(5000)
    elif source == "empty":
        src = b""
    elif source == "missing":
        src = tmp_path / "missing.wav"
    else:
        src = uploads[source]
    with pytest.raises(MediaError, match=reason):
        await lib.import_music("promo", [src])
    assert not (tmp_path / "data" / "music" / "promo").exists()
    assert leftovers(tmp_path) == []


@needs_ffmpeg
async def test_replacing_a_class_is_all_or_nothing(
    uploads: dict[str, Path], tmp_path: Path
) -> None:
    lib = SoundLibrary(tmp_path)
    first = await lib.import_music("promo", [uploads["wav"]])
    with pytest.raises(MediaError):
        await lib.import_music("promo", [uploads["ogg"], uploads["text"]])
    assert lib.music("promo") == first
    short = write_wav(tmp_path / "beep.wav", tone(1000, 0.2))
    second = await lib.import_music("promo", [short])
    assert lib.music("promo") == second and second.duration == pytest.approx(0.2)
    assert (
        sorted(p.name for p in (tmp_path / "music" / "promo").iterdir())[0] == "00-beep-pcma.g711"
    )
    assert leftovers(tmp_path) == []
    lib.delete_music("promo")
    assert not lib.has_music("promo")
    with pytest.raises(MediaError):
        lib.delete_music("default")  # shipped


@needs_ffmpeg
async def test_ensure_music_skips_unchanged_sources(
    uploads: dict[str, Path], tmp_path: Path
) -> None:
    lib = SoundLibrary(tmp_path)
    await lib.ensure_music("promo", [uploads["wav"]])
    manifest = tmp_path / "music" / "promo" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    await SoundLibrary(tmp_path).ensure_music("promo", [uploads["wav"]])
    assert manifest.stat().st_mtime_ns == before
    await lib.ensure_music("promo", [uploads["flac"]])
    assert manifest.stat().st_mtime_ns != before


@needs_ffmpeg
async def test_ensure_prompt_decodes_a_declared_file_once(
    uploads: dict[str, Path], tmp_path: Path
) -> None:
    lib = SoundLibrary(tmp_path, language="fr")
    shipped = lib.prompt("absence", "en")
    sound = await lib.ensure_prompt("absence", uploads["mp3"], "config")
    assert lib.prompt("absence", "en").pcmu == sound.pcmu != shipped.pcmu
    assert abs(dominant_freq(PCMU.decode(b"".join(sound.pcmu))) - 440) < 15
    manifest = tmp_path / "prompts" / "any" / "absence" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    again = await SoundLibrary(tmp_path).ensure_prompt("absence", uploads["mp3"], "config")
    assert manifest.stat().st_mtime_ns == before and again.pcmu == sound.pcmu
    await lib.ensure_prompt("promo", uploads["wav"], "upload")
    assert lib.stored_prompts() == {"absence": "config", "promo": "upload"}
    with pytest.raises(MediaError, match=r"notes\.txt: not a readable audio file"):
        await lib.ensure_prompt("bad", uploads["text"], "config")
    assert not (tmp_path / "prompts" / "any" / "bad").exists()
    lib.delete_prompt("absence")
    assert lib.prompt("absence", "en").pcmu == shipped.pcmu
    assert lib.stored_prompts() == {"promo": "upload"}


@needs_ffmpeg
async def test_uploaded_prompt_hides_shipped_one(uploads: dict[str, Path], tmp_path: Path) -> None:
    lib = SoundLibrary(tmp_path, language="fr")
    shipped = lib.prompt("absence", "en")
    sound = await lib.import_prompt("absence", uploads["ogg"])
    assert lib.prompt("absence", "en") == sound != shipped
    assert SoundLibrary(tmp_path).prompt("absence", "fr").pcmu == sound.pcmu
    only_en = await lib.import_prompt("absence", uploads["wav"], language="en")
    assert lib.prompt("absence", "en").pcmu == only_en.pcmu
    assert lib.prompt("absence", "fr").pcmu == sound.pcmu


def test_recovery_of_an_interrupted_swap(tmp_path: Path) -> None:
    music = tmp_path / "music"
    (music / ".tmp-promo-abc").mkdir(parents=True)
    (music / ".tmp-promo-abc" / "00-x-pcmu.g711").write_bytes(b"\xff" * 160)
    (music / ".old-promo-1234abcd").mkdir()
    (music / ".old-promo-1234abcd" / "00-x-pcmu.g711").write_bytes(b"\xff" * 320)
    lib = SoundLibrary(tmp_path)
    assert lib.music("promo").duration == pytest.approx(0.04)
    assert leftovers(tmp_path) == []


def test_atomic_write(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


async def test_missing_ffmpeg_is_a_media_error(tmp_path: Path) -> None:
    lib = SoundLibrary(tmp_path, ffmpeg="/nonexistent/ffmpeg")
    with pytest.raises(MediaError, match="not installed"):
        await lib.decode(b"RIFF....")


def test_sound_from_wav(tmp_path: Path) -> None:
    good = write_wav(tmp_path / "greeting.wav", tone(440, 0.1))
    assert Sound.from_wav("g", good).duration == pytest.approx(0.1)
    bad_rate = write_wav(tmp_path / "cd.wav", tone(440, 0.1, rate=44100), rate=44100)
    with pytest.raises(MediaError, match="8 kHz mono 16-bit"):
        Sound.from_wav("g", bad_rate)
    (tmp_path / "junk.wav").write_bytes(b"RIFFjunk")
    with pytest.raises(MediaError, match="not a readable WAV"):
        Sound.from_wav("g", tmp_path / "junk.wav")
    with pytest.raises(MediaError, match="no such file"):
        Sound.from_wav("g", tmp_path / "missing.wav")


async def test_a_users_own_prompt_is_stored_found_by_name_and_deleted(tmp_path: Path) -> None:
    """A user's own absence message is the prompt `absence.EXT`: what an `announcement`
    destination naming it plays, in every language; deleting it leaves the shipped one."""
    lib = SoundLibrary(tmp_path, language="fr")
    changed: list[str] = []
    lib.changed = changed.append
    assert not lib.has_prompt("absence.1001")
    assert lib.has_prompt("absence")
    pcm = tone(440, 0.5)
    sound = await lib.store_prompt("absence.1001", pcm)
    assert sound.duration == pytest.approx(0.5)
    assert lib.has_prompt("absence.1001", "en")
    assert lib.prompt("absence.1001", "en").pcmu == lib.prompt("absence.1001", "fr").pcmu
    assert SoundLibrary(tmp_path).prompt("absence.1001").pcmu == sound.pcmu  # on disk
    replaced = await lib.store_prompt("absence.1001", tone(880, 1.0))
    assert lib.prompt("absence.1001").duration == pytest.approx(1.0) == replaced.duration
    lib.delete_prompt("absence.1001")
    assert not lib.has_prompt("absence.1001")
    with pytest.raises(MediaError):
        lib.prompt("absence.1001")
    with pytest.raises(MediaError):
        lib.delete_prompt("absence.1001")
    assert changed == ["absence.1001"] * 3
    assert not lib.has_prompt("../absence") and not lib.has_prompt("a..b")


@needs_ffmpeg
async def test_a_refused_file_is_named_without_its_server_path(tmp_path: Path) -> None:
    junk = tmp_path / "deep" / "folder" / "notes.mp3"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"this is not audio " * 100)
    with pytest.raises(MediaError) as err:
        await SoundLibrary(tmp_path).decode(junk)
    assert "notes.mp3" in str(err.value) and str(junk.parent) not in str(err.value)
