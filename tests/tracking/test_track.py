"""Tracker, classification/detection schedules and label smoothing, on synthetic boxes."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

from streamer.config import ClassifierConfig, TrackingConfig
from streamer.tracking.track import Track
from streamer.tracking.tracker import Tracker
from streamer.types import Detections

GROUPS = ClassifierConfig().age_groups
FPS = 10.0


def make_tracker(**changes) -> Tracker:
    return Tracker(TrackingConfig(enabled=True, **changes), GROUPS)


def box(cx: float, cy: float, size: float = 60.0) -> Tuple[float, float, float, float]:
    half = size / 2
    return (cx - half, cy - half, cx + half, cy + half)


def dets(boxes: Sequence[Tuple[float, float, float, float]], score: float = 0.9) -> Detections:
    if not boxes:
        return Detections.empty()
    return Detections(np.array(boxes, np.float32), np.full(len(boxes), score, np.float32))


def centre(track: Track) -> np.ndarray:
    return (track.xyxy[:2] + track.xyxy[2:]) / 2


def nearest_id(tracks: List[Track], cx: float, cy: float) -> int:
    distances = [np.hypot(*(centre(tr) - (cx, cy))) for tr in tracks]
    return tracks[int(np.argmin(distances))].id


# --- tracking ---


@pytest.mark.parametrize(
    "dy, speed_px, hidden_frames",
    [
        (10.0, 8.0, ()),  # one face passes just above the other
        (0.0, 8.0, ()),  # same height: boxes coincide at the crossing
        (5.0, 12.0, (13, 14, 15)),  # the far face is occluded while they cross
        (20.0, 20.0, (14,)),  # fast, with a one-frame miss at the crossing
        (5.0, 15.0, (13, 14, 15, 16)),  # occluded for longer than its own width: its velocity finds it
    ],
)
def test_crossing_faces_keep_their_ids(dy: float, speed_px: float, hidden_frames: Tuple[int, ...]) -> None:
    tracker = make_tracker(min_hits=1)
    middle = 320.0
    n_frames = 30
    start = middle - speed_px * n_frames / 2
    ids: Optional[Tuple[int, int]] = None
    for i in range(n_frames + 1):
        ax, bx = start + speed_px * i, 2 * middle - (start + speed_px * i)
        boxes = [box(ax, 240.0)]
        if i not in hidden_frames:
            boxes.append(box(bx, 240.0 + dy))
        tracks = tracker.update(dets(boxes), i, i / FPS)
        # An occluded face's box goes after max_missed (2) misses: no box where no face is seen.
        expect_shown = 1 if i in hidden_frames[2:] else 2
        assert len(tracks) == expect_shown, f"frame {i}: expected {expect_shown} faces shown, got {tracks}"
        if ids is None:
            ids = (nearest_id(tracks, ax, 240.0), nearest_id(tracks, bx, 240.0 + dy))
            assert ids[0] != ids[1]
        elif abs(ax - bx) > 30:  # where the true faces are apart, each is nearest its own track
            assert (nearest_id(tracks, ax, 240.0), nearest_id(tracks, bx, 240.0 + dy)) == ids, f"frame {i}"
    assert ids == (1, 2)
    assert tracker.pop_ended() == []


@pytest.mark.parametrize(
    "away_s, same_id",
    [(0.5, True), (2.5, True), (3.5, False), (10.0, False)],
)
def test_face_leaving_and_returning(away_s: float, same_id: bool) -> None:
    tracker = make_tracker(max_age_s=3.0, max_missed=2)
    frame = 0
    for _ in range(10):
        tracker.update(dets([box(200, 200)]), frame, frame / FPS)
        frame += 1
    first_id = tracker.tracks[0].id
    assert [tr.id for tr in tracker.pop_new()] == [first_id]
    leave_t = (frame - 1) / FPS
    while frame / FPS - leave_t <= away_s:
        shown = tracker.update(dets([]), frame, frame / FPS)
        assert shown == [] or frame - (leave_t * FPS) <= 2  # hidden after max_missed runs
        frame += 1
    for _ in range(3):
        shown = tracker.update(dets([box(204, 198)]), frame, frame / FPS)
        frame += 1
    assert len(shown) == 1
    assert (shown[0].id == first_id) is same_id
    ended = tracker.pop_ended()
    assert [tr.id for tr in ended] == ([] if same_id else [first_id])
    if not same_id:
        assert ended[0].seen_s == pytest.approx(0.9)
        assert [tr.id for tr in tracker.pop_new()] == [shown[0].id]


@pytest.mark.parametrize("misses, shown_throughout", [(1, True), (3, True), (5, True), (6, False)])
def test_missed_detections_up_to_max_missed_keep_the_id(misses: int, shown_throughout: bool) -> None:
    tracker = make_tracker(max_missed=5, max_age_s=60.0)
    frame = 0
    for _ in range(5):
        tracker.update(dets([box(300, 200)]), frame, frame / FPS)
        frame += 1
    (track,) = tracker.tracks
    shown_each = []
    for _ in range(misses):
        shown = tracker.update(dets([]), frame, frame / FPS)
        shown_each.append([tr.id for tr in shown] == [track.id])
        frame += 1
    assert all(shown_each) is shown_throughout
    assert tracker.tracks[0].missed == misses
    (back,) = tracker.update(dets([box(302, 201)]), frame, frame / FPS)
    assert back.id == track.id and back.missed == 0


def test_many_faces_keep_their_ids_over_100_frames() -> None:
    rng = np.random.default_rng(7)
    tracker = make_tracker(max_missed=5, min_hits=1)
    grid = [(80.0 + 120 * col, 80.0 + 110 * row) for row in range(4) for col in range(5)]
    id_of: Dict[int, int] = {}
    for frame in range(100):
        drift = np.array([0.8 * frame, 0.3 * frame])
        keep = [k for k in range(len(grid)) if frame < 2 or rng.random() > 0.05]  # ~5 % misses
        rng.shuffle(keep)
        boxes = []
        for k in keep:
            cx, cy = np.array(grid[k]) + drift + rng.uniform(-4, 4, 2)
            boxes.append(box(cx, cy, 56 + rng.uniform(-3, 3)))
        tracks = tracker.update(dets(boxes), frame, frame / FPS)
        assert len(tracks) == len(grid)
        for k, (gx, gy) in enumerate(grid):
            track_id = nearest_id(tracks, gx + drift[0], gy + drift[1])
            assert id_of.setdefault(k, track_id) == track_id, f"frame {frame}: face {k} changed id"
    assert sorted(id_of.values()) == list(range(1, 21))
    assert len(tracker.pop_new()) == 20 and tracker.pop_ended() == []


def test_boxes_are_never_extrapolated_but_a_hidden_face_is_looked_for_ahead() -> None:
    tracker = make_tracker(min_hits=1, max_missed=0, max_age_s=60.0)
    for frame in range(0, 12, 2):  # detector every other frame, face moving 5 px per frame
        tracker.update(dets([box(100 + 5 * frame, 200)]), frame, frame / FPS)
    (track,) = tracker.predict(11, 1.1)
    assert centre(track)[0] == pytest.approx(150.0, abs=0.5), "no flow: the box stays on the evidence"
    assert track.missed == 0 and track.last_frame == 10
    assert tracker.update(dets([]), 12, 1.2) == []  # not found: hidden at once (max_missed 0)
    # Back 8 frames later, 40 px on where it was heading: more than a face size from its last box.
    (back,) = tracker.update(dets([box(150 + 5 * 10 + 40, 200)]), 20, 2.0)
    assert back.id == track.id


def test_follow_moves_boxes_with_flow_and_looks_when_it_is_lost() -> None:
    tracker = make_tracker(min_hits=2, max_missed=2)
    tracker.update(dets([box(100, 100)]), 0, 0.0)
    looked: List[int] = []

    def look_found(track: Track):
        looked.append(track.id)
        return dets([tuple(track.xyxy)]), None

    (track,) = tracker.follow(1, 0.1, lambda tr: tr.xyxy + 3, look_found)  # tentative: looked for
    assert track.confirmed and looked == [1] and track.hits == 2
    np.testing.assert_allclose(track.xyxy, np.array(box(103, 103)), atol=1e-4)
    (track,) = tracker.follow(2, 0.2, lambda tr: tr.xyxy + 2, look_found)  # confirmed, flow holds: no look
    assert looked == [1] and track.detection is None
    np.testing.assert_allclose(track.xyxy, np.array(box(105, 105)), atol=1e-4)
    shown_each = [len(tracker.follow(f, f / FPS, lambda tr: None, lambda tr: None)) for f in range(3, 7)]
    assert shown_each == [1, 1, 0, 0], "flow lost and no face in the region: hidden after max_missed misses"
    assert tracker.tracks[0].id == track.id  # kept, hidden, until max_age_s


def test_a_shown_track_claims_a_detection_before_a_hidden_one() -> None:
    tracker = make_tracker(min_hits=1, max_missed=0, max_age_s=60.0)
    tracker.update(dets([box(260, 200)]), 0, 0.0)  # B stands here, then leaves
    for frame in range(1, 6):  # A walks towards B's old spot, B unseen
        (a,) = tracker.update(dets([box(150 + 10 * frame, 200)]), frame, frame / FPS)
    assert a.id == 2
    (shown,) = tracker.update(dets([box(240, 200)]), 6, 0.6)  # nearer B's old box than A's prediction
    assert shown.id == 2
    assert [tr.id for tr in tracker.tracks] == [1, 2]


def test_one_frame_false_positive_is_not_a_person() -> None:
    tracker = make_tracker(min_hits=2)
    tracker.update(dets([box(100, 100), box(400, 300)]), 0, 0.0)
    tracker.update(dets([box(101, 100)]), 1, 0.1)
    assert [tr.id for tr in tracker.pop_new()] == [1]
    assert [tr.id for tr in tracker.tracks] == [1]
    assert [tr.id for tr in tracker.end_all()] == [1]
    assert tracker.tracks == [] and tracker.pop_ended() == []


def test_empty_detections_and_frame_order() -> None:
    tracker = make_tracker()
    assert tracker.update(Detections.empty(), 0, 0.0) == []
    assert tracker.update(Detections.empty(with_landmarks=True), 1, 0.1) == []
    with pytest.raises(ValueError, match="frame_index went back"):
        tracker.update(Detections.empty(), 0, 0.2)


@pytest.mark.parametrize("settled", [False, True])
def test_a_box_the_flow_holds_is_checked_less_often_once_its_labels_are_settled(settled: bool) -> None:
    tracker = make_tracker(min_hits=1, min_samples=2, max_samples=3, verify_every_frames=5,
                           settled_verify_every_frames=10)
    (track,) = tracker.update(dets([box(100, 100)]), 0, 0.0)
    if settled:  # max_samples agreeing samples: the labels take no more
        for _ in range(3):
            track.add_sample(0.95, 30.0, 60, 0.9)
    looked: List[int] = []

    def look_found(tr: Track):
        looked.append(tr.last_frame)
        return dets([tuple(tr.xyxy)]), None

    for frame in range(1, 21):
        tracker.follow(frame, frame / FPS, lambda tr: tr.xyxy + 1, look_found)
    # Looks on frames last detected 5 (10) frames before: the detection on frame 0, then each look.
    assert looked == ([0, 10] if settled else [0, 5, 10, 15])



def classified_track(tracker: Tracker) -> Track:
    """A track seen on frames 0-1 with one sample taken on frame 1 (t = 0.1 s)."""
    tracker.update(dets([box(200, 200, 60)]), 0, 0.0)
    (track,) = tracker.update(dets([box(200, 200, 60)]), 1, 0.1)
    track.add_sample(0.9, 30.0, 60, 0.9)
    return track


@pytest.mark.parametrize(
    "frame, t_s, size, expected",
    [
        (1, 0.1, 60, False),  # same frame as the sample
        (2, 0.2, 60, False),  # next frame
        (10, 1.0, 60, False),  # 9 frames, 0.9 s
        (11, 1.05, 60, True),  # 10 frames
        (4, 1.1, 60, True),  # 1 s (slow source)
        (3, 0.3, 72, False),  # area x1.44 < regrow 1.5
        (3, 0.3, 74, True),  # area x1.52
    ],
)
def test_classification_interval_and_regrow(frame: int, t_s: float, size: float, expected: bool) -> None:
    tracker = make_tracker(classify_every_frames=10, classify_every_s=1.0, regrow_ratio=1.5)
    track = classified_track(tracker)
    if frame > 1:
        tracker.update(dets([box(200, 200, size)]), frame, t_s)
    assert tracker.needs_classification(track, frame, t_s) is expected


def test_classification_first_sight_coasting_and_cap() -> None:
    tracker = make_tracker(classify_every_frames=2, min_samples=2, max_samples=3)
    tracker.update(dets([box(200, 200)]), 0, 0.0)
    (track,) = tracker.tracks
    assert tracker.needs_classification(track, 0, 0.0)  # first sight, even tentative
    track.add_sample(0.9, 30.0, 60, 0.9)
    tracker.predict(2, 0.2)
    assert not tracker.needs_classification(track, 2, 0.2), "not detected on this frame: reuse labels"
    taken = 1
    for frame in range(3, 30):
        tracker.update(dets([box(200, 200)]), frame, frame / FPS)
        if tracker.needs_classification(track, frame, frame / FPS):
            track.add_sample(0.9, 30.0, 60, 0.9)
            taken += 1
    assert taken == track.labels.samples == 3


@pytest.mark.parametrize(
    "steady_from, first_sample",
    [
        (0, 0),  # standing in view at first sight: sampled at once
        (4, 4),  # walking in (cut by the edge, smeared): waits until the view is steady
        (None, 10),  # never steady (walking past): after classify_every_s (1 s at 10 fps) all the same
    ],
)
def test_a_face_walking_in_is_first_sampled_on_a_steady_view(steady_from: Optional[int], first_sample: int) -> None:
    tracker = make_tracker(min_hits=1, classify_every_frames=3, classify_every_s=1.0)
    sampled = []
    for frame in range(14):
        (track,) = tracker.update(dets([box(200, 200)]), frame, frame / FPS)
        steady = steady_from is not None and frame >= steady_from
        if tracker.needs_classification(track, frame, frame / FPS, steady=steady):
            track.add_sample(0.9, 30.0, 60, 0.9)
            sampled.append(frame)
    assert sampled[0] == first_sample
    if steady_from is None:
        assert sampled == [10], "unsteady views: one sample per classify_every_s"


def test_a_face_the_detector_keeps_losing_is_sampled_all_the_same() -> None:
    # Lost every third frame and back (its motion unknown again each time, so never steady): timed
    # from first sight, not from each return.
    tracker = make_tracker(min_hits=1, max_missed=0, max_age_s=5.0, classify_every_s=1.0)
    sampled = []
    for frame in range(30):
        shown = tracker.update(dets([box(200, 200)] if frame % 3 != 2 else []), frame, frame / FPS)
        for track in shown:
            if tracker.needs_classification(track, frame, frame / FPS, steady=False):
                track.add_sample(0.9, 30.0, 60, 0.9)
                sampled.append(frame)
    assert sampled and sampled[0] in (10, 11) and len(sampled) >= 2, sampled


def test_two_faces_that_crossed_and_swapped_boxes_trade_labels_instead_of_splitting() -> None:
    tracker = make_tracker(min_hits=1, min_samples=2)
    a, b = tracker.update(dets([box(100, 200), box(300, 200)]), 0, 0.0)
    for _ in range(3):
        a.add_sample(0.03, 25.0, 80, 0.9)  # a young woman
        b.add_sample(0.96, 60.0, 80, 0.9)  # an old man
    for _ in range(2):  # they crossed: each box now on the other's face
        a.add_sample(0.95, 61.0, 80, 0.9)
        b.add_sample(0.04, 26.0, 80, 0.9)
    assert a.labels.changed_person and b.labels.changed_person
    assert tracker.split(a, 1, 0.1) is a and not b.labels.contradicted
    assert (a.labels.gender, b.labels.gender) == ("male", "female")
    assert a.labels.samples == b.labels.samples == 5 and a.labels.age_years == pytest.approx(60.4)
    assert [tr.id for tr in tracker.tracks] == [a.id, b.id] and tracker.pop_ended() == []


def test_a_settled_person_is_checked_when_back_and_split_when_someone_else_stands_there() -> None:
    # A queue at a counter where the next person looks like the one who left (appearance veto off):
    # the tracker gives them the same track. Its labels are capped and settled, so only a check of
    # who it is when the face is back finds out.
    tracker = make_tracker(min_hits=1, min_samples=2, max_samples=4, classify_every_frames=2, max_missed=0,
                           max_age_s=5.0, reappear_appearance_distance=1.0)
    sampled = []
    for frame in range(30):
        here = not 12 <= frame < 15  # A leaves at frame 12, B steps in at 15
        shown = tracker.update(dets([box(200, 200)] if here else []), frame, frame / FPS)
        for track in shown:
            if tracker.needs_classification(track, frame, frame / FPS):
                adult_man, old_woman = (0.95, 30.0 + frame % 2), (0.03, 70.0)
                p_male, age = adult_man if frame < 12 else old_woman
                track.add_sample(p_male, age, 80, 0.9)
                sampled.append((frame, track.id))
                if track.labels.changed_person:
                    tracker.split(track, frame, frame / FPS)
    ids = sorted({track_id for _, track_id in sampled})
    assert len(ids) == 2, sampled
    first = [frame for frame, track_id in sampled if track_id == ids[0]]
    assert len([f for f in first if f < 12]) == 4, "capped at max_samples while A stood there"
    assert 15 in first, "checked as soon as the face was back"
    (b,) = tracker.tracks
    assert b.id == ids[1] and b.labels.p_male < 0.1 and b.labels.age_years == pytest.approx(70.0)
    assert [tr.id for tr in tracker.pop_ended()] == [ids[0]]


def test_a_check_past_the_cap_that_agrees_changes_nothing() -> None:
    tracker = make_tracker(min_hits=1, min_samples=2, max_samples=3)
    (track,) = tracker.update(dets([box(200, 200)]), 0, 0.0)
    for age in (30.0, 32.0, 31.0):
        track.add_sample(0.9, age, 80, 0.9)
    track.add_sample(0.9, 39.0, 80, 0.9)  # the same person (9 years off is no contradiction)
    assert track.labels.samples == 3 and track.labels.age_years == pytest.approx(31.0)
    assert not track.labels.contradicted


def test_speed_is_unknown_at_first_sight_and_just_after_coming_back() -> None:
    tracker = make_tracker(min_hits=1, max_missed=0, max_age_s=5.0)
    (track,) = tracker.update(dets([box(200, 200, 60)]), 0, 0.0)
    assert track.speed is None
    tracker.update(dets([box(206, 200, 60)]), 1, 0.1)  # 6 px in a frame: a tenth of its width
    assert track.speed == pytest.approx(0.1)
    tracker.update(dets([box(206, 200, 60)]), 2, 0.2)  # stopped: the running mean halves
    assert track.speed == pytest.approx(0.05)
    tracker.update(dets([]), 3, 0.3)  # hidden
    (back,) = tracker.update(dets([box(206, 200, 60)]), 5, 0.5)
    assert back is track and track.speed is None and (track.view_frame, track.view_t_s) == (5, 0.5)


@pytest.mark.parametrize(
    "gate_open, with_track, frames_since, seconds_since, expected",
    [
        (True, False, 1, 0.03, True),  # motion and nobody tracked: always detect
        (True, True, 1, 0.03, False),  # motion while tracking: at most every detect_min_frames
        (True, True, 4, 0.13, False),
        (True, True, 5, 0.17, True),
        (False, False, 100, 10.0, False),  # still and empty: nothing to refresh
        (False, True, 1, 0.03, False),
        (False, True, 14, 0.47, False),
        (False, True, 15, 0.5, True),  # every 15 frames
        (False, True, 3, 1.0, True),  # or every second at a low frame rate
    ],
)
def test_detection_schedule(
    gate_open: bool, with_track: bool, frames_since: int, seconds_since: float, expected: bool
) -> None:
    tracker = make_tracker(detect_every_frames=15, detect_every_s=1.0, detect_min_frames=5, max_age_s=60.0)
    tracker.update(dets([box(200, 200)] if with_track else []), 4, 9.97)
    tracker.update(dets([box(200, 200)] if with_track else []), 5, 10.0)  # second hit: confirmed
    assert tracker.detect_due(5 + frames_since, 10.0 + seconds_since, gate_open) is expected


def test_tentative_track_does_not_throttle_detection() -> None:
    tracker = make_tracker(detect_min_frames=5)
    tracker.update(dets([box(200, 200)]), 0, 0.0)  # one hit: not yet a person
    assert tracker.detect_due(1, 0.03, gate_open=True), "confirm a new face on the next moving frame"
    tracker.update(dets([box(200, 200)]), 1, 0.03)
    assert not tracker.detect_due(2, 0.07, gate_open=True), "confirmed: motion detection is throttled"


def test_detection_is_throttled_less_while_labels_are_still_gathered() -> None:
    tracker = make_tracker(detect_min_frames=15, classify_every_frames=10, min_samples=3, detect_every_frames=100,
                           detect_every_s=100.0)
    tracker.update(dets([box(200, 200)]), 0, 0.0)
    (track,) = tracker.update(dets([box(200, 200)]), 1, 0.03)  # confirmed, no labels yet
    assert not tracker.detect_due(10, 0.3, gate_open=True)
    assert tracker.detect_due(11, 0.37, gate_open=True), "a sample is due: detect at the classifier's pace"
    for _ in range(3):
        track.add_sample(0.9, 30.0, 60, 0.9)
    assert not tracker.detect_due(11, 0.37, gate_open=True), "labels shown: back to detect_min_frames"
    assert tracker.detect_due(16, 0.53, gate_open=True)


# --- smoothing ---


@pytest.mark.parametrize("centre_p, shown", [(0.8, "male"), (0.2, "female")])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_noisy_gender_never_flips(centre_p: float, shown: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tracker = make_tracker(min_hits=1, min_samples=3, max_samples=60)
    (track,) = tracker.update(dets([box(200, 200)]), 0, 0.0)
    probabilities = np.clip(rng.normal(centre_p, 0.25, 60), 0.0, 1.0)
    raw_other = sum(1 for p in probabilities if (p >= 0.5) != (shown == "male"))
    assert raw_other >= 3, "the noise must make single samples disagree for this test to mean anything"
    seen = set()
    for p in probabilities:
        track.add_sample(float(p), 35.0, float(rng.uniform(30, 150)), float(rng.uniform(0.6, 1.0)))
        if track.labels.label_ready:
            seen.add(track.labels.gender)
    assert seen == {shown}
    assert track.labels.gender_p == pytest.approx(track.labels.p_male if shown == "male" else 1 - track.labels.p_male)


@pytest.mark.parametrize("male_first", [True, False])
def test_gender_changes_only_past_the_hysteresis_margin(male_first: bool) -> None:
    tracker = make_tracker(min_hits=1, min_samples=1, max_samples=100, gender_hysteresis=0.1)
    (track,) = tracker.update(dets([box(200, 200)]), 0, 0.0)
    # The mean crosses 0.5, lingers on the other side within the margin, then passes the margin.
    sequence = [0.6] + [0.45] * 20 + [0.2] * 20
    if not male_first:
        sequence = [1.0 - p for p in sequence]
    first, other = ("male", "female") if male_first else ("female", "male")
    history = []
    for p_male in sequence:
        track.add_sample(p_male, 30.0, 60, 1.0)
        history.append((abs(track.labels.p_male - 0.5), track.labels.p_male, track.labels.gender))
    flips = [away for (away, _, g), (_, _, prev) in zip(history[1:], history) if g != prev]
    assert len(flips) == 1 and flips[0] >= 0.1 - 1e-9
    on_other_side = [g for _, p, g in history if (p < 0.5) == male_first]
    assert first in on_other_side, "the mean must linger on the other side for this test to mean anything"
    assert history[0][2] == first and track.labels.gender == other


@pytest.mark.parametrize("hysteresis_years, flips", [(2.0, False), (0.0, True)])
def test_age_near_a_group_boundary(hysteresis_years: float, flips: bool) -> None:
    tracker = make_tracker(min_hits=1, min_samples=1, max_samples=100, age_hysteresis_years=hysteresis_years)
    (track,) = tracker.update(dets([box(200, 200)]), 0, 0.0)
    groups_shown = []
    for k in range(40):
        track.add_sample(0.5, 29.0 if k % 2 == 0 else 31.2, 60, 0.9)  # the mean hovers around 30
        groups_shown.append(track.labels.age_group)
    changes = sum(1 for a, b in zip(groups_shown, groups_shown[1:]) if a != b)
    assert (changes >= 2) is flips
    assert set(groups_shown) <= {"20-29", "30-39"}


def test_age_group_follows_a_real_change() -> None:
    tracker = make_tracker(min_hits=1, min_samples=1, max_samples=100, age_hysteresis_years=2.0)
    (track,) = tracker.update(dets([box(200, 200)]), 0, 0.0)
    for _ in range(3):
        track.add_sample(0.5, 24.0, 60, 0.9)
    assert track.labels.age_group == "20-29"
    for _ in range(30):  # 18 years on: within one person's spread, not someone else
        track.add_sample(0.5, 42.0, 60, 0.9)
        if track.labels.age_group == "30-39":
            assert track.labels.age_years >= 32.0
    assert track.labels.age_group == "40-49" and track.labels.samples == 33


def test_samples_are_weighted_by_face_size_and_score() -> None:
    tracker = make_tracker(min_hits=1, min_samples=1)
    (track,) = tracker.update(dets([box(200, 200)]), 0, 0.0)
    track.add_sample(0.9, 40.0, 100, 1.0)  # weight 100
    track.add_sample(0.3, 20.0, 50, 0.5)  # weight 25
    assert track.labels.age_years == pytest.approx((100 * 40 + 25 * 20) / 125)
    assert track.labels.p_male == pytest.approx((100 * 0.9 + 25 * 0.3) / 125)


@pytest.mark.parametrize("min_samples", [1, 3, 5])
def test_label_not_ready_before_min_samples(min_samples: int) -> None:
    tracker = make_tracker(min_hits=1, min_samples=min_samples, max_samples=10)
    (track,) = tracker.update(dets([box(200, 200)]), 0, 0.0)
    for k in range(min_samples):
        assert not track.labels.label_ready
        assert track.labels.gender is None and track.labels.age_group is None and track.labels.gender_p is None
        assert track.to_record()["age"] is None
        track.add_sample(0.8, 33.0, 60, 0.9)
        assert track.labels.samples == k + 1
    assert track.labels.label_ready
    assert (track.labels.gender, track.labels.age_group) == ("male", "30-39")


@pytest.mark.parametrize(
    "p_male, age_years, face_px, score, bad",
    [
        (1.5, 30.0, 60, 0.9, "p_male"),
        (float("nan"), 30.0, 60, 0.9, "p_male"),
        (0.5, -1.0, 60, 0.9, "age_years"),
        (0.5, 30.0, 0, 0.9, "face_px"),
        (0.5, 30.0, 60, 1.2, "score"),
    ],
)
def test_add_sample_rejects_bad_values(
    p_male: float, age_years: float, face_px: float, score: float, bad: str
) -> None:
    tracker = make_tracker(min_hits=1)
    (track,) = tracker.update(dets([box(200, 200)]), 0, 0.0)
    with pytest.raises(ValueError, match=bad):
        track.add_sample(p_male, age_years, face_px, score)
    assert track.labels.samples == 0


def test_someone_stepping_into_the_spot_another_left_is_a_new_person() -> None:
    # A queue at a counter: A leaves, B steps into the same spot a moment later. Their faces'
    # colours differ (appearance distance ~1): B must not inherit A's id and labels.
    tracker = make_tracker(min_hits=1, max_missed=0, max_age_s=5.0, reappear_appearance_distance=0.25)
    red, blue = np.zeros(72, np.float32), np.zeros(72, np.float32)
    red[0], blue[40] = 1.0, 1.0
    for frame in range(3):
        (a,) = tracker.update(dets([box(200, 200)]), frame, frame / FPS, appearances=[red])
    assert tracker.update(dets([]), 3, 0.3) == []
    (b,) = tracker.update(dets([box(202, 199)]), 4, 0.4, appearances=[blue])
    assert b.id != a.id
    # B holds A's spot: A is gone for good (no coming back as whoever stands there next).
    assert [tr.id for tr in tracker.tracks] == [b.id] and [tr.id for tr in tracker.pop_ended()] == [a.id]


def test_a_cut_ends_every_track() -> None:
    tracker = make_tracker(min_hits=1)
    for frame in range(3):
        (a,) = tracker.update(dets([box(200, 200)]), frame, frame / FPS)
    (b,) = tracker.update(dets([box(200, 200)]), 3, 0.3, cut=True)
    assert b.id != a.id and [tr.id for tr in tracker.pop_ended()] == [a.id]


def test_fusion_rejects_an_outlier_and_weighs_a_better_view_more() -> None:
    tracker = make_tracker(min_hits=1, min_samples=3, max_samples=100)
    tracker.update(dets([box(200, 200)]), 0, 0.0)
    (track,) = tracker.tracks
    for age in (30.0, 32.0, 31.0, 29.0):
        track.add_sample(0.9, age, 100, 0.9)
    track.add_sample(0.9, 48.0, 100, 0.9)  # a blurred view: 18 years off, not a new person
    assert track.labels.outliers == 1 and track.labels.age_years == pytest.approx(30.5)
    sharp, blurred = make_tracker(min_hits=1, min_samples=1), make_tracker(min_hits=1, min_samples=1)
    for tr in (sharp, blurred):
        tr.update(dets([box(200, 200)]), 0, 0.0)
    a, b = sharp.tracks[0], blurred.tracks[0]
    a.add_sample(0.7, 30.0, 100, 0.9, quality=1.0)
    a.add_sample(0.7, 40.0, 100, 0.9, quality=0.2)
    b.add_sample(0.7, 30.0, 100, 0.9, quality=0.2)
    b.add_sample(0.7, 40.0, 100, 0.9, quality=1.0)
    assert a.labels.age_years < 35.0 < b.labels.age_years


def test_a_different_person_in_the_box_splits_the_track() -> None:
    tracker = make_tracker(min_hits=1, min_samples=2)
    tracker.update(dets([box(200, 200)]), 0, 0.0)
    (first,) = tracker.tracks
    for _ in range(4):
        first.add_sample(0.95, 8.0, 100, 0.9)  # a boy
    first.add_sample(0.05, 60.0, 100, 0.9)  # one odd view: counted, not folded in
    assert not first.labels.changed_person and first.labels.age_years == pytest.approx(8.0)
    first.add_sample(0.04, 62.0, 100, 0.9)  # again: someone else
    assert first.labels.changed_person
    second = tracker.split(first, 1, 0.1)
    assert second.id != first.id and second.confirmed and second.labels.samples == 2
    assert second.labels.age_years == pytest.approx(61.0) and second.labels.p_male < 0.1
    assert [tr.id for tr in tracker.pop_ended()] == [first.id]
    assert [tr.id for tr in tracker.tracks] == [second.id]


def test_a_settled_person_is_not_classified_again() -> None:
    tracker = make_tracker(min_hits=1, min_samples=2, classify_every_frames=1, max_samples=50)
    taken = 0
    for frame in range(40):
        tracker.update(dets([box(200, 200)]), frame, frame / FPS)
        (track,) = tracker.tracks
        if tracker.needs_classification(track, frame, frame / FPS):
            track.add_sample(0.95, 30.0 + (frame % 2), 100, 0.9)
            taken += 1
    assert track.labels.settled and 4 <= taken < 10


def test_a_face_back_after_a_gap_must_look_like_the_one_who_left() -> None:
    tracker = make_tracker(min_hits=1, max_missed=0, max_age_s=5.0)
    a_colours = np.zeros(72, np.float32)
    a_colours[:4] = 0.25
    similar, other = a_colours.copy(), np.zeros(72, np.float32)
    similar[:2], similar[2:4] = 0.3, 0.2  # a little lighter: distance ~0.05
    other[2:6] = 0.25  # half the colours shared: distance ~0.7, under the shown-track veto
    tracker.update(dets([box(200, 200)]), 0, 0.0, appearances=[a_colours])
    (a,) = tracker.update(dets([box(200, 200)]), 1, 0.1, appearances=[a_colours])
    tracker.update(dets([]), 2, 0.2)  # hidden
    (b,) = tracker.update(dets([box(200, 200)]), 3, 0.3, appearances=[other])
    assert b.id != a.id
    tracker2 = make_tracker(min_hits=1, max_missed=0, max_age_s=5.0)
    tracker2.update(dets([box(200, 200)]), 0, 0.0, appearances=[a_colours])
    tracker2.update(dets([]), 1, 0.1)
    (back,) = tracker2.update(dets([box(201, 200)]), 2, 0.2, appearances=[similar])
    assert back.id == 1
