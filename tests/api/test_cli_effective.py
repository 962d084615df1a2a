"""The command line tells what the running server does: `trace`, `week`, `devices`, `check` and
`export` follow a change made through the dashboard's API (a real `b2bua run`, real HTTP, the
CLI run as a subprocess on the same configuration file and data directory)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.testing.server import RunningServer
from tests.api.helpers import SCHEDULE, signed_in, start

# TEST_NOW (helpers) is Wednesday 2026-01-07 10:00 in Paris: inside 1001's office hours.
AT = "2026-01-07T10:00"
SICK_LEAVE = {
    "name": "Congé maladie",
    "dates": ["2026-01-05..2026-01-09"],
    "destination": {"kind": "extension", "extension": "1002"},
}


def cli(server: RunningServer, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2bua", *argv, "--config", str(server.config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start(tmp_path_factory.mktemp("cli"))
    try:
        yield srv
    finally:
        srv.stop()


def trace(server: RunningServer) -> dict[str, object]:
    done = cli(server, "trace", "--to", "1001", "--from", "0611111111", "--at", AT, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def test_trace_and_week_follow_a_sick_leave_added_through_the_api(server: RunningServer) -> None:
    before = trace(server)
    assert (before["rule"], before["destination"]) == ("office_hours", {"kind": "devices"})

    admin = signed_in(server, "admin")
    schedule = {**SCHEDULE, "exceptional": [SICK_LEAVE]}
    r = admin.patch("/api/users/1001", {"schedule": schedule})
    assert r.status == 200, r

    after = trace(server)
    assert after["rule"] == "exceptional"
    assert after["rule_name"] == "Congé maladie"
    assert after["destination"] == {"kind": "extension", "extension": "1002"}
    # The server says the same.
    api = admin.get(f"/api/users/1001/trace?caller=0611111111&at={AT}").json()
    assert (api["rule"], api["rule_name"], api["destination"]) == (
        after["rule"], after["rule_name"], after["destination"],
    )  # fmt: skip

    week = cli(server, "week", "1001", "--start", "2026-01-05")
    assert week.returncode == 0, week.stderr
    assert "'Congé maladie'" in week.stdout
    # The leave covers Monday to Friday: no office-hours cell is left in the grid.
    legend = {line.split()[0]: line for line in week.stdout.splitlines() if "[" in line}
    assert not any("[office_hours" in line for line in legend.values()), week.stdout


def test_devices_follow_a_device_added_through_the_api(server: RunningServer) -> None:
    user = signed_in(server, "1002")
    r = user.post("/api/users/1002/devices", {"type": "softphone", "label": "Tablette"})
    assert r.status == 201, r
    done = cli(server, "devices", "--json")
    assert done.returncode == 0, done.stderr
    report = {ext["extension"]: ext for ext in json.loads(done.stdout)}
    labels = [d["label"] for d in report["1002"]["devices"]]
    assert labels == ["Bureau", "Tablette"]
    assert report["1002"]["devices"][1]["state"] == "offline"


def test_export_and_check_see_the_stored_settings(server: RunningServer) -> None:
    exported = cli(server, "export")
    assert exported.returncode == 0, exported.stderr
    assert 'name = "Congé maladie"' in exported.stdout
    assert 'label = "Tablette"' in exported.stdout
    check = cli(server, "check")
    assert check.returncode == 0, check.stderr
    assert "stored from the dashboard" in check.stdout
    assert "2 users changed" in check.stdout


def test_check_reports_stored_settings_the_file_no_longer_allows(
    server: RunningServer, tmp_path: Path
) -> None:
    """Remove user 1002 from the file: 1001's stored sick leave, which forwards to 1002, no
    longer validates. The server would leave it out; `check` says so and fails."""
    text = server.config.read_text(encoding="utf-8")
    start_1002 = text.index('[[users]]\nextension = "1002"')
    end_1002 = text.index("[[users]]", start_1002 + 1)
    edited = text[:start_1002] + text[end_1002:]
    edited = edited.replace('members = ["1001", "1002"]', 'members = ["1001"]')
    edited = edited.replace(', "0442930601" = "1002"', "")
    original = server.config.read_text(encoding="utf-8")
    server.config.write_text(edited, encoding="utf-8")
    try:
        check = cli(server, "check")
        traced = trace(server)
    finally:
        server.config.write_text(original, encoding="utf-8")
    assert check.returncode == 1
    database = str(Path(server.config).parent / "var" / "b2bua.sqlite")
    assert (
        f"{database}: 1001: schedule.exceptional[1].destination.extension: unknown colleague "
        "extension '1002'"
    ) in check.stderr, check.stderr
    # The trace follows what the server would do: the file's settings for 1001.
    assert traced["rule"] == "office_hours"
