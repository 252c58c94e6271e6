"""The audience inside the worker: a synthetic clip of a face (a textured square) walking through a
zone and across a line at known frames, jittering, turned towards the camera for a known stretch;
the tracked run's records, faces and summary tables."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from audience_paths import FPS, SHAPE_HW, landmarks

from streamer.audience import Audience
from streamer.audience.tally import AudienceTally
from streamer.config import ClassifierConfig, TrackingConfig, parse_config
from streamer.pipeline import FaceAnalyzer
from streamer.tracking.tracker import Tracker
from streamer.types import Detections, Frame, GenderAge, age_group_labels
from streamer.worker import Finding, Worker

GROUPS = ClassifierConfig().age_groups
FACE_PX = 48
FRAMES = 100
_TEXTURE = np.random.default_rng(7).integers(0, 255, (FACE_PX, FACE_PX, 3), dtype=np.uint8)
# The walk: left to right along y = 150, 6 px a frame, with up to 5 px of jitter either way.
_JITTER = np.random.default_rng(11).uniform(-5, 5, (FRAMES, 2))
LOOKING_FRAMES = range(30, 50)  # the face turns to the camera (yaw 10) for 20 frames, 0.8 s; 60 otherwise
AUDIENCE = {
    "zones": {"shop": {"polygon": [[0.3, 0.0], [0.6, 0.0], [0.6, 1.0], [0.3, 1.0]], "inertia_frames": 3}},
    "lines": {"exit": {"points": [[0.75, 0.0], [0.75, 1.0]], "direction": "right", "band": 0.03}},
}


def top_left(k: int):
    x, y = 10 + 6 * k + _JITTER[k, 0], 150 + _JITTER[k, 1]
    return (int(round(x)), int(round(y))) if x + FACE_PX < SHAPE_HW[1] else None


class SquareDetector:
    """Finds the textured square, with the landmarks of the model face turned by the scene's yaw."""

    def __init__(self) -> None:
        self.frame = 0

    def detect(self, bgr: np.ndarray) -> Detections:
        mask = (np.abs(bgr.astype(int) - 128).sum(axis=2) > 0).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:] if area >= 100]
        if not boxes:
            return Detections.empty(with_landmarks=True)
        xyxy = np.array(boxes, np.float32)
        yaw = 10.0 if self.frame in LOOKING_FRAMES else 60.0
        marks = np.stack([landmarks(((x1 + x2) / 2, (y1 + y2) / 2), yaw) for x1, y1, x2, y2 in xyxy])
        return Detections(xyxy, np.full(len(boxes), 0.9, np.float32), marks)


class Labels:
    """Every face a 34-year-old man."""

    def predict(self, bgr, detections):
        n = len(detections)
        return GenderAge(np.full(n, 0.95, np.float32), np.full(n, 34.0, np.float32), ("30-39",) * n)


def run_clip():
    config = parse_config({"audience": AUDIENCE, "report": {"min_seen_s": 0.0}})
    detector = SquareDetector()
    tally = AudienceTally(["shop"], ["exit"], age_group_labels(GROUPS))
    # The detector on every frame, so boxes are where the face is (between detections they
    # would be the optical flow's: the same to a pixel or two on real faces).
    tracking = TrackingConfig(detect_every_frames=1, detect_min_frames=1, flow=False)
    worker = Worker(finding=Finding(FaceAnalyzer(detector, Labels(), min_face_px=10), tracker=Tracker(tracking, GROUPS)),
                    audience=Audience(config.audience), audience_tally=tally)
    records, faces = [], []
    for k in range(FRAMES):
        detector.frame = k
        bgr = np.full(SHAPE_HW + (3,), 128, np.uint8)
        corner = top_left(k)
        if corner is not None:
            x, y = corner
            bgr[y:y + FACE_PX, x:x + FACE_PX] = _TEXTURE
        result, _ = worker.process(Frame(bgr, k, k / FPS, "synthetic", k / FPS))
        records += worker.pop_records()
        faces.append(result.faces)
    records += worker.finish()
    return records, faces, tally


