"""face-api.js AgeGenderNet as a classifier: ``_postprocess`` on hand-made blobs, the blob it feeds,
loading through the model store (converted once, cached beside the weights) and labels on real
faces from ../shared, in both engines."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA, SHARED_MODELS

from streamer.classifiers import CLASSIFIERS, build_classifier, classifier_model_id
from streamer.classifiers.calibration import LabelCalibration
from streamer.classifiers.faceapi import (
    FACEAPI_SIZE,
    MODEL_ID,
    WEIGHTS_BIN,
    WEIGHTS_MANIFEST,
    FaceApiGenderAge,
)
from streamer.config import Config, override
from streamer.errors import ModelError
from streamer.models.conversion_cache import cache_paths
from streamer.models.store import ModelStore
from streamer.models.tfjs2onnx import CACHE_NAME
from streamer.types import Detections, GenderAge

GROUPS = Config().classifier.age_groups
SHARED_FACEAPI = SHARED_MODELS / "faceapi_agegender_npm"


# ---- _postprocess on hand-made blobs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "age, gender, p_male, age_years, group",
    [
        ([[34.2]], [[0.9, 0.1]], 0.9, 34.2, "30-39"),  # male first, as AgeGenderNet's probMale = gender[0]
        ([[5.0]], [[0.2, 0.8]], 0.2, 5.0, "3-9"),
        ([[-1.5]], [[0.5, 0.5]], 0.5, 0.0, "0-2"),  # a regression may go below 0: clamped
        ([[95.0]], [[0.3, 0.7]], 0.3, 95.0, "70+"),
    ],
)
def test_postprocess_reads_male_first_and_clamps_age(age, gender, p_male, age_years, group):
    out = FaceApiGenderAge._postprocess(np.array(age, np.float32), np.array(gender, np.float32), GROUPS)
    assert out.p_male[0] == pytest.approx(p_male) and out.p_male_raw[0] == pytest.approx(p_male)
    assert out.age_years[0] == pytest.approx(age_years, abs=1e-4) and out.age_group == (group,)
    assert out.age_raw[0] == pytest.approx(age[0][0])
    assert np.isnan(out.age_spread).all(), "a regression has no distribution to take a spread from"
    lo, hi = out.age_range[0]
    assert 0.0 <= lo <= out.age_years[0] <= hi


def test_postprocess_batch_and_calibrated_range():
    cal = LabelCalibration(
        np.array([0.0, 120.0]), np.array([0.0, 120.0]), np.array([0.5, 0.9]), np.array([10.0, 50.0]),
        np.array([[-1.0, -4.0], [-3.0, -12.0]]), np.array([[1.0, 4.0], [3.0, 12.0]]), 1.0, 0.0, "test",
    )
    out = FaceApiGenderAge._postprocess(
        np.array([10.0, 50.0], np.float32), np.array([[0.95, 0.05], [0.1, 0.9]], np.float32), GROUPS, cal, 0.9
    )
    assert out.age_group == ("10-19", "50-59")
    np.testing.assert_allclose(out.age_range, [[7.0, 13.0], [38.0, 62.0]])
    np.testing.assert_allclose(out.p_male, [0.95, 0.1], atol=1e-6)


def test_postprocess_of_no_rows_is_empty_and_mismatched_rows_fail():
    empty = FaceApiGenderAge._postprocess(np.zeros((0, 1), np.float32), np.zeros((0, 2), np.float32), GROUPS)
    assert len(empty) == 0 and empty.age_range.shape == (0, 2) == GenderAge.empty().age_range.shape
    with pytest.raises(ValueError, match="age has 2 rows, gender 1"):
        FaceApiGenderAge._postprocess(np.zeros((2, 1)), np.zeros((1, 2)), GROUPS)


def test_registered_as_faceapi():
    assert "faceapi" in CLASSIFIERS and classifier_model_id("faceapi") == MODEL_ID


# ---- the real network ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A models folder holding links to the published weights (../shared): the folder is writable,
    so the conversion is cached in it."""
    if not (SHARED_FACEAPI / WEIGHTS_BIN).is_file():
        pytest.skip(f"face-api weights not found at {SHARED_FACEAPI} (../shared)")
    root = tmp_path_factory.mktemp("models")
    (root / MODEL_ID).mkdir()
    for name in (WEIGHTS_MANIFEST, WEIGHTS_BIN):
        (root / MODEL_ID / name).symlink_to(SHARED_FACEAPI / name)
    return root


