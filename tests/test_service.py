"""packaging/streamer.service and streamer-site.service: systemd's own checker accepts them, and
they do what README promises."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

import cv2
import pytest
from conftest import REPO
from mjpeg_server import serving

UNIT = REPO / "packaging" / "streamer.service"
SITE_UNIT = REPO / "packaging" / "streamer-site.service"
INSTALLED_BINARY = "/opt/streamer/bin/streamer"


def _verify(unit_text: str, folder, name: str = "streamer.service") -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` on a copy whose ExecStart binary exists (verify checks it is
    executable; the real path is only there on an installed box)."""
    fake = folder / "streamer"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = folder / name
    assert INSTALLED_BINARY in unit_text
    unit.write_text(unit_text.replace(INSTALLED_BINARY, str(fake)))
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


def _complaints(result: subprocess.CompletedProcess, name: str = "streamer.service") -> list:
    # verify exits 0 on warnings it "ignores" (an unknown key, a bad value): every line about our
    # unit counts. Lines about the host's own units (a container without systemd running) do not.
    return [line for line in (result.stdout + result.stderr).splitlines() if name in line]


needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@needs_systemd
@pytest.mark.parametrize("unit", [UNIT, SITE_UNIT], ids=lambda path: path.name)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path, unit):
    result = _verify(unit.read_text(), tmp_path, unit.name)
    assert result.returncode == 0 and _complaints(result, unit.name) == [], result.stdout + result.stderr


@needs_systemd
@pytest.mark.parametrize("broken, complaint", [
    (("Restart=on-failure", "Restart=sometimes"), "restart"),
    (("MemoryMax=512M", "MemoryMaximum=512M"), "MemoryMaximum"),
])
def test_verify_catches_a_broken_copy(tmp_path, broken, complaint):
    """The check above can fail: systemd-analyze names a mistyped key or value in the unit."""
    result = _verify(UNIT.read_text().replace(*broken), tmp_path)
    assert any(complaint in line for line in _complaints(result)), result.stdout + result.stderr


def test_unit_runs_headless_as_its_own_user_with_restart_memory_cap_and_cache():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["User"] == "streamer" and service.get("DynamicUser", "no") == "no"
    assert service["Restart"] == "on-failure" and service["MemoryMax"]
    assert service["CacheDirectory"] == "streamer"
    assert service["Environment"] == "STREAMER_MODELS_DIR=/var/cache/streamer/models"
    assert service["EnvironmentFile"] == "/etc/streamer/streamer.env"
    exec_start = service["ExecStart"].split()
    assert exec_start[:2] == [INSTALLED_BINARY, "run"]
    assert "--no-window" in exec_start and exec_start[exec_start.index("--source") + 1] == "${STREAMER_SOURCE}"
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def _unit_command(workdir: Path, source: str, extra: Sequence[str]) -> List[str]:
    """The unit's ExecStart as this checkout runs it: the installed binary is run.py, the camera is
    ``source``, STREAMER_ARGS is the unit's documented example with /var/lib/streamer at ``workdir``."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    documented = re.search(r"STREAMER_ARGS=(.*)", UNIT.read_text())
    assert documented, "the unit documents an example STREAMER_ARGS"
    args = documented.group(1).replace("/var/lib/streamer", str(workdir)).split() + list(extra)
    command: List[str] = []
    for word in parser["Service"]["ExecStart"].split():
        if word == INSTALLED_BINARY:
            command += [sys.executable, str(REPO / "run.py")]
        elif word == "${STREAMER_SOURCE}":
            command.append(source)
        elif word == "$STREAMER_ARGS":
            command += args
        else:
            command.append(word)
    return command


def _frame_lines(path: Path) -> List[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().split(b"\n")
            if line.startswith(b"{") and line.endswith(b"}") and b'"faces"' in line]


def _run_until(command: List[str], workdir: Path, env: dict, events: Path, at_least: int) -> subprocess.Popen:
    proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_frame_lines(events)) < at_least:
        if proc.poll() is not None:
            pytest.fail(f"the service exited {proc.returncode}: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"fewer than {at_least} event lines within 60 s: {proc.communicate()[1]}")
        time.sleep(0.1)
    return proc


@pytest.mark.integration
def test_the_service_starts_again_after_sigkill_and_continues_its_events_and_segments(tmp_path, models_env):
    """Restart=on-failure after a crash, an OOM kill or a reboot: the unit's own command starts again
    on its state folder, appends to the events file (a line torn by the kill is cut) and numbers
    the recording's segments on from the last one."""
    (tmp_path / "config.yaml").write_text("output:\n  segment_s: 0.5\n")  # the service's ./config.yaml
    with serving() as camera:
        command = _unit_command(tmp_path, camera.url, ["--output", "rec.mp4"])
        events = tmp_path / "events.jsonl"
        first = _run_until(command, tmp_path, models_env, events, 60)
        first.kill()  # SIGKILL: no clean-up at all
        first.communicate(timeout=10)
        with open(events, "ab") as torn:
            torn.write(b'{"source":"x","frame":999,"t_s":1.2,"fa')  # a power cut mid-line
        before = _frame_lines(events)
        segments_before = sorted(tmp_path.glob("rec_*.mp4"))
        second = _run_until(command, tmp_path, models_env, events, len(before) + 30)
        second.send_signal(signal.SIGTERM)  # systemctl stop
        _, stderr = second.communicate(timeout=30)
    assert second.returncode == 0, stderr
    assert "torn" in stderr and "already exists" not in stderr
    lines = events.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1]), "every line is whole JSON"
    after = _frame_lines(events)
    assert after[:len(before)] == before and len(after) >= len(before) + 30
    assert not any(line["frame"] == 999 for line in after)
    assert segments_before, "the first run finished a segment before it was killed"
    numbers = sorted(int(path.stem.split("_")[1]) for path in tmp_path.glob("rec_*.mp4"))
    assert numbers == list(range(1, numbers[-1] + 1)) and numbers[-1] > len(segments_before)
    assert not list(tmp_path.glob(".rec_*")), "the killed run's unfinished segment was removed"


