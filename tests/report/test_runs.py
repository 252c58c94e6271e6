"""An events file that a live run appended to after a restart (a stop, a crash, a reboot) holds
several runs, each numbering its frames from 0 and its tracks from 1: the report counts every
run's people, with ids that do not collide and times on one clock."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Dict, Iterator, Tuple

import pytest
from test_report import GROUPS, fresh, read_events_from, scene_events, write_lines

from streamer.config import ReportConfig
from streamer.report.build import PeopleReport, write_report
from streamer.report.events import read_events
from streamer.report.fleet import FleetReport
from streamer.report.runs import Runs

START = datetime(2026, 12, 2, 14, 30, 0, tzinfo=timezone.utc).timestamp()
RUN_1 = {1: (0.0, 4.0, "male", 34.0), 2: (3.0, 15.0, "female", 62.0)}
RUN_2 = {1: (1.0, 6.0, "female", 35.0), 2: (2.0, 9.0, "male", 30.0)}


def live(events: Iterator[dict], mono: float, start: float) -> Iterator[dict]:
    """A camera's events: t_s on the run's monotonic clock (``mono`` at its first frame), each
    object with its capture's wall-clock ``timestamp`` (``start`` at its first frame)."""
    for event in events:
        moved = {**event, "source": "rtsp://cam/stream", "t_s": round(event["t_s"] + mono, 4)}
        for key in ("first_t_s", "last_t_s"):
            if key in event:
                moved[key] = round(event[key] + mono, 4)
        yield {**moved, "timestamp": round(start + event["t_s"], 3)}


def two_runs(mono_2: float, start_2: float = START + 3600) -> Iterator[dict]:
    """Run 1 for 20 s at monotonic 5000; run 2 (10 s) appended, starting ``start_2``."""
    yield from live(scene_events(RUN_1, 20.0, end_open=False), 5000.0, START)
    yield from live(scene_events(RUN_2, 10.0, end_open=False), mono_2, start_2)


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def _people(report: PeopleReport) -> Dict[int, Tuple[str, str, float, str]]:
    rows, _ = report.rows()
    return {row["track"]: (row["first_time"][11:19], row["last_time"][11:19], row["seen_s"], row["gender"])
            for row in rows}


@pytest.mark.parametrize("mono_2", [30.0, 5000.0 + 3600.0], ids=["after-a-reboot", "restarted-without-reboot"])
def test_two_live_runs_in_one_file_are_four_people(tmp_path, utc, mono_2) -> None:
    report = read_events(write_lines(tmp_path / "e.jsonl", two_runs(mono_2)), fresh())
    assert report.runs is not None and report.runs.count == 2
    # Run 2's tracks 1 and 2 are 3 and 4: none merged with run 1's, each at its own clock time.
    assert _people(report) == {1: ("14:30:00", "14:30:04", 4.0, "male"), 2: ("14:30:03", "14:30:15", 12.0, "female"),
                               3: ("15:30:01", "15:30:06", 5.0, "female"), 4: ("15:30:02", "15:30:09", 7.0, "male")}
    summary = write_report(report, tmp_path / "out")
    assert summary["people"] == 4 and summary["without_end_record"] == 0 and summary["frames"] == 300
    assert summary["by_gender"] == {"female": 2, "male": 2, "unknown": 0}
    assert (summary["first_time"], summary["last_time"]) == ("2026-12-02T14:30:00+00:00", "2026-12-02T15:30:09+00:00")
    assert summary["duration_s"] == pytest.approx(3609.9)
    assert [band["people"] for band in summary["dwell"]["bands"][:2]] == [1, 3]  # 4 s; 12 s, 5 s, 7 s
    # Per minute over the hour: run 1 in minute 0, run 2 in minute 60, nobody (no frames) between.
    in_view = summary["in_view"]
    assert in_view["bin_s"] == 60.0 and in_view["people"][0] == 2 and in_view["people"][60] == 2
    assert in_view["people"][1:60] == [None] * 59
    assert summary["peak"]["time"] == "2026-12-02T14:30:03+00:00"


def test_runs_without_a_clock_follow_each_other(tmp_path) -> None:
    """Events without a wall-clock time (a file's, joined by hand): run 2 starts where run 1 ended."""
    events = [*scene_events(RUN_1, 20.0, end_open=False), *scene_events(RUN_2, 10.0, end_open=False)]
    report = read_events(write_lines(tmp_path / "e.jsonl", events), fresh())
    rows, _ = report.rows()
    assert [(row["track"], row["first_t_s"], row["last_t_s"], row["gender"]) for row in rows] == [
        (1, 0.0, 4.0, "male"), (2, 3.0, 15.0, "female"), (3, 20.9, 25.9, "female"), (4, 21.9, 28.9, "male")]
    summary = report.summary()
    assert summary["people"] == 4 and summary["last_t_s"] == pytest.approx(29.8)
    assert len(summary["in_view"]["people"]) == 30  # one second each, run 2 after run 1


def test_a_run_that_stopped_on_its_first_frame_is_still_a_run() -> None:
    """The frame number does not go back (both runs at frame 0), but a track starts twice."""
    runs = Runs()
    first = {"event": "new", "frame": 0, "t_s": 1.0, "track": 1}
    assert runs.place(first) is first
    again = runs.place({"event": "new", "frame": 0, "t_s": 1.0, "track": 1})
    assert runs.count == 2 and again["track"] == 2


def test_a_single_run_passes_unchanged(tmp_path) -> None:
    runs = Runs()
    for event in live(scene_events(), 5000.0, START):
        assert runs.place(event) is event
    assert runs.count == 1
    told, untold = read_events_from(scene_events()), PeopleReport(ReportConfig(), GROUPS, runs=False)
    for event in scene_events():
        untold.add(event)
    assert told.all_rows() == untold.all_rows() and told.summary() == untold.summary()


def test_the_fleet_tells_a_cameras_runs_apart() -> None:
    fleet = FleetReport(ReportConfig())
    fleet.default_camera = "a"
    for event in two_runs(30.0):
        fleet.add(event)
    for event in live(scene_events(RUN_2, 10.0, end_open=False), 70.0, START + 1800):
        fleet.add({**event, "camera": "b"})
    assert {name: report.summary()["people"] for name, report in fleet.cameras.items()} == {"a": 4, "b": 2}
    summary = fleet.fleet.summary()
    assert summary["people"] == 6 and summary["duration_s"] == pytest.approx(3609.9)
    rows, _ = fleet.fleet.rows()
    assert sorted(row["first_t_s"] for row in rows) == [0.0, 3.0, 1801.0, 1802.0, 3601.0, 3602.0]
