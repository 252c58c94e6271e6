"""The tracking benchmark's measuring stick: synthetic clips put their faces where their ground
truth says, the metrics count hand-made cases right, and bench/tracking.py runs end to end."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from test_bench_smoke import BENCH


def _load(name: str):
    """A bench module, imported by name (its dataclasses need it in sys.modules)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def _face(xyxy, track=None, classified=False):
    face = {"xyxy": list(xyxy), "classified": classified, "gender": None, "age_group": None}
    if track is not None:
        face["track"] = track
    return face


def _truth(person, xyxy, counts=True):
    return {"person": person, "xyxy": list(xyxy), "counts": counts}


A, B = (100, 100, 180, 190), (300, 100, 380, 190)  # two faces far apart, 80x90 px


@pytest.mark.parametrize("scenario", ["crossing", "queue"])
def test_synthetic_clip_is_deterministic_from_its_seed(shared, scenario):
    synthetic = _load("synthetic")
    first = list(synthetic.SyntheticClip(scenario, seed=3, n_frames=12).frames())
    again = list(synthetic.SyntheticClip(scenario, seed=3, n_frames=12).frames())
    other = list(synthetic.SyntheticClip(scenario, seed=4, n_frames=12).frames())
    assert len(first) == 12 and first[0][0].shape == (480, 640, 3) and first[0][0].dtype == np.uint8
    for (bgr, faces), (bgr2, faces2) in zip(first, again):
        assert np.array_equal(bgr, bgr2) and faces == faces2
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    assert synthetic.SyntheticClip(scenario, seed=3).people == synthetic.SyntheticClip(scenario, seed=3).people


@pytest.mark.parametrize("scenario", sorted(["crossing", "enter_pause_leave", "queue", "group"]))
def test_synthetic_faces_are_pasted_exactly_where_the_truth_says(shared, scenario):
    synthetic = _load("synthetic")
    clip = synthetic.SyntheticClip(scenario, seed=0, noise=False)
    background = synthetic.background().astype(np.int16)
    checked = 0
    for index, (bgr, faces) in enumerate(clip.frames()):
        if index % 20:
            continue
        changed = np.abs(bgr.astype(np.int16) - background).max(axis=2) > 0
        inside = np.zeros_like(changed)
        for face in faces:
            x1, y1, x2, y2 = (int(round(v)) for v in face.paste_xyxy)
            inside[y1:y2, x1:x2] = True
        assert not changed[~inside].any(), f"frame {index}: pixels changed outside every pasted region"
        for face in faces:
            x1, y1, x2, y2 = (int(round(v)) for v in face.xyxy)
            px1, py1, px2, py2 = face.paste_xyxy
            assert px1 <= face.xyxy[0] <= face.xyxy[2] <= px2 and py1 <= face.xyxy[1] <= face.xyxy[3] <= py2
            if face.visible:
                # The face fills its box: most of its pixels differ from the background (at least
                # the ellipse inscribed in it, pi/4, for a UTKFace chip that is all face).
                assert changed[y1:y2, x1:x2].mean() > 0.75, (index, face)
                checked += 1
    assert checked >= 5
    for person in clip.people:
        assert person.source and (person.age is None) == (person.gender is None)


