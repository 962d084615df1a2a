"""`b2bua check`, `trace`, `week`, `ics-export` and `ics-import` through the CLI entry point."""

from __future__ import annotations

import json
import re
import struct
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from b2bua.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "conf" / "default.toml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "--config", DEFAULT)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"{DEFAULT}: OK"
    assert "3 users (5 devices), 1 system extension, 1 trunk" in out
    assert (
        "rules compiled: 3 office-hour ranges, 1 exceptional period, 1 caller-ID exception" in out
    )
    assert "no warnings" in out


def test_check_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[server]\ndomain = "d"\n\n[[users]]\nextension = "1001"\nname = "A"\nsecret = "s"\n'
        'forward = { kind = "mobile" }\nring_timeout = 0\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, "check", "--config", str(bad))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{bad}:8: users[0].forward.kind: destination 'mobile' needs the user's mobile number (not set)",
        f"{bad}:9: users[0].ring_timeout: expected greater than or equal to 1 (got 0)",
    ]
    assert all(re.match(r"^\S+:\d+: \S+: .+$", line) for line in err.splitlines())


def test_check_in_french(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[server]\ndomain = "d"\n\n[[users]]\nextension = "1001"\nname = "A"\nsecret = "s"\n'
        'ring_timeout = 0\n  [users.schedule]\n  [[users.schedule.hours]]\n'
        '  start = "09:00"\n  end = "25:00"\n  days = ["mon"]\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, "check", "--config", str(bad), "--lang", "fr")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{bad}:8: users[0].ring_timeout: au moins 1 (reçu : 0)",
        f"{bad}:12: users[0].schedule.hours[0].end: « 25:00 » : l'heure 25 n'existe pas (00 à 23)",
    ]
    bad.write_text(bad.read_text(encoding="utf-8").replace("ring_timeout = 0\n", "")
                   .replace('"25:00"', '"08:00"'), encoding="utf-8")
    code, out, err = run(capsys, "check", "--config", str(bad), "--lang", "fr")
    assert code == 0, err
    assert (
        f"  {bad}:11: users[0].schedule.hours[0].end: Cette plage passe minuit "
        "(09:00 -> 08:00 le lendemain) : est-ce voulu ?"
    ) in out


def test_check_prints_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "w.toml"
    cfg.write_text(
        '[server]\ndomain = "d"\n\n[[users]]\nextension = "1001"\nname = "A"\nsecret = "s"\n'
        "  [users.schedule]\n",
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "check", "--config", str(cfg))
    assert code == 0
    assert "2 warnings:" in out
    assert f"  {cfg}:8: users[0].schedule.hours: schedule enabled with no office hours" in out


def test_trace_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "trace", "--config", DEFAULT, "--to", "1001", "--from", "06 12 34 56 78",
        "--at", "2026-07-01T10:00", "--json", "--lang", "en",
    )  # fmt: skip
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert list(data) == ["destination", "rule", "rule_name", "trace", "steps"]
    assert data["destination"] == {"kind": "mobile", "bounce": True}
    assert (data["rule"], data["rule_name"]) == ("exception", "0612345678")
    assert all(isinstance(line, str) for line in data["trace"])
    assert data["trace"][-1] == "decision: exception '0612345678' -> mobile (bounce)"
    assert len(data["steps"]) == len(data["trace"])
    assert data["steps"][-1] == {
        "code": "decision",
        "params": {"rule": "exception", "rule_name": "0612345678",
                   "destination": {"kind": "mobile", "bounce": True}},
    }  # fmt: skip
    assert out.count("\n") == 1