def _classifier(root: Path, engine: str = "opencv") -> FaceApiGenderAge:
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    config = override(Config(), {"classifier.name": "faceapi", "dnn.engine": engine})
    model = build_classifier(config, ModelStore([root], auto_fetch=False))
    assert isinstance(model, FaceApiGenderAge)
    return model


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    image = cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png"))
    assert image is not None, "skimage_astronaut.png missing from ../shared/media"
    return image


# The astronaut's face in skimage_astronaut.png (Eileen Collins): YuNet's box and landmarks, as
# tests/classifiers/test_classify.py.
ASTRONAUT = Detections(
    np.array([[181.4, 65.8, 267.3, 179.1]], np.float32), np.array([0.9], np.float32),
    np.array([[[203.2, 107.5], [244.6, 107.3], [222.5, 128.6], [205.5, 144.5], [242.9, 145.9]]], np.float32),
)


@pytest.mark.integration
def test_loads_converts_once_and_caches_beside_the_weights(weights):
    onnx, sidecar = cache_paths(weights / MODEL_ID, CACHE_NAME)
    _classifier(weights)
    assert onnx.is_file() and sidecar.is_file()
    stamp = onnx.stat().st_mtime_ns
    _classifier(weights)
    assert onnx.stat().st_mtime_ns == stamp, "the second load reuses the cache"


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["opencv", "onnxruntime"])
def test_labels_the_astronaut(weights, astronaut, engine):
    out = _classifier(weights, engine).predict(astronaut, ASTRONAUT)
    assert len(out) == 1 and out.p_male[0] < 0.5, "Eileen Collins reads female"
    assert 20 <= out.age_years[0] <= 60


@pytest.mark.integration
def test_engines_agree_and_batches_equal_single_calls(weights, astronaut):
    pytest.importorskip("onnxruntime")
    three = Detections.concat([ASTRONAUT, ASTRONAUT.translated(3, -2), ASTRONAUT.translated(-4, 5)])
    cv_batch = _classifier(weights).predict(astronaut, three)
    ort_batch = _classifier(weights, "onnxruntime").predict(astronaut, three)
    np.testing.assert_allclose(cv_batch.age_years, ort_batch.age_years, rtol=1e-3)
    np.testing.assert_allclose(cv_batch.p_male, ort_batch.p_male, atol=1e-4)
    singles = [_classifier(weights).predict(astronaut, three[np.array([i])]) for i in range(3)]
    np.testing.assert_allclose(cv_batch.age_years, [s.age_years[0] for s in singles], rtol=1e-4)


@pytest.mark.integration
def test_blob_is_rgb_bytes_at_112(weights, astronaut):
    model = _classifier(weights)
    blob = model._preprocess(astronaut, ASTRONAUT)
    assert blob.shape == (1, 3, FACEAPI_SIZE, FACEAPI_SIZE) and blob.dtype == np.float32
    assert 0.0 <= blob.min() and blob.max() <= 255.0 and blob.max() > 1.0, "the graph normalises, not the blob"
    from streamer.classifiers.align import aligned_chip

    chip_bgr = aligned_chip(astronaut, ASTRONAUT.landmarks_xy[0], FACEAPI_SIZE, Config().classifier.align_padding,
                            Config().classifier.border)
    np.testing.assert_array_equal(blob[0], chip_bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32))


def test_no_faces_run_nothing(weights, monkeypatch):
    model = _classifier(weights)
    monkeypatch.setattr(model, "forward", lambda blob: pytest.fail("forward on no faces"))
    assert len(model.predict(np.zeros((50, 50, 3), np.uint8), Detections.empty(with_landmarks=True))) == 0


def test_missing_weights_name_the_fetch(tmp_path):
    config = override(Config(), {"classifier.name": "faceapi"})
    with pytest.raises(ModelError, match="streamer models fetch faceapi_agegender"):
        build_classifier(config, ModelStore([tmp_path], auto_fetch=False))
