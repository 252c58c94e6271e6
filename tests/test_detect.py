"""Detector postprocessing on hand-made output blobs, and the real detectors on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.config import Config
from streamer.detect import Res10Detector, Res10OnnxDetector, YuNetDetector, nms_xyxy
from streamer.dnn import has_caffe_importer
from streamer.types import Detections

from conftest import SHARED_MEDIA, SHARED_MODELS


def _ssd_blob(rows):
    """A (1, 1, K, 7) SSD output: [image_id, label, conf, x1, y1, x2, y2] normalised."""
    return np.asarray(rows, np.float32).reshape(1, 1, -1, 7)


@pytest.mark.parametrize(
    "rows, shape_hw, expect_xyxy",
    [
        # One confident face in the middle of a 200x100 frame.
        ([[0, 1, 0.9, 0.25, 0.2, 0.5, 0.8]], (100, 200), [[50, 20, 100, 80]]),
        # Below the score threshold: dropped.
        ([[0, 1, 0.3, 0.25, 0.2, 0.5, 0.8]], (100, 200), []),
        # Boxes spilling over the frame edge are clipped to it.
        ([[0, 1, 0.9, -0.1, -0.2, 0.3, 1.4]], (100, 200), [[0, 0, 60, 100]]),
        # A box entirely outside the frame clips to nothing and is dropped.
        ([[0, 1, 0.9, 1.2, 0.1, 1.5, 0.5]], (100, 200), []),
        # NaN rows (seen from broken inputs) are ignored.
        ([[0, 1, np.nan, 0.1, 0.1, 0.2, 0.2], [0, 1, 0.8, 0.1, 0.1, 0.3, 0.3]], (100, 100), [[10, 10, 30, 30]]),
        # Two overlapping boxes merge into the higher-scoring one.
        ([[0, 1, 0.7, 0.1, 0.1, 0.5, 0.5], [0, 1, 0.9, 0.12, 0.1, 0.52, 0.5]], (100, 100), [[12, 10, 52, 50]]),
    ],
)
def test_res10_postprocess(rows, shape_hw, expect_xyxy):
    det = Res10Detector._postprocess(_ssd_blob(rows), shape_hw, score=0.5, nms_iou=0.3)
    assert det.xyxy.dtype == np.float32 and det.xyxy.shape == (len(expect_xyxy), 4)
    np.testing.assert_allclose(det.xyxy, np.asarray(expect_xyxy, np.float32).reshape(-1, 4), atol=1e-3)
    assert det.landmarks_xy is None


def test_res10_postprocess_empty_has_same_types_as_found():
    empty = Res10Detector._postprocess(_ssd_blob([[0, 1, 0.1, 0, 0, 1, 1]]), (10, 10), 0.5, 0.3)
    found = Res10Detector._postprocess(_ssd_blob([[0, 1, 0.9, 0, 0, 1, 1]]), (10, 10), 0.5, 0.3)
    assert len(empty) == 0 and len(found) == 1
    assert empty.xyxy.dtype == found.xyxy.dtype and empty.xyxy.shape[1:] == found.xyxy.shape[1:]
    assert empty.confidence.dtype == found.confidence.dtype


def test_yunet_postprocess_scales_back_and_keeps_landmarks():
    # One face at (10, 20) size 30x40 in a half-size detector input, landmarks at known points.
    row = [10, 20, 30, 40] + [15, 30, 35, 30, 25, 40, 18, 50, 32, 50] + [0.95]
    low = [0, 0, 5, 5] + [1] * 10 + [0.2]
    det = YuNetDetector._postprocess(np.asarray([row, low], np.float32), 0.5, (200, 200), 0.6, 0.3)
    assert len(det) == 1
    np.testing.assert_allclose(det.xyxy[0], [20, 40, 80, 120])
    assert det.landmarks_xy.shape == (1, 5, 2)
    np.testing.assert_allclose(det.landmarks_xy[0, 0], [30, 60])
    none = YuNetDetector._postprocess(np.zeros((0, 15), np.float32), 1.0, (10, 10), 0.6, 0.3)
    assert len(none) == 0 and none.landmarks_xy.shape == (0, 5, 2)


def test_nms_keeps_separate_boxes_and_orders_by_score():
    xyxy = np.array([[0, 0, 10, 10], [100, 100, 110, 110], [1, 1, 11, 11]], np.float32)
    keep = nms_xyxy(xyxy, np.array([0.5, 0.9, 0.8], np.float32), 0.3)
    assert keep.tolist() == [1, 2]


def test_detections_empty_and_indexing():
    det = Detections.empty(with_landmarks=True)
    assert det.xyxy.shape == (0, 4) and det.landmarks_xy.shape == (0, 5, 2) and len(det) == 0
    full = Detections(np.ones((3, 4), np.float32), np.array([0.1, 0.2, 0.3], np.float32))
    assert len(full[np.array([True, False, True])]) == 2
    with pytest.raises(ValueError):
        Detections(np.ones((3, 3), np.float32), np.ones(3, np.float32))


@pytest.fixture(scope="module")
def detectors():
    cfg = Config()
    # The Caffe original where OpenCV can import it (4.x), else the converted one (5.x).
    res10 = (Res10Detector if has_caffe_importer() else Res10OnnxDetector)(
        SHARED_MODELS / "res10_ssd_caffe/deploy.prototxt",
        SHARED_MODELS / "res10_ssd_caffe/res10_300x300_ssd_iter_140000.caffemodel",
        cfg.detector,
        cfg.dnn,
    )
    yunet = YuNetDetector(SHARED_MODELS / "yunet_2023mar/face_detection_yunet_2023mar.onnx", cfg.detector, cfg.dnn)
    return {"res10": res10, "yunet": yunet}


@pytest.mark.integration
@pytest.mark.parametrize(
    "name, photo, at_least",
    [
        ("res10", "pexels_group_meeting_1080865.jpeg", 4),
        ("yunet", "pexels_group_meeting_1080865.jpeg", 5),
        ("res10", "skimage_astronaut.png", 1),
        ("yunet", "skimage_astronaut.png", 1),
        ("yunet", "pexels_women_on_phones.jpg", 2),
    ],
)
def test_real_detectors_find_faces(detectors, name, photo, at_least):
    bgr = cv2.imread(str(SHARED_MEDIA / photo))
    det = detectors[name].detect(bgr)
    assert len(det) >= at_least
    h, w = bgr.shape[:2]
    assert (det.xyxy[:, [0, 2]] <= w).all() and (det.xyxy[:, [1, 3]] <= h).all() and (det.xyxy >= 0).all()


@pytest.mark.integration
@pytest.mark.parametrize("name", ["res10", "yunet"])
def test_real_detectors_find_nothing_on_blank_and_tiny(detectors, name, blank_frame):
    assert len(detectors[name].detect(blank_frame)) == 0
    assert len(detectors[name].detect(np.zeros((1, 1, 3), np.uint8))) == 0
