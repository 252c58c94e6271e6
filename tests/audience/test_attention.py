"""Looking at the camera: head pose from 5 landmarks of a face turned by a known yaw and pitch,
glances and attention time, and watchers vs passers-by in a zone."""

from __future__ import annotations

import numpy as np
import pytest
from audience_paths import FPS, landmarks, play, sightings

from streamer.audience import Audience, Glances, head_pose, looking
from streamer.config import parse_config


@pytest.mark.parametrize("yaw", [-70, -45, -30, -10, 0, 10, 25, 45, 70])
@pytest.mark.parametrize("roll", [0, 20])
def test_yaw_of_a_turned_face(yaw, roll):
    estimated, pitch = head_pose(landmarks((300, 200), yaw_deg=yaw, roll_deg=roll)[None])
    assert estimated[0] == pytest.approx(yaw, abs=0.5)
    assert pitch[0] == pytest.approx(0.0, abs=0.5)


@pytest.mark.parametrize("pitch", [-40, -20, 0, 15, 30])
@pytest.mark.parametrize("roll", [0, -25])
def test_pitch_of_a_tilted_face(pitch, roll):
    yaw, estimated = head_pose(landmarks((300, 200), pitch_deg=pitch, roll_deg=roll)[None])
    assert estimated[0] == pytest.approx(pitch, abs=0.5)
    assert yaw[0] == pytest.approx(0.0, abs=0.5)


@pytest.mark.parametrize("yaw, pitch", [(20, 15), (-30, -20), (40, 10), (-15, 30)])
def test_yaw_and_pitch_together(yaw, pitch):
    # A head turned on the neck, then nodding: the nod changes how far the nose stands out.
    est_yaw, est_pitch = head_pose(landmarks((300, 200), yaw_deg=yaw, pitch_deg=pitch, roll_deg=10)[None])
    assert est_yaw[0] == pytest.approx(yaw, abs=0.5)
    assert est_pitch[0] == pytest.approx(pitch, abs=0.5)


@pytest.mark.parametrize(
    "yaw, pitch, expected",
    [(0, 0, True), (25, 0, True), (-29, 10, True), (35, 0, False), (-60, 0, False), (0, 30, False),
     (0, -24, True), (90, 0, False)],
)
def test_looking_at_the_camera(yaw, pitch, expected):
    assert looking(landmarks((200, 150), yaw, pitch)[None], 30.0, 25.0).tolist() == [expected]


def test_degenerate_landmarks_are_not_looking():
    assert looking(np.zeros((1, 5, 2), np.float32), 30.0, 25.0).tolist() == [False]
    assert looking(np.zeros((0, 5, 2), np.float32), 30.0, 25.0).shape == (0,)


def run_glances(states, min_glance_s=0.3, gap_s=0.5, dt=0.1):
    """``states``: the frontal test per frame (True, False, None: not measured)."""
    glances = Glances(min_glance_s, gap_s)
    for k, state in enumerate(states):
        glances.update(k * dt, dt if k else 0.0, state)
    return glances


@pytest.mark.parametrize(
    "states, count, attention_s",
    [
        # 10 frames frontal (1.0 s), 2 away (less than the gap), 8 frontal, then away: one glance of 1.8 s.
        ([True] * 10 + [False] * 2 + [True] * 8 + [False] * 10, 1, 1.8),
        # Away for the gap (0.5 s) splits it in two glances.
        ([True] * 5 + [False] * 6 + [True] * 5 + [False] * 6, 2, 1.0),
        # Too short (0.2 s) to be a glance: no attention at all.
        ([False] * 3 + [True] * 2 + [False] * 10, 0, 0.0),
        # Measured only every third frame (the tracker's frames in between hold the state).
        ([True, None, None] * 4 + [False, None, None] * 3, 1, 1.2),
        # Never measured (a detector without landmarks).
        ([None] * 20, 0, 0.0),
    ],
)
def test_glances_and_attention_time(states, count, attention_s):
    glances = run_glances(states)
    assert glances.count == count
    assert glances.attention_s == pytest.approx(attention_s, abs=1e-6)


def test_watchers_and_passers_by_in_a_zone():
    """Two people stand in a zone 2 s each; one looks at the camera (yaw 10) for 1 s, the other is
    turned (yaw 50) all along: one watcher, one passer-by, and attention on the end records."""
    config = parse_config({"audience": {"zones": {"screen": {"polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}}})
    frames = []
    for k in range(80):
        at = (150.0, 180.0) if 10 <= k < 60 else (500.0, 180.0)
        yaw_one = 10.0 if 20 <= k < 45 else 60.0
        frames.append(sightings({1: at, 2: at}, yaw={1: yaw_one, 2: 50.0}))
    records = play(Audience(config.audience), frames)
    exits = {r["track"]: r for r in records if r["event"] == "zone_exit"}
    assert exits[1]["watched"] and not exits[2]["watched"]
    assert exits[1]["attention_s"] == pytest.approx(25 / FPS, abs=1e-3)
    assert exits[1]["dwell_s"] == pytest.approx(50 / FPS, abs=1e-3)
    ends = {r["track"]: r for r in records if r["event"] == "end"}
    assert (ends[1]["glances"], ends[1]["attention_s"]) == (1, pytest.approx(25 / FPS, abs=1e-3))
    assert (ends[2]["glances"], ends[2]["attention_s"]) == (0, 0.0)


def test_attention_off_adds_no_fields():
    config = parse_config({"audience": {"attention": False, "zones": {"z": {"polygon": [[0, 0], [1, 0], [1, 1]]}}}})
    records = play(Audience(config.audience), [sightings({1: (500.0, 10.0)}, yaw={1: 0.0})] * 5)
    assert [set(r) & {"attention_s", "glances", "watched"} for r in records] == [set()] * len(records)


def test_head_pose_reads_the_nose_offset_as_the_classifiers_yaw_ratio():
    """head_pose works on plain floats for speed; its yaw must stay align.yaw_ratio's measure (one
    home for that geometry): tan(yaw) times the nose's depth after the nod is the ratio."""
    from streamer.audience.attention import _MIN_NOSE_DEPTH, NOSE_DEPTH, NOSE_DROP
    from streamer.classifiers.align import yaw_ratio

    marks = np.random.default_rng(2).uniform(0, 100, (200, 5, 2)).astype(np.float32)
    yaw, pitch = head_pose(marks)
    depth = np.maximum(NOSE_DROP * np.sin(np.radians(pitch)) + NOSE_DEPTH * np.cos(np.radians(pitch)), _MIN_NOSE_DEPTH)
    np.testing.assert_allclose(np.tan(np.radians(yaw)) * depth, yaw_ratio(marks), atol=1e-3)
