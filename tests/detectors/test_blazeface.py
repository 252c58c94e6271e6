"""BlazeFace: anchors and decoding on hand-made output blobs, then the real TFLite files on real photos."""

from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA, SHARED_MODELS

from streamer.boxes import box_iou
from streamer.classifiers.align import MEAN_FACE_YUNET
from streamer.config import Config, override
from streamer.detectors.blazeface import (
    VARIANTS,
    BlazeFaceDetector,
    Letterbox,
    five_landmarks,
    ssd_anchors,
    weighted_nms,
)
from streamer.detectors.yunet import YuNetDetector
from streamer.models.store import ModelStore
from streamer.pipeline import build_detector
from streamer.types import Detections

BLAZEFACE_DIR = SHARED_MODELS / "blazeface_mediapipe"
YUNET_ONNX = SHARED_MODELS / "yunet_2023mar" / "face_detection_yunet_2023mar.onnx"
FULL = VARIANTS["full_range"]


@pytest.mark.parametrize(
    "variant, count, checks",
    [
        # One anchor per cell of a 48x48 grid (stride 4 on 192 px).
        ("full_range", 2304, [(0, (0.5 / 48, 0.5 / 48)), (1, (1.5 / 48, 0.5 / 48)), (48, (0.5 / 48, 1.5 / 48))]),
        # 16x16 cells with 2 anchors each, then 8x8 cells with 6 (three stride-16 layers x 2).
        ("short_range", 896, [(0, (0.5 / 16, 0.5 / 16)), (1, (0.5 / 16, 0.5 / 16)), (2, (1.5 / 16, 0.5 / 16)),
                              (512, (0.5 / 8, 0.5 / 8)), (517, (0.5 / 8, 0.5 / 8)), (518, (1.5 / 8, 0.5 / 8))]),
    ],
)
def test_anchor_count_and_order_follow_mediapipe(variant, count, checks):
    anchors = ssd_anchors(VARIANTS[variant])
    assert anchors.shape == (count, 2) and anchors.dtype == np.float32
    for index, xy in checks:
        np.testing.assert_allclose(anchors[index], xy, atol=1e-6)


@pytest.mark.parametrize(
    "shape_hw, scale_xy, pad_xy",
    [
        ((480, 960), (0.2, 0.2), (0, 48)),  # wide: bars above and below
        ((384, 192), (0.5, 0.5), (48, 0)),  # tall: bars left and right
        ((192, 192), (1.0, 1.0), (0, 0)),
    ],
)
def test_letterbox_fits_the_frame_centred(shape_hw, scale_xy, pad_xy):
    box = Letterbox.fit(shape_hw, 192)
    assert box.scale_xy == pytest.approx(scale_xy) and box.pad_xy_px == pad_xy
    np.testing.assert_allclose(box.to_frame(np.array([pad_xy[0], pad_xy[1]], float)), [0, 0])


def _blobs(variant=FULL):
    """All anchors silent: logits at MediaPipe's clip limit, regressors zero."""
    n = len(ssd_anchors(variant))
    return np.zeros((1, n, 16), np.float32), np.full((1, n, 1), -100.0, np.float32)


