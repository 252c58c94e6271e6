"""Scaling a picture down to a long side: one home for the detectors' inputs and the web's views."""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


def shrink_to_long_side(bgr: np.ndarray, max_side_px: int) -> Tuple[np.ndarray, float]:
    """``bgr`` (``(H, W, C)`` uint8) scaled down, aspect kept, so its long side is at most
    ``max_side_px``, and the scale applied (<= 1; the same array when it already fits). Area
    interpolation: the one that does not alias when shrinking."""
    h, w = bgr.shape[:2]
    scale = min(1.0, max_side_px / max(h, w))
    if scale == 1.0:
        return bgr, 1.0
    small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale
