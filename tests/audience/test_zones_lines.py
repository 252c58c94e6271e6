"""Zone visits and line crossings on synthetic paths with known frames: exact enter / exit / cross
counts, dwell within one frame, jitter at a zone's edge and in a line's band counting nothing."""

from __future__ import annotations

import numpy as np
import pytest
from audience_paths import FPS, play, sightings

from streamer.audience import Audience
from streamer.config import parse_config

# The left half of the frame (x < 320 px of 640).
LEFT_HALF = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
IN, OUT, GONE = 100.0, 500.0, None  # anchor x inside, outside, not shown


def audience(**zone) -> Audience:
    return Audience(parse_config({"audience": {"zones": {"left": {"polygon": LEFT_HALF, **zone}},
                                               "attention": False}}).audience)


def walk(xs):
    return [sightings({1: None if x is None else (x, 180.0)}) for x in xs]


def zone_records(records):
    return [(r["event"], r["frame"], r.get("enter_t_s"), r.get("exit_t_s")) for r in records
            if r["event"].startswith("zone_")]


@pytest.mark.parametrize(
    "xs, inertia, min_dwell_s, expected",
    [
        # In at frame 5, out from frame 15: enter said at frame 7 (3rd frame in), exit at frame 17.
        ([OUT] * 5 + [IN] * 10 + [OUT] * 5, 3, 0.0, [("zone_enter", 7, 5, None), ("zone_exit", 17, 5, 15)]),
        # Jitter on the way in (runs of 1 and 2 frames): the visit starts with the first run of 3.
        ([OUT, OUT, IN, OUT, IN, IN, OUT, IN, IN, IN, IN, IN, OUT, OUT, OUT, OUT], 3, 0.0,
         [("zone_enter", 9, 7, None), ("zone_exit", 14, 7, 12)]),
        # Jitter on the way out: short runs outside do not end the visit.
        ([IN] * 6 + [OUT, IN, OUT, OUT, IN] + [OUT] * 4, 3, 0.0,
         [("zone_enter", 2, 0, None), ("zone_exit", 13, 0, 11)]),
        # Inertia 1: every frame counts.
        ([OUT, IN, OUT, IN, IN, OUT], 1, 0.0,
         [("zone_enter", 1, 1, None), ("zone_exit", 2, 1, 2), ("zone_enter", 3, 3, None), ("zone_exit", 5, 3, 5)]),
        # Shorter than min_dwell_s (0.5 s = 12.5 frames): nothing at all.
        ([OUT] * 2 + [IN] * 12 + [OUT] * 5, 3, 0.5, []),
        # Long enough: the enter is said once it has lasted 0.5 s (frame 2 + 13), dwell from frame 2.
        ([OUT] * 2 + [IN] * 20 + [OUT] * 5, 3, 0.5, [("zone_enter", 15, 2, None), ("zone_exit", 24, 2, 22)]),
        # Frames where the person is not shown neither break the visit nor end it.
        ([IN] * 4 + [GONE] * 3 + [IN] * 4 + [OUT] * 3, 3, 0.0, [("zone_enter", 2, 0, None), ("zone_exit", 13, 0, 11)]),
        # The track ends in the zone, unseen since frame 8: the visit ended there.
        ([OUT] * 2 + [IN] * 6 + [GONE] * 4, 3, 0.0, [("zone_enter", 4, 2, None), ("zone_exit", 11, 2, 8)]),
        # Seen in the zone to the last frame: the visit ends at the last frame.
        ([OUT] * 2 + [IN] * 6, 3, 0.0, [("zone_enter", 4, 2, None), ("zone_exit", 7, 2, 7)]),
        # Never in for 3 frames in a row: nothing.
        ([IN, IN, OUT, IN, IN, OUT, IN, OUT], 3, 0.0, []),
    ],
)
def test_zone_visits_on_known_paths(xs, inertia, min_dwell_s, expected):
    records = play(audience(inertia_frames=inertia, min_dwell_s=min_dwell_s), walk(xs))
    got = zone_records(records)
    assert [(kind, frame) for kind, frame, _, _ in got] == [(kind, frame) for kind, frame, _, _ in expected]
    for (_, _, enter_t, exit_t), (_, _, enter_frame, exit_frame) in zip(got, expected):
        assert enter_t == pytest.approx(enter_frame / FPS, abs=1e-4)
        if exit_frame is not None:
            assert exit_t == pytest.approx(exit_frame / FPS, abs=1e-4)
    for record in records:
        if record["event"] == "zone_exit":
            assert record["dwell_s"] == pytest.approx(record["exit_t_s"] - record["enter_t_s"], abs=1e-3)
            assert record["zone"] == "left" and record["track"] == 1


def test_a_walk_through_the_zone_dwells_within_one_frame_of_the_truth():
    """x = 20 + 5 k px for 120 frames; the anchor (box centre) is in the left half while
    40 + 5 k < 320, frames 0-55: a dwell of 56 frames, 2.24 s."""
    rng = np.random.default_rng(0)
    xs = [40.0 + 5 * k + rng.uniform(-4, 4) for k in range(120)]
    truth = sum(x < 320 for x in xs) / FPS
    (exit_record,) = [r for r in play(audience(), walk(xs)) if r["event"] == "zone_exit"]
    assert abs(exit_record["dwell_s"] - truth) <= 1 / FPS + 1e-6


LINE = {"door": {"points": [[0.1, 0.5], [0.9, 0.5]], "direction": "down", "band": 0.03}}  # y = 180 px, band 10.8 px