def _rotation(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _face_row(anchor_px, box_offset_px, box_wh_px, template_side_px, roll_deg):
    """A regressor row whose 4 keypoints are exactly the template (eyes, nose, mouth centre) scaled
    to ``template_side_px``, rolled, centred on the anchor; returns the row and the 5 landmarks
    (YuNet order) that must come out, in input pixels."""
    template5 = (MEAN_FACE_YUNET - 0.5) * template_side_px @ _rotation(roll_deg).T + anchor_px
    four = np.vstack([template5[:3], template5[3:5].mean(axis=0)])
    ears = np.array(anchor_px) + [[-30.0, 0.0], [30.0, 0.0]]
    keypoints = np.vstack([four, ears]) - anchor_px  # the network gives offsets from the anchor
    row = np.concatenate([box_offset_px, box_wh_px, keypoints.ravel()])
    return row.astype(np.float32), template5


@pytest.mark.parametrize("roll_deg", [0.0, 30.0, -90.0])
def test_decode_one_face_to_frame_pixels_and_synthesized_mouth_corners(roll_deg):
    regressors, logits = _blobs()
    anchors = ssd_anchors(FULL)
    index = 24 * 48 + 24  # cell (row 24, col 24): centre at (98, 98) input pixels
    anchor_px = anchors[index] * 192
    np.testing.assert_allclose(anchor_px, [98, 98])
    regressors[0, index], template5 = _face_row(anchor_px, [2.0, -2.0], [40.0, 40.0], 40.0, roll_deg)
    logits[0, index, 0] = 5.0
    # A 960x480 frame sits in the input at scale 0.2 under a 48-pixel bar.
    box = Letterbox.fit((480, 960), 192)
    det = BlazeFaceDetector._postprocess(regressors, logits, anchors, box, (480, 960), 0.6, 0.3)
    assert len(det) == 1
    # Centre (100, 96) in the input is (500, 240) in the frame; 40 input pixels are 200 frame ones.
    np.testing.assert_allclose(det.xyxy[0], [400, 140, 600, 340], atol=1e-3)
    assert det.confidence[0] == pytest.approx(1 / (1 + np.exp(-5.0)), abs=1e-6)
    expect = (template5 - [0, 48]) / 0.2
    np.testing.assert_allclose(det.landmarks_xy[0], expect, atol=1e-3)
    assert det.xyxy.dtype == det.confidence.dtype == det.landmarks_xy.dtype == np.float32


def test_five_landmarks_takes_eyes_and_nose_as_given():
    keypoints = np.array([[[10, 20], [30, 21], [20, 30], [20, 40], [0, 25], [40, 25]]], float)
    five = five_landmarks(keypoints)
    np.testing.assert_allclose(five[0, :3], keypoints[0, :3])
    # Corners either side of the mouth centre, on the subject's right first (viewer's left).
    assert five[0, 3, 0] < 20 < five[0, 4, 0]
    assert five[0, 3:, 1] == pytest.approx([40, 40], abs=2.0)


def test_weighted_nms_averages_a_cluster_by_score_and_keeps_the_best_score():
    xyxy = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [100, 100, 110, 110]], float)  # IoU(0, 1) = 2/3
    points = np.array([[[1, 1]], [[3, 1]], [[105, 105]]], float)
    scores = np.array([0.9, 0.3, 0.5])
    boxes, merged_points, kept = weighted_nms(xyxy, points, scores, 0.3)
    np.testing.assert_allclose(kept, [0.9, 0.5])
    np.testing.assert_allclose(boxes[0], [0.5, 0, 10.5, 10])  # (0 * 0.9 + 2 * 0.3) / 1.2
    np.testing.assert_allclose(merged_points[0], [[1.5, 1]])
    np.testing.assert_allclose(boxes[1], xyxy[2])


def test_two_neighbouring_anchors_on_one_face_give_one_weighted_box():
    regressors, logits = _blobs()
    anchors = ssd_anchors(FULL)
    for index, logit in ((24 * 48 + 24, 3.0), (24 * 48 + 25, 1.0)):  # side by side, 4 px apart
        regressors[0, index, 2:4] = 40.0
        logits[0, index, 0] = logit
    box = Letterbox.fit((192, 192), 192)
    det = BlazeFaceDetector._postprocess(regressors, logits, anchors, box, (192, 192), 0.6, 0.3)
    assert len(det) == 1
    w_best, w_other = 1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(-1.0))
    centre_x = (98 * w_best + 102 * w_other) / (w_best + w_other)
    np.testing.assert_allclose(det.xyxy[0], [centre_x - 20, 78, centre_x + 20, 118], atol=1e-3)
    assert det.confidence[0] == pytest.approx(w_best, abs=1e-6)


@pytest.mark.parametrize(
    "edit",
    [
        lambda reg, log: None,  # every anchor silent
        lambda reg, log: log.__setitem__((0, 7, 0), 0.0),  # score 0.5, under the 0.6 threshold
        lambda reg, log: (log.__setitem__((0, 7, 0), 5.0), reg.__setitem__((0, 7, 2), -4.0)),  # negative width
        lambda reg, log: (log.__setitem__((0, 7, 0), 5.0), reg.__setitem__((0, 7, 0), np.nan)),  # NaN row
    ],
)
def test_nothing_found_has_the_shapes_and_dtypes_of_something_found(edit):
    regressors, logits = _blobs()
    regressors[0, :, 2:4] = 10.0
    edit(regressors, logits)
    box = Letterbox.fit((100, 100), 192)
    empty = BlazeFaceDetector._postprocess(regressors, logits, ssd_anchors(FULL), box, (100, 100), 0.6, 0.3)
    reference = Detections.empty(with_landmarks=True)
    assert len(empty) == 0
    for got, want in ((empty.xyxy, reference.xyxy), (empty.confidence, reference.confidence),
                      (empty.landmarks_xy, reference.landmarks_xy)):
        assert got.shape == want.shape and got.dtype == want.dtype


def test_logits_far_beyond_the_clip_limit_do_not_overflow():
    regressors, logits = _blobs()
    regressors[0, 0, 2:4] = 10.0
    logits[0, :, 0] = -1e30
    logits[0, 0, 0] = 1e30
    with np.errstate(over="raise"):
        det = BlazeFaceDetector._postprocess(regressors, logits, ssd_anchors(FULL), Letterbox.fit((192, 192), 192),
                                             (192, 192), 0.6, 0.3)
    assert len(det) == 1 and det.confidence[0] == pytest.approx(1.0)