def test_trace_speaks_the_users_language_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """conf/default.toml's users speak French (server.language): so does their trace, unless
    --lang says otherwise; the steps are the same data in both."""
    argv = ("trace", "--config", DEFAULT, "--to", "1001", "--from", "06 12 34 56 78",
            "--at", "01/07/2026 10:00", "--json")  # fmt: skip
    _, out, _ = run(capsys, *argv)
    french = json.loads(out)
    _, out, _ = run(capsys, *argv, "--lang", "en")
    english = json.loads(out)
    assert french["steps"] == english["steps"]
    assert french["trace"][0].startswith("appel pour 1001 (Alice Martin) de 06 12 34 56 78")
    assert "le mercredi 01/07/2026 à 10:00" in french["trace"][0]
    assert french["trace"][-1] == (
        "décision : exception par appelant « 0612345678 » -> mobile (avec annonce d'attente)"
    )
    assert english["trace"][0].startswith("call to 1001 (Alice Martin) from 06 12 34 56 78")
    _, out, _ = run(capsys, *argv[:-1], "--lang", "fr")
    assert "  décision : exception par appelant « 0612345678 » -> mobile" in out
    assert out.splitlines()[1] == "rule: exception '0612345678'"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--to", "1001", "--at", "2026-07-01T20:00"], ({"kind": "voicemail"}, "closed", None)),
        (["--to", "1001", "--at", "2026-07-01T08:00:00Z"], ({"kind": "devices"}, "office_hours", None)),
        (["--to", "1001", "--at", "2026-12-25T10:00+01:00"], ({"kind": "voicemail"}, "exceptional", "Fermeture de fin d'année")),
        (["--to", "1002", "--at", "2026-07-01T20:00"], ({"kind": "devices"}, "schedule_disabled", None)),
        (["--to", "800", "--at", "2026-07-01T20:00"], ({"kind": "system", "extension": "800"}, "schedule_disabled", None)),
    ],
)  # fmt: skip
def test_trace_rules(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: tuple[object, ...]
) -> None:
    code, out, _ = run(
        capsys, "trace", "--config", DEFAULT, "--from", "0499999999", "--json", *argv
    )
    data = json.loads(out)
    assert code == 0
    assert (data["destination"], data["rule"], data["rule_name"]) == expected


def test_trace_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "trace", "--config", DEFAULT, "--to", "1001", "--from", "0499999999",
        "--at", "2026-07-01T20:00", "--lang", "en",
    )  # fmt: skip
    assert code == 0
    assert out.splitlines()[:3] == [
        'destination: voicemail  {"kind": "voicemail"}',
        "rule: closed",
        "why:",
    ]
    assert "  closed destination applies: voicemail" in out


def test_trace_unknown_extension_and_bad_time(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "trace", "--config", DEFAULT, "--to", "4242", "--from", "x")
    assert (code, out) == (1, "")
    assert err == "b2bua trace: unknown extension '4242' (known: 1001, 1002, 1003, 800)\n"
    code, _, err = run(
        capsys, "trace", "--config", DEFAULT, "--to", "1001", "--from", "x", "--at", "tomorrow"
    )
    assert code == 1 and "is not an ISO 8601 date-time" in err


def test_trace_default_is_now(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "trace", "--config", DEFAULT, "--to", "1001", "--from", "x", "--json"
    )
    assert code == 0 and json.loads(out)["rule"] in ("office_hours", "closed", "exceptional")


