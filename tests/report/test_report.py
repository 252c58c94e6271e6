"""The people report on synthetic events: rows, counts that add up, people in view over time, bins
that coarsen for long runs in bounded memory, bad input named by line, files written whole."""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator, List, Optional

import cv2
import numpy as np
import pytest

from streamer.cli import main
from streamer.config import ClassifierConfig, ReportConfig
from streamer.errors import SinkError, SourceError
from streamer.report import page as report_page
from streamer.report.build import (
    PEOPLE_CSV,
    REPORT_FILES,
    REPORT_HTML,
    PeopleReport,
    write_report,
)
from streamer.report.events import read_events
from streamer.report.tally import PeopleTally
from streamer.types import age_group_labels

GROUPS = ClassifierConfig().age_groups
FPS = 10


def end_record(track: int, first: float, last: float, gender: Optional[str] = "male", age: Optional[float] = 34.0,
               **extra) -> dict:
    labelled = gender is not None
    return {"event": "end", "source": "cam.mp4", "frame": int(last * FPS) + 1, "t_s": last + 0.1, "track": track,
            "first_frame": int(first * FPS), "last_frame": int(last * FPS), "first_t_s": first, "last_t_s": last,
            "seen_s": round(last - first, 3), "hits": 10, "samples": 5 if labelled else 1, "gender": gender,
            "gender_p": 0.9 if labelled else None, "age": age if labelled else None,
            "age_group": ("30-39" if age < 40 else "60-69") if labelled else None,
            "age_range": [age - 8, age + 9] if labelled else None, **extra}  # fmt: skip


# Who is in view when, in seconds: [first, last]; the last two never get an end record in the
# file (the events stop while 4 is in view) or are shorter than min_seen_s (3).
PEOPLE = {1: (0.0, 4.0, "male", 34.0), 2: (3.0, 15.0, "female", 62.0), 3: (8.0, 8.5, "male", 30.0),
          4: (12.0, 19.9, "female", 35.0)}  # fmt: skip


def scene_events(people=PEOPLE, seconds: float = 20.0, end_open: bool = True) -> Iterator[dict]:
    """Frames at FPS with each person's face carrying its track id, new/end records as a run writes them."""
    started, ended = set(), set()
    for frame in range(int(seconds * FPS)):
        t = round(frame / FPS, 4)
        faces = []
        for track, (first, last, gender, age) in people.items():
            if first <= t <= last:
                ready = t >= first + 0.5
                faces.append({"xyxy": [0, 0, 50, 50], "score": 0.9, "gender": gender if ready else None,
                              "gender_p": 0.9 if ready else None, "age": age if ready else None,
                              "age_group": None, "classified": ready, "track": track})
        yield {"source": "cam.mp4", "frame": frame, "t_s": t, "faces": faces, "stale": False}
        for track, (first, last, gender, age) in people.items():
            if t >= first and track not in started:
                started.add(track)
                yield {"event": "new", "source": "cam.mp4", "frame": frame, "t_s": t, "track": track}
            if t > last and track not in ended:
                ended.add(track)
                yield end_record(track, first, last, gender, age)
    if not end_open:
        for track, (first, last, gender, age) in people.items():
            if track not in ended:
                yield end_record(track, first, last, gender, age)


def write_lines(path: Path, events, tail: bytes = b"") -> Path:
    with open(path, "wb") as handle:
        for event in events:
            handle.write(json.dumps(event).encode() + b"\n")
        handle.write(tail)
    return path


def fresh() -> PeopleReport:
    return PeopleReport(ReportConfig(), GROUPS)