# --- the real networks --------------------------------------------------------------------------

def _detector(variant: str = "full_range", score: float = 0.6) -> BlazeFaceDetector:
    path = BLAZEFACE_DIR / VARIANTS[variant].weights
    if not path.is_file():
        pytest.skip(f"{path} missing (../shared/models/blazeface_mediapipe)")
    config = Config()
    cfg = dataclasses.replace(config.detector, blazeface_model=variant, score=score)
    return BlazeFaceDetector(path, cfg, config.dnn)


def _photo(name: str) -> np.ndarray:
    path = SHARED_MEDIA / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return cv2.imread(str(path))


@pytest.mark.integration
@pytest.mark.parametrize("variant", ["full_range", "short_range"])
def test_astronaut_one_face_with_landmarks_where_yunet_puts_them(variant):
    bgr = _photo("skimage_astronaut.png")
    det = _detector(variant).detect(bgr)
    assert len(det) == 1
    x1, y1, x2, y2 = det.xyxy[0]
    right_eye, left_eye, nose, mouth_right, mouth_left = det.landmarks_xy[0]
    assert y1 < right_eye[1] < (y1 + y2) / 2 and y1 < left_eye[1] < (y1 + y2) / 2
    assert right_eye[0] < nose[0] < left_eye[0], "subject's right eye is on the viewer's left"
    assert mouth_right[0] < mouth_left[0] and nose[1] < mouth_right[1] < y2
    if not YUNET_ONNX.is_file():
        return
    config = Config()
    yunet = YuNetDetector(YUNET_ONNX, config.detector, config.dnn).detect(bgr)
    # Same points to within a tenth of the face (measured: ~6 px on a ~100 px face).
    np.testing.assert_allclose(det.landmarks_xy[0], yunet.landmarks_xy[0], atol=0.1 * (x2 - x1))
    assert box_iou(det.xyxy, yunet.xyxy)[0, 0] > 0.6


@pytest.mark.integration
def test_group_photo_full_range_finds_the_four_clear_faces_and_nothing_else():
    # 1280x853 squeezed to 192 px: faces are 18-22 px in the input. Measured: 4 of 5 at 0.6 (scores
    # 0.63-0.78); the fifth, cut by the top edge, scores 0.46. Every box is a real face (YuNet's).
    bgr = _photo("pexels_group_meeting_1080865.jpeg")
    det = _detector("full_range").detect(bgr)
    assert 4 <= len(det) <= 5
    if YUNET_ONNX.is_file():
        config = override(Config(), {"detector.max_side_px": 1280})
        yunet = YuNetDetector(YUNET_ONNX, config.detector, config.dnn).detect(bgr)
        assert (box_iou(det.xyxy, yunet.xyxy).max(axis=1) >= 0.4).all()


@pytest.mark.integration
def test_blank_frame_and_tiny_frame_find_nothing(blank_frame):
    detector = _detector()
    for bgr in (blank_frame, np.zeros((4, 4, 3), np.uint8)):
        det = detector.detect(bgr)
        assert len(det) == 0 and det.landmarks_xy.shape == (0, 5, 2)


def _store(tmp_path, with_blazeface: bool) -> ModelStore:
    root = tmp_path / "models"
    (root / "yunet_2023mar").mkdir(parents=True)
    (root / "yunet_2023mar" / YUNET_ONNX.name).symlink_to(YUNET_ONNX)
    if with_blazeface:
        (root / "blazeface_mediapipe").mkdir()
        for variant in VARIANTS.values():
            (root / "blazeface_mediapipe" / variant.weights).symlink_to(BLAZEFACE_DIR / variant.weights)
    return ModelStore([root], auto_fetch=False)


@pytest.mark.integration
@pytest.mark.parametrize(
    "variant, with_blazeface, expect_name, expect_side",
    [
        ("full_range", True, "blazeface", 192),
        ("short_range", True, "blazeface", 128),
        ("full_range", False, "yunet", None),  # file missing: YuNet, with a warning
    ],
)
def test_pipeline_builds_blazeface_or_falls_back(variant, with_blazeface, expect_name, expect_side, tmp_path, caplog):
    if not (YUNET_ONNX.is_file() and BLAZEFACE_DIR.is_dir()):
        pytest.skip("../shared models missing")
    config = override(Config(), {"detector.name": "blazeface", "detector.fallback": "yunet",
                                 "detector.blazeface_model": variant})
    caplog.set_level(logging.WARNING, logger="streamer")
    detector = build_detector(config, _store(tmp_path, with_blazeface))
    assert detector.name == expect_name
    if expect_side is not None:
        assert detector.variant.input_side_px == expect_side
    assert ("falling back to yunet" in caplog.text) == (not with_blazeface)
