"""Boxes that follow image evidence: optical flow, region looks, scene cuts, on synthetic frames."""

from __future__ import annotations

from typing import List, Optional, Tuple

import cv2
import numpy as np
import pytest

from streamer.boxes import box_iou
from streamer.config import ClassifierConfig, TrackingConfig
from streamer.picture.grey import GreyFrame
from streamer.pipeline import FaceAnalyzer
from streamer.tracking.flow import BoxFlow
from streamer.tracking.motion import CutDetector
from streamer.tracking.tracker import Tracker
from streamer.types import Detections, Frame, GenderAge
from streamer.worker import Finding, Worker

SIZE_HW = (240, 320)
FACE_PX = 40
_TEXTURE = np.random.default_rng(3).integers(0, 255, (FACE_PX, FACE_PX, 3), dtype=np.uint8)


def frame_with_face(x: float, y: float, texture: np.ndarray = _TEXTURE) -> np.ndarray:
    """A flat grey frame with a textured square ("face") whose top-left is at (x, y)."""
    bgr = np.full(SIZE_HW + (3,), 128, np.uint8)
    if x is None:
        return bgr
    matrix = np.float32([[1, 0, x], [0, 1, y]])
    warped = cv2.warpAffine(texture, matrix, SIZE_HW[::-1], flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128))
    mask = cv2.warpAffine(np.ones((FACE_PX, FACE_PX), np.uint8), matrix, SIZE_HW[::-1]) > 0
    bgr[mask] = warped[mask]
    return bgr


def face_box(x: float, y: float) -> np.ndarray:
    return np.array([x, y, x + FACE_PX, y + FACE_PX], np.float32)


def test_flow_follows_a_moving_face_and_loses_it_when_it_goes():
    flow = BoxFlow()
    flow.next_frame(GreyFrame.of(frame_with_face(50, 60)))
    flow.seed(1, face_box(50, 60))
    box = face_box(50, 60)
    for step in range(1, 15):  # 5 px right and 2 px down per frame
        flow.next_frame(GreyFrame.of(frame_with_face(50 + 5 * step, 60 + 2 * step)))
        box = flow.follow(1, box)
        assert box is not None, f"lost at step {step}"
        np.testing.assert_allclose(box, face_box(50 + 5 * step, 60 + 2 * step), atol=2.0)
    flow.next_frame(GreyFrame.of(frame_with_face(None, None)))  # covered: a flat patch where the face was
    assert flow.follow(1, box) is None
    assert 1 not in flow.keys()


def test_flow_without_points_or_previous_frame_is_lost():
    flow = BoxFlow()
    flow.next_frame(GreyFrame.of(frame_with_face(50, 60)))
    assert flow.follow(7, face_box(50, 60)) is None  # never seeded
    flow.seed(7, np.array([0, 0, 2, 2], np.float32))  # too small to hold points
    assert 7 not in flow.keys()