def test_week_text_and_svg(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    svg = tmp_path / "week.svg"
    code, out, _ = run(
        capsys, "week", "--config", DEFAULT, "1001", "--start", "2026-03-23", "--out", str(svg)
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Week of 2026-03-23 for 1001, calls from any caller (Europe/Paris)"
    grid = {line[:9]: line[11:] for line in lines if re.match(r"^\w{3} \d\d-\d\d  ", line)}
    assert grid["Mon 03-23"] == "V" * 17 + "D" * 8 + "VV" + "D" * 8 + "V" * 13
    assert grid["Fri 03-27"] == "V" * 17 + "D" * 8 + "VV" + "D" * 5 + "V" * 16
    assert grid["Sun 03-29"][4:6] == "··"  # 02:00-03:00 does not exist that day
    assert "  V  voicemail [closed]" in lines
    assert "  D  ring all devices [office_hours]" in lines
    assert "  Mon 03-23 08:30  D ring all devices [office_hours]" in lines
    root = ET.fromstring(svg.read_text(encoding="utf-8"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall("{http://www.w3.org/2000/svg}rect")) > 7 * 48


def test_week_in_french(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    svg = tmp_path / "semaine.svg"
    code, out, _ = run(capsys, "week", "--config", DEFAULT, "1001", "--start", "23/03/2026",
                       "--lang", "fr", "--out", str(svg))  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Semaine du 23/03/2026 pour 1001, appels de n'importe quel appelant " \
        "(Europe/Paris)"
    grid = {line[:9]: line[11:] for line in lines if re.match(r"^\w{3} \d\d/\d\d  ", line)}
    assert grid["lun 23/03"] == "V" * 17 + "D" * 8 + "VV" + "D" * 8 + "V" * 13
    assert "  V  messagerie vocale [hors horaires]" in lines
    assert "  D  tous les appareils sonnent [heures d'ouverture]" in lines
    assert "  lun 23/03 08:30  D tous les appareils sonnent [heures d'ouverture]" in lines
    assert "cette demi-heure n'existe pas (passage à l'heure d'été)" in out
    assert "Semaine du 23/03/2026 : appels pour 1001" in svg.read_text(encoding="utf-8")


def test_week_caller_exception(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "week", "--config", DEFAULT, "1001", "--from", "0612345678", "--start", "2026-06-29"
    )
    assert code == 0
    assert "  M  mobile (bounce) [exception '0612345678']" in out.splitlines()


def test_week_refuses_unknown_picture_format(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "week", "--config", DEFAULT, "1001", "--out", str(tmp_path / "w.gif")
    )
    assert code == 1 and "use a .svg or .png" in err


def test_week_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """scripts/setup installs librsvg2-bin: the week is drawn as a real PNG."""
    png = tmp_path / "w.png"
    code, out, err = run(capsys, "week", "--config", DEFAULT, "1001", "--out", str(png))
    assert code == 0, err
    assert f"saved {png}" in out
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 600 and height > 200  # seven day rows and the legend, not an empty image


def test_week_png_without_a_renderer_says_what_to_install(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no rsvg-convert, no convert
    code, _, err = run(capsys, "week", "--config", DEFAULT, "1001", "--out", str(tmp_path / "w.png"))
    assert code == 1
    assert "needs rsvg-convert" in err and "use --out FILE.svg" in err
    assert not (tmp_path / "w.png").exists()


def test_ics_export_and_import(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ics = tmp_path / "alice.ics"
    code, out, _ = run(capsys, "ics-export", "--config", DEFAULT, "1001", "--out", str(ics))
    assert code == 0 and out == f"wrote 1 exceptional period of 1001 to {ics}\n"
    assert "SUMMARY:Fermeture de fin d'année" in ics.read_text(encoding="utf-8")
    code, out, err = run(capsys, "ics-import", "--config", DEFAULT, "1002", str(ics))
    assert (code, err) == (0, "")
    assert out.startswith("# 1 exceptional period from")
    snippet = tomllib.loads("[[users]]\n" + out)
    assert snippet["users"][0]["schedule"]["exceptional"] == [
        {
            "name": "Fermeture de fin d'année",
            "dates": ["12-24..01-01"],
            "destination": {"kind": "voicemail"},
        }
    ]


def test_ics_import_default_destination_option(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ics = tmp_path / "h.ics"
    ics.write_text(
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260714\nSUMMARY:Fête nationale\n"
        "END:VEVENT\nEND:VCALENDAR\n",
        encoding="utf-8",
    )
    code, out, _ = run(
        capsys, "ics-import", "--config", DEFAULT, "1001", str(ics),
        "--destination", '{ kind = "announcement", message = "closed" }',
    )  # fmt: skip
    assert code == 0
    assert 'destination = { kind = "announcement", message = "closed" }' in out
    code, _, err = run(capsys, "ics-import", "--config", DEFAULT, "800", str(ics))
    assert code == 1 and "not a user extension" in err
