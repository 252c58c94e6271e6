"""What every face detector shares: the ``FaceDetector`` protocol, its settings, and clipping plus
non-maximum suppression of its boxes. Each detector is a file of its own in this folder, listed in
``registry.py``.

Each reads as ``_preprocess -> forward -> _postprocess`` with ``_postprocess`` pure numpy, so it is
tested on hand-made output blobs. ``detect(bgr)`` takes a ``(H, W, 3)`` uint8 BGR frame and returns
``types.Detections`` in that frame's pixels.
"""

from __future__ import annotations

import logging
from typing import Optional, Protocol, Tuple

import numpy as np

from ..boxes import box_iou, clipped, short_side
from ..config import DetectorConfig
from ..types import Detections

log = logging.getLogger(__name__)

# Below this many pixels on a side a frame holds no analysable face, and the SSD's stride-2
# stages shrink it to nothing (OpenCV raises on a 2x2 input).
MIN_FRAME_SIDE_PX = 8


class FaceDetector(Protocol):
    name: str

    def detect(self, bgr: np.ndarray) -> Detections:
        """Faces in a ``(H, W, 3)`` uint8 BGR frame, boxes in its pixels."""


def nms_xyxy(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first.

    ``xyxy`` is ``(N, 4)`` float, ``scores`` ``(N,)``. Pure numpy; N is small (tens of boxes).
    """
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[box_iou(xyxy[best], xyxy[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def clip_and_filter(

    xyxy: np.ndarray, scores: np.ndarray, landmarks: Optional[np.ndarray], shape_hw: Tuple[int, int], nms_iou: float
) -> Detections:
    """Clip boxes to the frame, drop empty ones, suppress overlaps; shared by every detector."""
    xyxy = clipped(xyxy, shape_hw)
    # A box squeezed to under one pixel by clipping lies outside the frame: nothing to analyse.
    ok = short_side(xyxy) >= 1
    xyxy, scores = xyxy[ok], scores[ok].astype(np.float32)
    landmarks = None if landmarks is None else landmarks[ok].astype(np.float32)
    keep = nms_xyxy(xyxy, scores, nms_iou)
    return Detections(
        xyxy=xyxy[keep].reshape(-1, 4),
        confidence=scores[keep],
        landmarks_xy=None if landmarks is None else landmarks[keep].reshape(-1, 5, 2),
    )


def detector_settings(cfg: DetectorConfig, default_score: float, default_max_side_px: int) -> Tuple[float, int]:
    """The score threshold and input size a detector runs at: the configured ones, or (null in
    config) the detector's own defaults. Each network's scores and native scale differ, so one
    number for all would make some detector wrong by default."""
    score = default_score if cfg.score is None else cfg.score
    max_side_px = default_max_side_px if cfg.max_side_px is None else cfg.max_side_px
    return score, max_side_px