class CountedCorners:
    """cv2.goodFeaturesToTrack that records the size of each picture and the corners asked for."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Tuple[int, ...], int]] = []
        self._real = cv2.goodFeaturesToTrack

    def __call__(self, image, max_corners, *args, **kwargs):
        self.calls.append((image.shape, max_corners))
        return self._real(image, max_corners, *args, **kwargs)


def test_a_detection_keeps_the_points_the_flow_followed(monkeypatch):
    # Corners are found once per track: a detection on a followed face keeps its points (moved to
    # the detection's frame when the tracker did not follow it there) instead of finding new ones.
    flow = BoxFlow()
    box = face_box(50, 60)
    flow.next_frame(GreyFrame.of(frame_with_face(50, 60)))
    flow.seed(1, box)
    corners = CountedCorners()
    monkeypatch.setattr(cv2, "goodFeaturesToTrack", corners)
    for step in range(1, 8):
        flow.next_frame(GreyFrame.of(frame_with_face(50 + 4 * step, 60)))
        if step % 3:
            box = flow.follow(1, box)
        else:  # a full-frame detection: no follow on this frame
            box = face_box(50 + 4 * step, 60)
            flow.seed(1, box)
        assert box is not None
    assert corners.calls == [], "the detected face's points were found again"
    np.testing.assert_allclose(box, face_box(50 + 4 * 7, 60), atol=2.0)


def test_points_are_topped_up_in_the_face_and_found_again_when_they_drifted(monkeypatch):
    flow = BoxFlow()
    flow.next_frame(GreyFrame.of(frame_with_face(50, 60)))
    flow.seed(1, face_box(50, 60))
    corners = CountedCorners()
    monkeypatch.setattr(cv2, "goodFeaturesToTrack", corners)
    # A flat hand over the left 60 % of the face: its points are lost, the rest follow.
    covered = frame_with_face(52, 60)
    covered[:, : 52 + int(0.6 * FACE_PX)] = 128
    flow.next_frame(GreyFrame.of(covered))
    assert flow.follow(1, face_box(50, 60)) is not None
    flow.next_frame(GreyFrame.of(frame_with_face(52, 60)))
    flow.seed(1, face_box(52, 60))
    (shape, asked), = corners.calls
    inner = round(0.7 * FACE_PX) + 2 * 4  # the face's inner part and the corner measure's reach around it
    assert abs(shape[0] - inner) <= 2 and abs(shape[1] - inner) <= 2, "corners are looked for inside the face only"
    assert 0 < asked < 24, "only the missing points are added"
    # A detection far from where the points lead (they followed something else): all new ones.
    flow.next_frame(GreyFrame.of(frame_with_face(200, 150)))
    flow.seed(1, face_box(200, 150))
    assert corners.calls[-1][1] == 24


def test_a_large_face_is_followed_on_a_smaller_crop():
    # A 200 px face in a 1280x720 frame: grey at 640 (a 100 px face), its crop halved for LK.
    side = 200
    texture = cv2.resize(np.random.default_rng(5).integers(0, 255, (25, 25, 3), dtype=np.uint8), (side, side),
                         interpolation=cv2.INTER_LINEAR)

    def big_frame(x: int, y: int) -> np.ndarray:
        bgr = np.full((720, 1280, 3), 128, np.uint8)
        bgr[y:y + side, x:x + side] = texture
        return bgr

    flow = BoxFlow()
    flow.next_frame(GreyFrame.of(big_frame(300, 200)))
    box = np.array([300, 200, 300 + side, 200 + side], np.float32)
    flow.seed(1, box)
    for step in range(1, 10):
        x, y = 300 + 12 * step, 200 + 4 * step
        flow.next_frame(GreyFrame.of(big_frame(x, y)))
        box = flow.follow(1, box)
        assert box is not None, f"lost at step {step}"
        np.testing.assert_allclose(box, [x, y, x + side, y + side], atol=4.0)


@pytest.mark.parametrize(
    "second, is_cut",
    [
        (lambda a: np.roll(a, 3, axis=1), False),  # the camera panned a little
        (lambda a: np.clip(a.astype(int) + 40, 0, 255).astype(np.uint8), False),  # lights up
        (lambda a: np.random.default_rng(9).integers(0, 255, a.shape, dtype=np.uint8), True),  # another shot
        (lambda a: np.zeros_like(a), False),  # black: nothing to compare
    ],
)
def test_cut_detector(second, is_cut):
    rng = np.random.default_rng(1)
    first = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_CUBIC)
    cuts = CutDetector()
    assert cuts.update(first) is False
    assert cuts.update(second(first)) is is_cut
    greys = CutDetector()  # the same answer from the frames' shared grey pictures
    assert greys.update(GreyFrame.of(first).grey) is False
    assert greys.update(GreyFrame.of(second(first)).grey) is is_cut


class SquareDetector:
    """Finds the textured squares of ``frame_with_face`` (anything not flat grey) in any image."""

    name = "square"

    def detect(self, bgr: np.ndarray) -> Detections:
        mask = (np.abs(bgr.astype(int) - 128).sum(axis=2) > 0).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:] if area >= 20]
        if not boxes:
            return Detections.empty(with_landmarks=True)
        xyxy = np.array(boxes, np.float32)
        centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        marks = np.repeat(centre[:, None, :], 5, axis=1) + np.array([[-8, -6], [8, -6], [0, 0], [-6, 8], [6, 8]], np.float32)
        return Detections(xyxy, np.full(len(boxes), 0.9, np.float32), marks.astype(np.float32))


class FixedLabels:
    def predict(self, bgr, detections):
        n = len(detections)
        return GenderAge(np.full(n, 0.9, np.float32), np.full(n, 30.0, np.float32), ("30-39",) * n)


def run_worker(positions: List[Optional[Tuple[float, float]]], **tracking) -> List[list]:
    """Boxes shown per frame for a face at ``positions`` (None: gone), tracked with flow."""
    cfg = TrackingConfig(**{"detect_every_frames": 15, "detect_min_frames": 15, **tracking})
    analyzer = FaceAnalyzer(SquareDetector(), FixedLabels(), min_face_px=10)
    worker = Worker(finding=Finding(analyzer, tracker=Tracker(cfg, ClassifierConfig().age_groups), flow=BoxFlow()))
    shown = []
    for index, position in enumerate(positions):
        bgr = frame_with_face(*position) if position else frame_with_face(None, None)
        result, _ = worker.process(Frame(bgr, index, index / 30.0, "synthetic", index / 30.0))
        shown.append([(face.track, np.array(face.xyxy)) for face in result.faces])
    return shown


def test_box_follows_a_face_between_detector_runs_and_ends_when_it_leaves():
    positions = [(20 + 6 * i, 80 + 2 * i) for i in range(40)] + [None] * 10
    shown = run_worker(positions)
    ids = {track for boxes in shown for track, _ in boxes}
    assert ids == {1}, ids
    for index in range(2, 40):  # confirmed on frame 1 by a look at its region
        (track, box), = shown[index]
        assert box_iou(box, face_box(*positions[index]))[0, 0] > 0.8, (index, box, positions[index])
    gone = [len(boxes) for boxes in shown[40:]]
    assert gone[3:] == [0] * 7, f"box lingered after the face left: {gone}"


def test_without_flow_a_moving_face_box_is_left_behind():
    # The same clip with flow off: between detector runs the box stays where it was detected.
    positions = [(20 + 6 * i, 80 + 2 * i) for i in range(20)]
    cfg = TrackingConfig(detect_every_frames=15, detect_min_frames=15, flow=False)
    analyzer = FaceAnalyzer(SquareDetector(), FixedLabels(), min_face_px=10)
    worker = Worker(finding=Finding(analyzer, tracker=Tracker(cfg, ClassifierConfig().age_groups)))
    last = None
    for index, position in enumerate(positions):
        result, _ = worker.process(Frame(frame_with_face(*position), index, index / 30.0, "s", index / 30.0))
        last = result.faces
    assert last and box_iou(np.array(last[0].xyxy), face_box(*positions[-1]))[0, 0] < 0.3


def test_tracked_faces_carry_the_persons_age_range():
    class RangedLabels(FixedLabels):
        def predict(self, bgr, detections):
            n = len(detections)
            return GenderAge(np.full(n, 0.9, np.float32), np.full(n, 30.0, np.float32), ("30-39",) * n,
                             age_range=np.tile(np.array([[24.0, 38.0]], np.float32), (n, 1)))

    cfg = TrackingConfig(classify_every_frames=1, min_samples=2)
    analyzer = FaceAnalyzer(SquareDetector(), RangedLabels(), min_face_px=10)
    worker = Worker(finding=Finding(analyzer, tracker=Tracker(cfg, ClassifierConfig().age_groups), flow=BoxFlow()))
    faces = ()
    for index in range(8):
        result, _ = worker.process(Frame(frame_with_face(60, 60), index, index / 30.0, "s", index / 30.0))
        faces = result.faces
    (face,) = faces
    assert face.classified and face.age == pytest.approx(30.0)
    assert face.age_range == pytest.approx((23.0, 37.0))  # the samples' width, centred on the fused age
    assert face.to_event()["age_range"] == [23.0, 37.0]
