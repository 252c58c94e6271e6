"""A live run that starts again keeps what the earlier run wrote (streamer/outputs/plan.py):
a one-file recording gets a numbered neighbour, an earlier report moves to earlier/<time>/."""

from __future__ import annotations

import os
from pathlib import Path

from streamer.outputs.plan import EARLIER_REPORTS, continue_live_outputs

REPORT_NAMES = ("people.csv", "summary.json", "report.html")


def test_a_one_file_recording_is_kept_and_the_next_run_records_beside_it(tmp_path: Path) -> None:
    rec = tmp_path / "rec.mp4"
    assert continue_live_outputs(rec, False, []) == rec  # nothing there yet: the path itself
    rec.write_bytes(b"first")
    assert continue_live_outputs(rec, False, []) == tmp_path / "rec.2.mp4"
    (tmp_path / "rec.2.mp4").write_bytes(b"second")
    assert continue_live_outputs(rec, False, []) == tmp_path / "rec.3.mp4"
    assert rec.read_bytes() == b"first" and (tmp_path / "rec.2.mp4").read_bytes() == b"second"
    # A segmented recording numbers its segments on by itself; no output, nothing to decide.
    assert continue_live_outputs(rec, True, []) == rec
    assert continue_live_outputs(None, False, []) is None


def test_an_earlier_report_moves_to_earlier_with_its_time_and_nothing_is_lost(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    files = [folder / name for name in REPORT_NAMES]
    continue_live_outputs(None, False, files)
    assert not folder.exists()  # nothing earlier: nothing made
    folder.mkdir()
    for round_ in (1, 2):
        for path in files[:2]:  # an earlier run that wrote two of the files
            path.write_text(f"run {round_} {path.name}")
            os.utime(path, (1_700_000_000, 1_700_000_000))  # both rounds at the same second
        continue_live_outputs(None, False, files)
        assert not any(path.exists() for path in files)
    moved = sorted((folder / EARLIER_REPORTS).iterdir())
    assert [path.name for path in moved][1] == moved[0].name + ".2"  # the same time twice: numbered
    for number, earlier in enumerate(moved, 1):
        assert sorted(path.name for path in earlier.iterdir()) == ["people.csv", "summary.json"]
        assert (earlier / "people.csv").read_text() == f"run {number} people.csv"