def test_synthetic_clip_written_to_mp4_and_json_round_trips(shared, tmp_path):
    synthetic = _load("synthetic")
    clip = synthetic.SyntheticClip("queue", seed=1, n_frames=10)
    video, truth_path = synthetic.write_clip(clip, tmp_path)
    meta, truth = synthetic.read_truth(truth_path)
    assert video.stat().st_size > 0 and meta["frames"] == len(truth) == 10
    assert truth == [faces for _, faces in clip.frames()]
    assert {p["id"] for p in meta["people"]} == {1, 2, 3}
    assert any(p["age"] is not None and p["gender"] in ("male", "female") for p in meta["people"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([video.name, truth_path.name])  # no temp files left


@pytest.mark.parametrize(
    "shown, precision, recall, switches, ids_max",
    [
        # Perfect: each person keeps one track.
        ([[_face(A, 1), _face(B, 2)]] * 4, 1.0, 1.0, 0, 1),
        # Person A's track is replaced by a new id from frame 2: one switch.
        ([[_face(A, 1), _face(B, 2)]] * 2 + [[_face(A, 3), _face(B, 2)]] * 2, 1.0, 1.0, 1, 2),
        # The ids swap once (frames 2-3): one switch for each person, two ids each.
        ([[_face(A, 1), _face(B, 2)]] * 2 + [[_face(A, 2), _face(B, 1)]] * 2, 1.0, 1.0, 2, 2),
        # An extra box on empty background in one frame: precision drops, recall does not.
        ([[_face(A, 1), _face(B, 2)]] * 3 + [[_face(A, 1), _face(B, 2), _face((500, 300, 560, 370), 3)]],
         8 / 9, 1.0, 0, 1),
        # A box that drifted off face A (IoU < 0.4) is both a false box and a miss.
        ([[_face(A, 1), _face(B, 2)]] * 3 + [[_face((150, 100, 230, 190), 1), _face(B, 2)]], 7 / 8, 7 / 8, 0, 1),
        # A box too small to count (30 px) anywhere is ignored; nothing shown for B: misses.
        ([[_face(A, 1), _face((500, 300, 530, 330), 7)]] * 4, 1.0, 0.5, 0, 1),
    ],
)
def test_tracking_metrics_on_hand_made_events(shown, precision, recall, switches, ids_max):
    tracking = _load("tracking")
    truth = [[_truth(1, A), _truth(2, B)] for _ in range(4)]
    frames = [{"faces": faces, "stale": False} for faces in shown]
    result = tracking.score(truth, frames, new_ids=[1, 2])
    assert result["precision"] == pytest.approx(precision, abs=1e-4)
    assert result["recall"] == pytest.approx(recall, abs=1e-4)
    assert result["id_switches"] == switches
    assert result["ids_per_person_max"] == ids_max
    assert result["true_people"] == 2 and result["reported_people"] == 2


def test_tracking_metrics_excuse_boxes_on_faces_that_do_not_count():
    tracking = _load("tracking")
    # Person 2 is hidden (counts False): a box on it is neither a hit nor a false box, and its id
    # still follows the person; untracked boxes give no id figures.
    truth = [[_truth(1, A), _truth(2, B, counts=False)]]
    result = tracking.score(truth, [{"faces": [_face(A), _face(B)], "stale": True}])
    assert (result["precision"], result["recall"], result["false_boxes"]) == (1.0, 1.0, 0)
    assert result["id_switches"] is None and result["reported_people"] is None
    stale_fp = tracking.score([[_truth(1, A)]], [{"faces": [_face(A, 1), _face(B, 1)], "stale": True}])
    assert stale_fp["false_boxes_on_stale_frames"] == 1 and stale_fp["merged_ids"] == 0


@pytest.mark.integration
def test_tracking_script_quick_on_a_tiny_synthetic_clip(shared, tmp_path, models_env):
    out = tmp_path / "tracking.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "tracking.py"), "--quick", "--synthetic", "queue", "--frames", "24", "--clips",
         "--no-original", "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| clip | detector | mode |" in proc.stdout
    rows = {row["mode"]: row for row in json.loads(out.read_text(encoding="utf-8"))["rows"]}
    assert set(rows) == {"all", "gated", "tracked"}
    for row in rows.values():
        assert row["frames"] == 24 and row["true_faces"] > 0 and row["fps"] > 0
        assert 0.0 <= row["precision"] <= 1.0 and 0.0 <= row["recall"] <= 1.0
    assert rows["all"]["id_switches"] is None and rows["tracked"]["id_switches"] is not None
    assert rows["tracked"]["detector_runs_per_frame"] < rows["all"]["detector_runs_per_frame"]