def crossings(ys, x=320.0, lines=LINE):
    records = play(Audience(parse_config({"audience": {"lines": lines, "attention": False}}).audience),
                   [sightings({1: None if y is None else (x, y)}) for y in ys])
    return [(r["direction"], r["frame"]) for r in records if r["event"] == "line_cross"]


@pytest.mark.parametrize(
    "ys, expected",
    [
        ([100, 150, 175, 185, 200, 250], [("in", 4)]),
        ([250, 200, 185, 175, 150, 100], [("out", 4)]),
        # Jitter in the band (171-190 px) round the line, then on: one crossing, at the first frame beyond.
        ([100, 160, 178, 185, 176, 189, 172, 188, 183, 195, 260], [("in", 9)]),
        # Into the band and back: nothing.
        ([100, 150, 175, 189, 178, 186, 160, 100], []),
        # Down, and back up: in, then out.
        ([100, 160, 200, 240, 200, 160, 100], [("in", 2), ("out", 5)]),
        # Across while not shown (hidden by someone): still one crossing, when seen again.
        ([100, 150, None, None, 220, 260], [("in", 4)]),
        # Starting in the band: no side yet, so no crossing until a side is known.
        ([180, 200, 240], []),
    ],
)
def test_line_crossings_with_hysteresis(ys, expected):
    assert crossings(ys) == expected


def test_walking_round_the_end_of_a_line_crosses_nothing():
    # Above the line at x = 320, then beyond its right end (x > 576 px), then below it back at x = 320.
    path = [(320, 100), (450, 100), (600, 150), (620, 200), (600, 260), (320, 260)]
    records = play(Audience(parse_config({"audience": {"lines": LINE, "attention": False}}).audience),
                   [sightings({1: xy}) for xy in path])
    assert [r for r in records if r["event"] == "line_cross"] == []


def test_two_people_through_a_door_and_a_zone_at_known_frames():
    """A shop door (a line at mid-height, in = down) and a shelf (the lower left quarter). Person 1
    comes in (crossing at frame 10), stands at the shelf (frames 20-59) and leaves the way they came;
    person 2 walks in and stays right, away from the shelf; each jitters where it turns."""
    config = parse_config({"audience": {"lines": LINE, "attention": False, "zones": {
        "shelf": {"polygon": [[0.0, 0.6], [0.5, 0.6], [0.5, 1.0], [0.0, 1.0]], "inertia_frames": 3}}}}).audience
    rng = np.random.default_rng(1)
    frames = []
    for k in range(90):
        one = None
        if k < 20:
            one = (150.0, 100.0 + 10 * k)  # down through the door line (y 180 at k = 8, beyond the band at 10)
        elif k < 60:
            one = (150.0 + rng.uniform(-3, 3), 300.0 + rng.uniform(-3, 3))  # at the shelf (y > 216 px)
        elif k < 80:
            one = (150.0, 300.0 - 10 * (k - 60))  # back up and out (the shelf's edge y = 216 at k = 68.4)
        two = (500.0, 100.0 + 4 * k) if k < 60 else None
        frames.append(sightings({1: one, 2: two}, labels={1: ("female", "30-39"), 2: ("male", "20-29")}))
    records = play(Audience(config), frames)
    events = [(r["event"], r["track"], r["frame"]) for r in records if r["event"] != "end"]
    assert ("line_cross", 1, 10) in events and ("line_cross", 2, 23) in events
    shelf = [r for r in records if r["event"].startswith("zone_")]
    assert [(r["event"], r["track"]) for r in shelf] == [("zone_enter", 1), ("zone_exit", 1)]
    # Person 1 is below 216 px (the shelf's top) from frame 12 (y 220) to frame 68 (y 220): 57 frames.
    assert shelf[1]["dwell_s"] == pytest.approx(57 / FPS, abs=1 / FPS)
    assert (shelf[1]["gender"], shelf[1]["age_group"]) == ("female", "30-39")
    directions = {(r["track"], r["direction"]) for r in records if r["event"] == "line_cross"}
    assert directions == {(1, "in"), (1, "out"), (2, "in")}


def test_nobody_on_a_frame_is_the_same_shapes_and_no_records():
    from streamer.audience import Sightings

    empty = Sightings.empty()
    assert (empty.track.shape, empty.xyxy.shape, empty.landmarks_xy.shape, len(empty)) == ((0,), (0, 4), (0, 5, 2), 0)
    measure = Audience(parse_config({"audience": {"zones": {"z": {"polygon": LEFT_HALF}}, "lines": LINE}}).audience)
    assert measure.update(0.0, (360, 640), empty) == [] and measure.occupancy() == {"z": 0}
    assert measure.state(5) == ((), None) and measure.end(5, 0.0) == ([], {"attention_s": 0.0, "glances": 0})


@pytest.mark.parametrize(
    "kwargs, message",
    [({"xyxy": np.zeros((2, 4), np.float32)}, "xyxy must be"),
     ({"landmarks_xy": np.zeros((1, 4, 2), np.float32)}, "landmarks_xy must be"),
     ({"labels": ((None, None),) * 2}, "labels must have")],
)
def test_sightings_check_their_shapes(kwargs, message):
    from streamer.audience import Sightings

    fields = {"track": np.array([1]), "xyxy": np.zeros((1, 4), np.float32), **kwargs}
    with pytest.raises(ValueError, match=message):
        Sightings(**fields)