def _site_unit() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(SITE_UNIT.read_text())
    return parser["Service"]


def test_site_unit_stops_the_supervisor_alone_and_waits_longer_than_it_does():
    from streamer.config import SiteConfig

    service = _site_unit()
    assert service["KillMode"] == "mixed"  # SIGTERM to the supervisor only; it stops each worker once
    assert float(service["TimeoutStopSec"]) > SiteConfig().stop_timeout_s + 5
    assert service["ExecStart"].split()[:4] == [INSTALLED_BINARY, "run", "--config", "/etc/streamer/site.yaml"]
    assert service["User"] == "streamer" and service["Restart"] == "on-failure" and service["MemoryMax"]


@pytest.mark.integration
def test_the_site_units_command_stops_every_camera_on_one_sigterm(tmp_path, models_env):
    """systemctl stop with KillMode=mixed: SIGTERM reaches the supervisor process alone; every
    camera's worker still finishes its outputs and summary, and the service exits 0."""
    with serving() as camera:
        site = tmp_path / "site.yaml"
        site.write_text("cameras:\n" + "".join(
            f"  {name}: {{source: '{camera.url}', events: {tmp_path / name}.jsonl}}\n" for name in ("door", "till")))
        command: List[str] = []
        for word in _site_unit()["ExecStart"].split():
            command += ([sys.executable, str(REPO / "run.py")] if word == INSTALLED_BINARY
                        else [str(site)] if word == "/etc/streamer/site.yaml" else [word])
        proc = subprocess.Popen(command, cwd=tmp_path, env=models_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not all(len(_frame_lines(tmp_path / f"{name}.jsonl")) >= 10 for name in ("door", "till")):
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "no frames from both cameras within 120 s"
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)  # the main process only, as KillMode=mixed does
            out, err = proc.communicate(timeout=float(_site_unit()["TimeoutStopSec"]))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    summary = json.loads((tmp_path / "out" / "site.summary.json").read_text())
    for name in ("door", "till"):
        entry = summary["cameras"][name]
        assert entry["summary"] and not entry["killed_at_stop"] and entry["frames_out"] >= 10, entry
    assert "site          2 cameras" in out