def test_rows_counts_and_people_in_view(tmp_path) -> None:
    report = read_events(write_lines(tmp_path / "e.jsonl", scene_events()), fresh())
    rows, left_out = report.rows()
    assert [row["track"] for row in rows] == [1, 2, 4] and left_out == 1  # 3: 0.5 s < 1 s
    assert [row["ended"] for row in rows] == [True, True, False]
    open_row = rows[2]  # from the frames: first and last seen, the last labels shown
    assert open_row["first_t_s"] == 12.0 and open_row["last_t_s"] == pytest.approx(19.9)
    assert open_row["gender"] == "female" and open_row["age"] == 35.0 and open_row["samples"] is None

    summary = report.summary()
    assert summary["people"] == 3 and summary["without_end_record"] == 1 and summary["frames"] == 200
    assert summary["by_gender"] == {"female": 2, "male": 1, "unknown": 0}
    for breakdown in (summary["by_gender"], summary["by_age_group"]):
        assert sum(breakdown.values()) == summary["people"]
    assert sum(sum(cell.values()) for cell in summary["by_age_group_and_gender"].values()) == summary["people"]
    assert summary["by_age_group_and_gender"]["60-69"]["female"] == 1
    assert sum(band["people"] for band in summary["dwell"]["bands"]) == summary["people"]
    assert [band["label"] for band in summary["dwell"]["bands"]][:2] == ["1-5 s", "5-15 s"]
    assert [band["people"] for band in summary["dwell"]["bands"][:3]] == [1, 2, 0]  # 4 s; 12 s and 7.9 s
    assert summary["dwell"]["bands"][-1]["label"] == "10 min+"

    in_view = summary["in_view"]
    assert in_view["bin_s"] == 1.0 and len(in_view["people"]) == 20
    # Person 3 (left out) is not counted in view either: second 8 holds only person 2.
    assert in_view["people"] == [1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1]
    assert summary["peak"] == {"people": 2, "t_s": 3.0, "time": None, "bin_s": 1.0}  # a file: no clock time
    assert summary["first_time"] is None and all(row["first_time"] is None for row in rows)