def test_a_walk_through_a_zone_and_across_a_line_in_the_worker():
    records, faces, tally = run_clip()
    kinds = [r["event"] for r in records]
    assert kinds.count("zone_enter") == kinds.count("zone_exit") == kinds.count("line_cross") == 1, kinds
    (enter,) = [r for r in records if r["event"] == "zone_enter"]
    (exit_,) = [r for r in records if r["event"] == "zone_exit"]
    (cross,) = [r for r in records if r["event"] == "line_cross"]
    # Truth from the path: frames whose box centre is inside 192-384 px, and the first beyond 480 + 10.8 px.
    centres = [None if top_left(k) is None else top_left(k)[0] + FACE_PX / 2 for k in range(FRAMES)]
    inside = [k for k, cx in enumerate(centres) if cx is not None and 192 < cx < 384]
    assert exit_["dwell_s"] == pytest.approx(len(inside) / FPS, abs=1 / FPS + 1e-6)
    assert enter["enter_t_s"] == pytest.approx(inside[0] / FPS, abs=1e-3)
    beyond = next(k for k, cx in enumerate(centres) if cx is not None and cx > 480 + 0.03 * 360)
    assert (cross["direction"], cross["frame"], cross["line"]) == ("in", beyond, "exit")
    # Records come in order: the track's new, the zone's, the crossing, the end (with attention).
    assert kinds.index("new") < kinds.index("zone_enter") < kinds.index("zone_exit") < kinds.index("line_cross")
    end = records[-1]
    assert end["event"] == "end" and end["glances"] == 1
    assert end["attention_s"] == pytest.approx(len(LOOKING_FRAMES) / FPS, abs=1 / FPS + 1e-6)
    # Faces on the frame say where the person is and whether they look.
    in_zone = [k for k, shown in enumerate(faces) if shown and shown[0].zones == ("shop",)]
    assert in_zone and in_zone[0] == inside[0] + 2  # inside for the inertia's 3 frames
    assert all(face.to_event()["zones"] in ([], ["shop"]) for shown in faces for face in shown)
    assert [k for k, shown in enumerate(faces) if shown and shown[0].looking] == list(LOOKING_FRAMES)
    # The summary's tables: one man of 30-39 in the zone, who looked, and went out through the line.
    summary = tally.summary()
    shop = summary["zones"]["shop"]
    assert (shop["people"], shop["visits"], shop["watchers"], shop["passers_by"]) == (1, 1, 1, 0)
    (row,) = shop["by_group"]
    assert (row["age_group"], row["gender"], row["people"], row["attention_share"]) == ("30-39", "male", 1, 1.0)
    assert summary["lines"]["exit"]["in"] == 1 and summary["lines"]["exit"]["out"] == 0
    assert summary["attention"]["watchers"] == summary["attention"]["people"] == 1


def test_a_worker_without_a_tracker_measures_nothing():
    config = parse_config({"audience": AUDIENCE})
    worker = Worker(finding=Finding(FaceAnalyzer(SquareDetector(), Labels(), min_face_px=10)),
                    audience=Audience(config.audience))
    bgr = np.full(SHAPE_HW + (3,), 128, np.uint8)
    bgr[150:198, 250:298] = _TEXTURE
    result, _ = worker.process(Frame(bgr, 0, 0.0, "photo.jpg", None))
    assert worker.audience is None and worker.pop_records() == []
    assert "zones" not in result.faces[0].to_event() and "looking" not in result.faces[0].to_event()


def test_aggregate_privacy_keeps_the_measure_and_draws_nothing():
    """--privacy aggregate: no picture at all, zones, lines and attention all the same."""
    from streamer.picture.regions import RegionOverlay
    from streamer.worker import PictureSpec

    config = parse_config({"audience": AUDIENCE})
    tracking = TrackingConfig(detect_every_frames=1, detect_min_frames=1, flow=False)
    detector = SquareDetector()
    worker = Worker(finding=Finding(FaceAnalyzer(detector, Labels(), min_face_px=10), tracker=Tracker(tracking, GROUPS)),
                    picture=PictureSpec(pictures=False, regions=RegionOverlay(config.audience)),
                    audience=Audience(config.audience))
    kinds = []
    for k in range(FRAMES):
        detector.frame = k
        bgr = np.full(SHAPE_HW + (3,), 128, np.uint8)
        if top_left(k) is not None:
            x, y = top_left(k)
            bgr[y:y + FACE_PX, x:x + FACE_PX] = _TEXTURE
        _, picture = worker.process(Frame(bgr, k, k / FPS, "synthetic", k / FPS))
        assert picture is None
        kinds += [r["event"] for r in worker.pop_records()]
    kinds += [r["event"] for r in worker.finish()]
    assert kinds.count("zone_exit") == kinds.count("line_cross") == 1
