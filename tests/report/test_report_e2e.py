"""The people report from a real tracked run (Tears of Steel, 10 s): the rows are the run's end
records, the counts add up, the run's --report folder and the report command agree, the PNGs decode,
and headless Chromium renders report.html from disk (network off) with its charts."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA, models_dirs

from streamer.cli import main

pytestmark = pytest.mark.integration

CLIP = SHARED_MEDIA / "blender_tears_of_steel_10s.mp4"
MIN_SEEN_S = 1.0  # config.yaml's report.min_seen_s
CHART_COLOURS_BGR = {"in view": (0x5C, 0x8C, 0x4A), "dwell": (0xA8, 0x5E, 0x7A)}  # report_page's bar colours


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tracked run with --events and --report, then the report command on its events."""
    root = tmp_path_factory.mktemp("report_e2e")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAMER_MODELS_DIR", models_dirs())
        patch.delenv("DISPLAY", raising=False)
        assert main(["--source", str(CLIP), "--mode", "tracked", "--no-window", "--no-progress",
                     "--output", str(root / "o.mp4"), "--events", str(root / "e.jsonl"),
                     "--summary", str(root / "s.json"), "--report", str(root / "run_report")]) == 0
        assert main(["report", str(root / "e.jsonl"), "--out", str(root / "report")]) == 0
    lines = [json.loads(line) for line in (root / "e.jsonl").read_text().splitlines()]
    return root, lines


def _people_csv(folder: Path):
    with open(folder / "people.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _text(value) -> str:
    return "" if value is None else str(value)


def test_rows_are_the_end_records_and_counts_add_up(run) -> None:
    root, lines = run
    ends = [line for line in lines if line.get("event") == "end"]
    kept = [end for end in ends if end["seen_s"] >= MIN_SEEN_S]
    assert kept, "the clip shows people for more than a second"
    rows = _people_csv(root / "report")
    assert [int(row["track"]) for row in rows] == sorted(end["track"] for end in kept)
    for row, end in zip(rows, sorted(kept, key=lambda e: e["track"])):
        low, high = end["age_range"] or (None, None)
        for key in ("first_frame", "last_frame", "first_t_s", "last_t_s", "seen_s", "hits", "samples", "gender",
                    "gender_p", "age", "age_group"):
            assert row[key] == _text(end[key]), (key, row, end)
        assert (row["age_lo"], row["age_hi"], row["ended"]) == (_text(low), _text(high), "true")

    summary = json.loads((root / "report" / "summary.json").read_text())
    people = summary["people"]
    assert people == len(kept) and summary["left_out"]["tracks"] == len(ends) - len(kept)
    assert sum(summary["by_gender"].values()) == people == sum(summary["by_age_group"].values())
    assert sum(band["people"] for band in summary["dwell"]["bands"]) == people
    for group, cells in summary["by_age_group_and_gender"].items():
        assert sum(cells.values()) == summary["by_age_group"][group]
    for gender in summary["by_gender"]:
        assert sum(c[gender] for c in summary["by_age_group_and_gender"].values()) == summary["by_gender"][gender]
    assert summary["by_gender"]["male"] == sum(end["gender"] == "male" for end in kept)

    # People in view, counted here from the frames: the most kept people on one frame, per second.
    kept_ids = {end["track"] for end in kept}
    frames = [line for line in lines if "faces" in line]
    per_second = defaultdict(int)
    for frame in frames:
        in_view = sum(face.get("track") in kept_ids for face in frame["faces"])
        second = int(frame["t_s"])
        per_second[second] = max(per_second[second], in_view)
    assert summary["in_view"]["bin_s"] == 1.0 and summary["frames"] == len(frames) == 240
    assert summary["in_view"]["people"] == [per_second[s] for s in range(math.ceil(frames[-1]["t_s"]))]
    assert summary["peak"]["people"] == max(per_second.values()) >= 1

    # The run's own report (fed as the run went) is the same report; the run's summary counts the same.
    assert json.loads((root / "run_report" / "summary.json").read_text()) == summary
    assert (root / "run_report" / "people.csv").read_bytes() == (root / "report" / "people.csv").read_bytes()
    run_summary = json.loads((root / "s.json").read_text())
    assert run_summary["people"]["people"] == people and run_summary["people"]["left_out"] == len(ends) - len(kept)
    assert run_summary["report"] == str(root / "run_report")


def test_charts_decode(run) -> None:
    root, _ = run
    for name in ("age_gender.png", "in_view.png", "dwell.png"):
        image = cv2.imread(str(root / "report" / name))
        assert image is not None and image.shape == (1000, 2000, 3), name


def _offline_prefix() -> list:
    """``unshare -n`` (a network namespace with no interface) where this user may make one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []  # the page's Content-Security-Policy and Chromium's flags still keep it offline


def test_chromium_shows_the_page_with_its_charts(run, tmp_path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    root, _ = run
    shot = tmp_path / "report.png"
    command = [*_offline_prefix(), chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1400,1500",
               f"--screenshot={shot}", (root / "report" / "report.html").as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1500, 1400)
    # The bars of the people-in-view and dwell charts are on screen (their colours are used nowhere else).
    for chart, bgr in CHART_COLOURS_BGR.items():
        pixels = int(np.all(np.abs(image.astype(int) - bgr) <= 6, axis=2).sum())
        assert pixels > 1000, (chart, pixels)
    shutil.copy(shot, root / "screenshot.png")  # to look at: pytest --basetemp=DIR keeps it


def test_report_on_a_photo_says_why_and_leaves_no_folder(models_env, tmp_path, caplog):
    """A photo has no tracks: --report warns once and makes no (empty) report folder."""
    import logging

    photo = SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"
    with caplog.at_level(logging.WARNING):
        assert main(["--source", str(photo), "--no-window", "--output", str(tmp_path / "g.jpg"),
                     "--report", str(tmp_path / "people")]) == 0
    assert any("--report needs tracked mode" in record.getMessage() for record in caplog.records)
    assert (tmp_path / "g.jpg").is_file() and not (tmp_path / "people").exists()