def test_a_live_runs_events_give_clock_times(tmp_path, monkeypatch) -> None:
    """A camera's events: t_s is monotonic seconds, each record has its capture "timestamp"; rows,
    summary and page say when by the clock (the report machine's zone), not from the start."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    start = datetime(2026, 12, 2, 14, 30, 0, tzinfo=timezone.utc).timestamp()
    mono = 5000.0  # the camera's first frame at time.monotonic() == 5000

    def live(events):
        for event in events:
            shifted = {**event, "source": "rtsp://cam/stream", "t_s": event["t_s"] + mono}
            for key in ("first_t_s", "last_t_s"):
                if key in event:
                    shifted[key] = event[key] + mono
            yield {**shifted, "timestamp": round(start + event["t_s"], 3)}

    try:
        report = read_events(write_lines(tmp_path / "e.jsonl", live(scene_events())), fresh())
        rows, _ = report.rows()
        assert [(row["first_time"], row["last_time"]) for row in rows][:2] == [
            ("2026-12-02T14:30:00+00:00", "2026-12-02T14:30:04+00:00"),
            ("2026-12-02T14:30:03+00:00", "2026-12-02T14:30:15+00:00")]
        summary = write_report(report, tmp_path / "out")
        assert summary["first_time"] == "2026-12-02T14:30:00+00:00" and summary["duration_s"] == pytest.approx(19.9)
        assert summary["peak"]["time"] == "2026-12-02T14:30:03+00:00" and summary["peak"]["people"] == 2
        with open(tmp_path / "out" / PEOPLE_CSV, newline="") as handle:
            first = next(csv.DictReader(handle))
        assert first["first_time"] == "2026-12-02T14:30:00+00:00"
        page = (tmp_path / "out" / REPORT_HTML).read_text(encoding="utf-8")
        assert "2 Dec 2026 14:30:00 to 14:30:19 (19.9 s, UTC+00:00)" in page and "(at 14:30:03)" in page, page[:2000]
        assert "<td>14:30:03</td>" in page  # person 2 first seen
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_the_run_summary_counts_from_end_records() -> None:
    records = [end_record(1, 0.0, 4.0), end_record(2, 1.0, 1.4, gender=None), end_record(3, 2.0, 9.0, "female", 65)]
    tally = PeopleTally(ReportConfig(), GROUPS)
    for record in records:
        tally.add(record)
    counts = tally.counts()
    assert counts["people"] == 2 and counts["left_out"] == 1
    assert counts["by_gender"] == {"female": 1, "male": 1, "unknown": 0}
    assert counts["by_age_group"]["30-39"] == 1 and counts["by_age_group"]["60-69"] == 1
    # The same numbers as a report of those end records (what `streamer report` gives later).
    report = fresh()
    for record in records:
        report.add(record)
    assert counts == report.run_counts()
    assert PeopleTally(ReportConfig(min_seen_s=0), GROUPS).counts() == {
        "people": 0, "left_out": 0, "by_gender": {"female": 0, "male": 0, "unknown": 0},
        "by_age_group": {**dict.fromkeys(age_group_labels(GROUPS), 0), "unknown": 0}}


@pytest.mark.parametrize("seconds, step_s, bin_s, bins", [
    (600.0, 1.0, 1.0, 600),        # a clip: per second
    (7200.0, 5.0, 60.0, 120),      # two hours: per minute
    (60 * 3600.0, 60.0, 3600.0, 60),  # 60 hours of a camera: per hour
])  # fmt: skip
def test_time_bins_coarsen_for_long_runs(seconds, step_s, bin_s, bins) -> None:
    report = fresh()
    for i in range(int(seconds / step_s)):
        t = i * step_s
        report.add({"t_s": 1000.0 + t, "faces": [{"track": 1}] + ([{"track": 2}] if 100 <= t < 200 else [])})
    report.add(end_record(1, 1000.0, 1000.0 + seconds - step_s))
    report.add(end_record(2, 1100.0, 1199.0))
    in_view = report.summary()["in_view"]
    assert in_view["bin_s"] == bin_s and len(in_view["people"]) == bins and in_view["start_t_s"] == 1000.0
    assert max(in_view["people"]) == 2 and min(in_view["people"]) == 1
    # When person 2 was first seen (the first frame from t = 100 s), whatever the bin.
    assert report.summary()["peak"]["t_s"] == 1000.0 + math.ceil(100 / step_s) * step_s


def _steady_scene(frames: int, fps: float = 1.0) -> Iterator[dict]:
    """Four people, each in view for a quarter of ``frames`` frames (a slow camera: 1 fps)."""
    quarter = frames // 4
    for frame in range(frames):
        person = frame // quarter
        yield {"source": "cam", "frame": frame, "t_s": frame / fps, "stale": False,
               "faces": [{"xyxy": [0, 0, 50, 50], "score": 0.9, "classified": True, "gender": "male",
                          "gender_p": 0.8, "age": 30.0, "age_group": "30-39", "track": person}]}
        if frame % quarter == quarter - 1:
            yield end_record(person, (frame - quarter + 1) / fps, frame / fps)


def test_memory_does_not_grow_with_the_events(tmp_path) -> None:
    # The same four people in 1,000 and in 6,000 frames (17 min and 1.7 h at 1 fps; 6x the lines,
    # ~1.1 MB more): the report keeps rows and time bins (at most 900 per-second ones, then per
    # minute), not lines, so reading the long file takes no more memory.
    peaks, sizes = [], []
    read_events(write_lines(tmp_path / "warm.jsonl", _steady_scene(400)), fresh())  # lazy imports, caches
    for frames in (1_000, 6_000):
        path = write_lines(tmp_path / f"{frames}.jsonl", _steady_scene(frames))
        tracemalloc.start()
        try:
            report = read_events(path, fresh())
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        sizes.append(path.stat().st_size)
        assert report.summary()["people"] == 4 and report.frames == frames
    assert sizes[1] - sizes[0] > 1_000_000
    assert peaks[1] < peaks[0] + 64_000, (peaks, sizes)


def test_write_report_files_and_page(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    report = read_events(write_lines(tmp_path / "e.jsonl", scene_events()), fresh())
    out = tmp_path / "report"
    result = write_report(report, out, events=tmp_path / "e.jsonl")
    assert sorted(path.name for path in out.iterdir()) == sorted(REPORT_FILES)
    assert [Path(p).name for p in result["files"]] == list(REPORT_FILES)

    with open(out / "people.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["track"], r["gender"], r["age_lo"], r["ended"]) for r in rows] == [
        ("1", "male", "26.0", "true"), ("2", "female", "54.0", "true"), ("4", "female", "", "false")]
    people = json.loads((out / "people.json").read_text())
    assert people["left_out"] == 1 and [p["track"] for p in people["people"]] == [1, 2, 4]
    assert json.loads((out / "summary.json").read_text()) == report.summary()
    for name in ("age_gender.png", "in_view.png", "dwell.png"):
        image = cv2.imread(str(out / name))
        # 1000x500 CSS px at twice the density: its labels read without a zoom (600x300 did not).
        assert image is not None and image.shape == (1000, 2000, 3) and image.std() > 10, name

    page = (out / "report.html").read_text(encoding="utf-8")
    links = _links(page)
    assert len(links) == 3 and all(link.startswith("data:image/png;base64,") for link in links)
    assert "default-src 'none'" in page and "http:" not in page and "https:" not in page
    assert "People report: cam.mp4" in page and "People (3)" in page
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary file left"


def test_a_long_run_is_charted_as_a_step_curve_with_gaps() -> None:
    pytest.importorskip("matplotlib")
    report = fresh()
    for second in range(600):  # 10 minutes, nobody in view in the middle 2, no frames for 1
        if 300 <= second < 360:
            continue
        report.add({"t_s": float(second), "faces": [] if 240 <= second < 360 else [{"track": 1}]})
    report.add(end_record(1, 0.0, 599.0))
    summary = report.summary()
    assert summary["in_view"]["people"][239:241] == [1, 0] and summary["in_view"]["people"][300] is None
    image = cv2.imdecode(np.frombuffer(report_page.draw_charts(summary)["in_view.png"], np.uint8), cv2.IMREAD_COLOR)
    green = np.all(np.abs(image.astype(int) - (0x5C, 0x8C, 0x4A)) <= 6, axis=2)
    columns = green.any(axis=0)
    # Filled where someone was in view: about 480 of 600 seconds across the axes (~87 % of the width).
    assert 0.5 * image.shape[1] < columns.sum() < 0.8 * image.shape[1], columns.sum()


def test_without_matplotlib_the_numbers_are_written_and_the_page_says_how_to_get_charts(
        tmp_path, monkeypatch, caplog) -> None:
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it raises ImportError
    report = read_events(write_lines(tmp_path / "e.jsonl", scene_events()), fresh())
    with caplog.at_level(logging.WARNING):
        write_report(report, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["people.csv", "people.json", "report.html",
                                                                     "summary.json"]
    assert "pip install 'streamer[report]'" in caplog.text
    page = (tmp_path / "out" / "report.html").read_text()
    assert _links(page) == [] and "pip install 'streamer[report]'" in html.unescape(page)
    assert '<tr><td class="l">60-69</td><td>1</td><td>0</td><td>0</td><td>1</td></tr>' in page


def test_report_files_are_not_replaced_without_overwrite(tmp_path) -> None:
    report = read_events(write_lines(tmp_path / "e.jsonl", scene_events()), fresh())
    out = tmp_path / "out"
    out.mkdir()
    (out / "people.csv").write_text("keep me\n")
    with pytest.raises(SinkError, match="already holds people.csv.*--overwrite"):
        write_report(report, out)
    assert [p.name for p in out.iterdir()] == ["people.csv"] and (out / "people.csv").read_text() == "keep me\n"
    write_report(report, out, overwrite=True)
    assert (out / "people.csv").read_text().startswith("track,")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SinkError, match="is a file"):
        write_report(report, tmp_path / "file")


GOOD = [json.dumps(event) for event in scene_events()]


@pytest.mark.parametrize("content, warnings", [
    # The last line cut mid-way (a run killed while writing): everything before it is used.
    ("\n".join(GOOD) + "\n" + GOOD[-1][:-9], [f"line {len(GOOD) + 1} is cut short"]),
    # Lines of other things among the events: named with their numbers, the rest used.
    ("\n".join(GOOD[:50] + ["caf\xe9", "not json", "[1, 2]", '{"faces": 3}'] + GOOD[50:]),
     ["line 51 is not UTF-8 text (byte 0xe9 at column 4)", "line 52 is not JSON",
      "2 lines are not a streamer event (lines 53, 54; line 53 (a JSON list, not an object))"]),
    ("\n".join(GOOD[:10]) + "\n" + "x" * (1 << 21) + "\n" + "\n".join(GOOD[10:]) + "\n",
     ["line 11 is longer than 1 MB"]),
])  # fmt: skip
def test_bad_lines_are_named_and_the_rest_used(content, warnings, tmp_path, caplog) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(content.encode("latin-1" if "\xe9" in content else "utf-8"))
    with caplog.at_level(logging.WARNING):
        report = read_events(path, fresh())
    for warning in warnings:
        assert warning in caplog.text
    assert len(report.warnings) == len(warnings) and report.summary()["warnings"] == report.warnings
    assert [row["track"] for row in report.rows()[0]] == [1, 2, 4]


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\n\n", "only blank lines"),
    (b'{"name": "x", "value": 1}\n{"name": "y"}\n', "holds no streamer events (line 1 is not a streamer event"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\n", "line 1 is not UTF-8 text (byte 0x89 at column 1)"),
    (b'{"source": "a.mp4", "frame": 0, "t_s": 0.0, "faces": [{"xyxy": [1, 2, 3, 4], "gender": "male"}]}\n',
     "without tracking"),
])  # fmt: skip
def test_unusable_input_is_one_line_and_exit_2(content, message, tmp_path, caplog, capsys) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_events(path, fresh())
    with caplog.at_level(logging.ERROR):
        assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    assert message in caplog.text and not (tmp_path / "out").exists()
    assert capsys.readouterr().out == ""


def test_missing_file_and_folder(tmp_path) -> None:
    with pytest.raises(SourceError, match="not found"):
        read_events(tmp_path / "nope.jsonl", fresh())
    with pytest.raises(SourceError, match="is a folder"):
        read_events(tmp_path, fresh())


def test_report_command_writes_the_folder(tmp_path, capsys) -> None:
    path = write_lines(tmp_path / "e.jsonl", scene_events(end_open=False))
    assert main(["report", str(path), "--out", str(tmp_path / "out"), "--min-seen-s", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("people        4 (female 2, male 2;") and "report.html" in out
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["left_out"] == {"tracks": 0, "min_seen_s": 0.0}


def _links(page: str) -> List[str]:
    """Every src/href of the page."""
    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: List[str] = []

        def handle_starttag(self, tag: str, attrs) -> None:
            self.found += [value for name, value in attrs if name in ("src", "href") and value]

    parser = Links()
    parser.feed(page)
    return parser.found


@pytest.mark.parametrize("source, shown", [
    ("/home/ann/videos/shop/cam.mp4", "cam.mp4"),
    ("rtsp://admin:s3cret@cam.lan:554/live/stream1?token=abc", "rtsp://cam.lan:554/stream1"),
    ("photos/", "photos"),
])
def test_the_page_names_source_and_events_without_folders_or_logins(tmp_path, source, shown) -> None:
    """The page is meant to be mailed: names, never the folders (or a camera's password) of the
    machine that made it."""
    events = tmp_path / "deep" / "folder" / "e.jsonl"
    events.parent.mkdir(parents=True)
    report = read_events(write_lines(events, ({**e, "source": source} for e in scene_events())), fresh())
    write_report(report, tmp_path / "out", events=events)
    page = (tmp_path / "out" / REPORT_HTML).read_text(encoding="utf-8")
    assert f"People report: {shown}<" in page and "from e.jsonl" in page
    for secret in (str(tmp_path), "/home/ann", "s3cret", "admin", "token", "/live/"):
        assert secret not in page, secret


def test_one_person_is_one_person_on_the_page(tmp_path) -> None:
    people = {1: (0.0, 12.0, "male", 34.0)}  # still in view where the events stop
    report = read_events(write_lines(tmp_path / "e.jsonl", scene_events(people, seconds=10.0)), fresh())
    write_report(report, tmp_path / "out")
    page = html.unescape((tmp_path / "out" / REPORT_HTML).read_text(encoding="utf-8"))
    assert "1 person was still in view where the events stop; the row comes from the frames" in page
    assert "people were" not in page and "<span>person</span>" in page


def test_the_peak_is_said_when_it_began_not_at_its_bins_start() -> None:
    people = {1: (0.0, 9.0, "male", 34.0), 2: (3.4, 6.0, "female", 40.0)}
    report = read_events_from(scene_events(people, seconds=10.0))
    peak = report.summary()["peak"]
    assert peak["people"] == 2 and peak["t_s"] == 3.4 and peak["bin_s"] == 1.0  # was its bin's 3.0


def read_events_from(events) -> PeopleReport:
    report = fresh()
    for event in events:
        report.add(event)
    return report
