"""The worker's own logic on synthetic frames: what is analysed and what reused (marked stale),
what the picture shows, the track records a person leaves, and how samples are weighted."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.config import ClassifierConfig, MotionConfig, ReportConfig, TrackingConfig
from streamer.pipeline import FaceAnalyzer
from streamer.report.tally import PeopleTally
from streamer.tracking.motion import MotionGate
from streamer.tracking.tracker import Tracker
from streamer.types import Detections, Face, Frame, GenderAge
from streamer.worker import Finding, PictureSpec, Worker, sample_quality, steady_views

SIZE_HW = (240, 320)
FACE_PX = 48
GROUPS = ClassifierConfig().age_groups
_TEXTURE = np.random.default_rng(5).integers(0, 255, (FACE_PX, FACE_PX, 3), dtype=np.uint8)


def frame_with_face(x, y) -> np.ndarray:
    """Flat grey, with a textured square (the "face") whose top-left is at (x, y); None: no face."""
    bgr = np.full(SIZE_HW + (3,), 128, np.uint8)
    if x is not None:
        bgr[y:y + FACE_PX, x:x + FACE_PX] = _TEXTURE
    return bgr


class SquareDetector:
    """Finds the textured squares (anything not flat grey), with landmarks of a frontal face."""

    name = "square"

    def __init__(self) -> None:
        self.runs = 0

    def detect(self, bgr: np.ndarray) -> Detections:
        self.runs += 1
        mask = (np.abs(bgr.astype(int) - 128).sum(axis=2) > 0).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:] if area >= 20]
        if not boxes:
            return Detections.empty(with_landmarks=True)
        xyxy = np.array(boxes, np.float32)
        centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        offsets = np.array([[-10, -8], [10, -8], [0, 0], [-8, 10], [8, 10]], np.float32)
        return Detections(xyxy, np.full(len(boxes), 0.9, np.float32), (centre[:, None, :] + offsets).astype(np.float32))


class Labels:
    """A classifier that calls every face a 34-year-old man."""

    def predict(self, bgr, detections):
        n = len(detections)
        return GenderAge(np.full(n, 0.95, np.float32), np.full(n, 34.0, np.float32), ("30-39",) * n)


def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(SquareDetector(), Labels(), min_face_px=10)


def frame(bgr: np.ndarray, index: int) -> Frame:
    return Frame(bgr, index, index / 30.0, "synthetic", index / 30.0)


def test_without_gate_every_frame_is_analysed_and_drawn_on_a_copy():
    worker = Worker(finding=Finding(analyzer()), picture=PictureSpec(hud=False))
    bgr = frame_with_face(100, 80)
    original = bgr.copy()
    for index in range(3):
        result, picture = worker.process(frame(bgr, index))
        assert not result.stale and result.frames_since_analysis == 0
        (face,) = result.faces
        assert face.classified and face.gender == "male" and face.age_group == "30-39"
        assert picture is not None and picture.shape == bgr.shape and not np.array_equal(picture, bgr)
    np.testing.assert_array_equal(bgr, original)  # the overlay never draws on the source frame
    assert (worker.stats.analysed, worker.stats.skipped) == (3, 0)


def test_in_place_the_overlay_is_drawn_on_the_frame_itself():
    # A stream's frames are kept by nobody after the worker (app.build_worker): no copy is made.
    worker = Worker(finding=Finding(analyzer()), picture=PictureSpec(hud=True, in_place=True))
    bgr = frame_with_face(100, 80)
    original = bgr.copy()
    result, picture = worker.process(frame(bgr, 0))
    assert picture is bgr and result.frame.bgr is bgr
    assert not np.array_equal(bgr, original)
    (face,) = result.faces
    assert face.classified


def test_a_still_scene_behind_the_gate_reuses_the_faces_marked_stale():
    detector = SquareDetector()
    worker = Worker(finding=Finding(FaceAnalyzer(detector, Labels(), min_face_px=10), gate=MotionGate(MotionConfig())))
    bgr = frame_with_face(100, 80)
    results = [worker.process(frame(bgr, index))[0] for index in range(10)]
    assert not results[0].stale
    stale = [r for r in results[1:] if r.stale]
    assert stale, "a still scene must not run the models on every frame"
    for result in stale:
        assert result.faces == results[0].faces  # reused, never pretending to be fresh
        assert result.frames_since_analysis == result.frame.index - max(
            r.frame.index for r in results if not r.stale and r.frame.index <= result.frame.index)
    assert detector.runs == worker.stats.analysed < 10
    assert worker.stats.skipped == len(stale)


def test_aggregate_privacy_draws_no_picture_at_all():
    worker = Worker(finding=Finding(analyzer()), picture=PictureSpec(pictures=False, hud=True))
    result, picture = worker.process(frame(frame_with_face(100, 80), 0))
    assert picture is None and len(result.faces) == 1


def test_a_tracked_person_leaves_new_update_and_end_records_and_is_counted_once():
    cfg = TrackingConfig(detect_every_frames=3, detect_min_frames=3)
    people = PeopleTally(ReportConfig(min_seen_s=0.0), GROUPS)
    worker = Worker(finding=Finding(analyzer(), tracker=Tracker(cfg, GROUPS)), people=people)
    records = []
    for index in range(60):
        bgr = frame_with_face(100, 80) if index < 45 else frame_with_face(None, None)
        result, _ = worker.process(frame(bgr, index))
        records += worker.pop_records()
    records += worker.finish()
    events = [r["event"] for r in records]
    assert events[0] == "new" and events[-1] == "end" and events.count("new") == events.count("end") == 1, events
    assert {r["track"] for r in records} == {records[0]["track"]}
    labelled = [r for r in records if r.get("gender")]
    assert labelled and labelled[-1]["gender"] == "male" and labelled[-1]["age_group"] == "30-39"
    end = records[-1]
    assert end["seen_s"] == pytest.approx(44 / 30.0, abs=0.2) and end["last_frame"] < 50
    assert people.counts()["people"] == 1 and people.counts()["by_gender"]["male"] == 1
    assert worker.finish() == []  # nothing left open


class ChildLabels:
    """A classifier that reads every face as a 6-year-old, boy by ``p_male``."""

    def __init__(self, p_male: float) -> None:
        self.p_male = p_male

    def predict(self, bgr, detections):
        n = len(detections)
        return GenderAge(np.full(n, self.p_male, np.float32), np.full(n, 6.0, np.float32), ("3-9",) * n)


@pytest.mark.parametrize("p_male, gender", [(0.75, None), (0.97, "male")])
def test_a_tracked_child_read_unsure_shows_and_records_no_gender(p_male, gender):
    cfg = TrackingConfig(detect_every_frames=3, detect_min_frames=3)
    people = PeopleTally(ReportConfig(min_seen_s=0.0), GROUPS)
    finding = Finding(FaceAnalyzer(SquareDetector(), ChildLabels(p_male), min_face_px=10), tracker=Tracker(cfg, GROUPS))
    worker = Worker(finding=finding, people=people)
    records, faces = [], []
    for index in range(30):
        result, _ = worker.process(frame(frame_with_face(100, 80), index))
        faces += [f for f in result.faces if f.classified]
        records += worker.pop_records()
    records += worker.finish()
    assert faces and {(f.gender, f.age_group) for f in faces} == {(gender, "3-9")}
    assert all(f.gender_p is None for f in faces) == (gender is None)
    labelled = [r for r in records if r["event"] in ("update", "end")]
    assert labelled and {(r["gender"], r["age_group"]) for r in labelled} == {(gender, "3-9")}
    assert people.counts()["by_gender"]["male"] == (gender == "male")


def test_finish_ends_a_person_still_in_view_at_the_last_frame():
    cfg = TrackingConfig(detect_every_frames=3, detect_min_frames=3)
    worker = Worker(finding=Finding(analyzer(), tracker=Tracker(cfg, GROUPS)))
    for index in range(20):
        worker.process(frame(frame_with_face(100, 80), index))
        worker.pop_records()
    (end,) = worker.finish()
    assert end["event"] == "end" and end["last_frame"] == 19


def test_sample_quality_prefers_sharp_frontal_faces():
    sharp = frame_with_face(100, 80)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    box = np.array([[100, 80, 100 + FACE_PX, 80 + FACE_PX]], np.float32)
    frontal = np.array([[[112, 96], [136, 96], [124, 104], [114, 116], [134, 116]]], np.float32)
    turned = frontal.copy()
    turned[0, 2, 0] = 134  # the nose far towards one eye: a face turned
    q_sharp = sample_quality(sharp, Detections(box, np.ones(1, np.float32), frontal), max_yaw=0.6)
    q_blur = sample_quality(blurred, Detections(box, np.ones(1, np.float32), frontal), max_yaw=0.6)
    q_turned = sample_quality(sharp, Detections(box, np.ones(1, np.float32), turned), max_yaw=0.6)
    assert 0.0 < q_blur[0] < q_sharp[0] <= 1.0
    assert 0.0 < q_turned[0] < q_sharp[0]
    assert sample_quality(sharp, Detections.empty(with_landmarks=True), max_yaw=0.6).shape == (0,)


@pytest.mark.parametrize(
    "x, speed, steady, weight",
    [
        (100, 0.01, True, (0.9, 1.0)),  # inside the frame, swaying
        (100, 0.2, False, (0.0, 0.1)),  # walking: smeared
        (100, None, False, (1.0, 1.0)),  # first sight: its motion not known, nothing against it
        (0, 0.01, False, (0.0, 0.1)),  # cut by the left edge
        (SIZE_HW[1] - FACE_PX, 0.01, False, (0.0, 0.1)),  # cut by the right edge
    ],
)
def test_a_steady_view_is_inside_the_frame_and_slow_and_others_weigh_less(x, speed, steady, weight):
    detections = Detections(np.array([[x, 80, x + FACE_PX, 80 + FACE_PX]], np.float32), np.ones(1, np.float32))
    assert steady_views(SIZE_HW, detections, [speed]).tolist() == [steady]
    bgr = frame_with_face(x, 80)
    (still,) = sample_quality(bgr, detections, None)  # the face's sharpness alone
    (quality,) = sample_quality(bgr, detections, None, [speed])
    assert weight[0] - 1e-6 <= quality / still <= weight[1] + 1e-6 if x == 100 else quality <= weight[1]


class Spy(Labels):
    """Labels, and the boxes of the faces it was asked about."""

    def __init__(self) -> None:
        self.asked = []

    def predict(self, bgr, detections):
        self.asked += [tuple(float(v) for v in xyxy) for xyxy in detections.xyxy]
        return super().predict(bgr, detections)


def test_a_face_walking_in_from_the_edge_is_first_classified_inside_the_frame_and_still():
    spy = Spy()
    cfg = TrackingConfig(detect_every_frames=1, detect_min_frames=1, min_hits=1)
    worker = Worker(finding=Finding(FaceAnalyzer(SquareDetector(), spy, min_face_px=10), tracker=Tracker(cfg, GROUPS)))
    for index in range(40):
        left = min(-FACE_PX // 2 + 16 * index, 100)  # half out at first, 16 px a frame (a third of its width), then stops
        bgr = np.full(SIZE_HW + (3,), 128, np.uint8)
        bgr[80:80 + FACE_PX, max(left, 0):left + FACE_PX] = _TEXTURE[:, max(-left, 0):]
        result, _ = worker.process(frame(bgr, index))
    assert spy.asked, "labelled in the end"
    x1, _, x2, _ = spy.asked[0]
    assert x1 == 100 and x2 == 100 + FACE_PX, "first classified where it stopped, not on the way in"
    assert result.faces[0].classified, "labelled once min_samples steady views were taken"


def test_the_hud_reports_the_share_of_frames_skipped():
    worker = Worker(finding=Finding(analyzer(), gate=MotionGate(MotionConfig())), picture=PictureSpec(hud=True))
    bgr = frame_with_face(100, 80)
    for index in range(10):
        worker.process(frame(bgr, index))
    skipped = round(100 * worker.stats.skipped / 10)
    assert f"skip {skipped}%" in worker.hud_lines(dropped=2)[1] and "drop 2" in worker.hud_lines(dropped=2)[1]


def test_faces_too_small_to_label_are_found_but_not_classified():
    worker = Worker(finding=Finding(FaceAnalyzer(SquareDetector(), Labels(), min_face_px=FACE_PX + 1)))
    result, _ = worker.process(frame(frame_with_face(100, 80), 0))
    (face,) = result.faces
    assert isinstance(face, Face) and face.too_small and not face.classified and face.gender is None