@pytest.mark.integration
def test_a_restarted_service_keeps_its_one_file_recording_and_its_report(tmp_path, models_env):
    """With output.segment_s 0 (one recording file) and --report, the service's second start
    neither refuses ("already exists") nor replaces the first run's files: it records beside them
    and moves the earlier report to earlier/<time>/."""
    (tmp_path / "config.yaml").write_text("output:\n  segment_s: 0\n")
    with serving() as camera:
        command = _unit_command(tmp_path, camera.url, ["--output", "rec.mp4", "--report", "report"])
        events = tmp_path / "events.jsonl"
        for start in (1, 2):
            proc = _run_until(command, tmp_path, models_env, events, 30 * start)
            proc.send_signal(signal.SIGTERM)  # systemctl stop; then started again
            _, stderr = proc.communicate(timeout=30)
            assert proc.returncode == 0, stderr
    assert "already exists" not in stderr and "rec.2.mp4" in stderr
    for name in ("rec.mp4", "rec.2.mp4"):
        video = cv2.VideoCapture(str(tmp_path / name))
        assert video.isOpened() and video.get(cv2.CAP_PROP_FRAME_COUNT) >= 10, name
        video.release()
    assert (tmp_path / "report" / "report.html").is_file()
    (earlier,) = (tmp_path / "report" / "earlier").iterdir()
    assert (earlier / "report.html").is_file() and (earlier / "people.csv").is_file()


def _seen_s(lines: List[dict]) -> float:
    """How long tracked faces were in view over ``lines`` (0 without any)."""
    times = [line["t_s"] for line in lines if any("track" in face for face in line["faces"])]
    return max(times) - min(times) if times else 0.0


def _run_until_seen(command: List[str], workdir: Path, env: dict, events: Path, after: int,
                    seconds: float) -> subprocess.Popen:
    """The unit's command, until its frame lines after the first ``after`` show a tracked face over ``seconds``."""
    proc = _run_until(command, workdir, env, events, after + 1)
    deadline = time.monotonic() + 90
    while _seen_s(_frame_lines(events)[after:]) < seconds:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no tracked face over {seconds} s within 90 s: {proc.communicate()[1]}")
        time.sleep(0.2)
    return proc


@pytest.mark.integration
def test_the_report_on_a_restarted_services_events_counts_every_runs_people(tmp_path, models_env):
    """A camera with a person in view; the service is killed (SIGKILL) and starts again, appending
    to its events file with track ids from 1 again. The report on the file counts both runs'
    people under ids that do not collide: run 1's open track is not merged with run 2's."""
    from test_rtsp import CLIP, RtspServer, free_port

    rtsp = RtspServer(free_port(), CLIP)
    rtsp.start()
    try:
        command = _unit_command(tmp_path, rtsp.url, [])
        events = tmp_path / "events.jsonl"
        first = _run_until_seen(command, tmp_path, models_env, events, 0, 1.5)
        first.kill()  # SIGKILL: run 1's tracks get no end record
        first.communicate(timeout=10)
        run_1 = len(_frame_lines(events))
        second = _run_until_seen(command, tmp_path, models_env, events, run_1, 1.5)
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=30)
    finally:
        rtsp.kill()
    assert second.returncode == 0, stderr
    lines = _frame_lines(events)
    assert lines[run_1]["frame"] < lines[run_1 - 1]["frame"], "run 2 numbers its frames from 0 again"
    tracks = [{face["track"] for line in part for face in line["faces"] if "track" in face}
              for part in (lines[:run_1], lines[run_1:])]
    assert tracks[0] and tracks[1] and tracks[0] & tracks[1], "both runs number their tracks from 1"
    report = subprocess.run([sys.executable, str(REPO / "run.py"), "report", str(events), "--out",
                             str(tmp_path / "report")], cwd=tmp_path, env=models_env, capture_output=True, text=True,
                            timeout=120)
    assert report.returncode == 0, report.stderr
    people = json.loads((tmp_path / "report" / "people.json").read_text())
    ids = [row["track"] for row in people["people"]]
    assert len(ids) + people["left_out"] == len(tracks[0]) + len(tracks[1]), people
    assert len(ids) == len(set(ids)) and len(ids) >= 2, people
    run_1_rows = [row for row in people["people"] if row["track"] <= max(tracks[0])]
    assert run_1_rows and not all(row["ended"] for row in run_1_rows), "run 1's killed tracks, from their frames"
    assert any(row["track"] > max(tracks[0]) and row["ended"] for row in people["people"]), "run 2's, ended"
