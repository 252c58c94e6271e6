"""One grey picture per frame, converted once and shared by every stage that looks at brightness
only: the motion gate, the cut detector and the optical flow (each made its own before, 3.2
colour conversions and 2 full-frame resizes a frame)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

# 640 px keeps a 40 px face of a 1080p frame about 24 px wide, enough corners for the flow, and
# is at least four times the motion gate's working width; smaller frames stay at full size.
GREY_SIDE_PX = 640


@dataclass(frozen=True)
class GreyFrame:
    """A frame in grey: ``grey`` ``(h, w)`` uint8, the ``(H, W, 3)`` BGR frame scaled by
    ``scale`` (<= 1, aspect kept) so that its long side is at most ``GREY_SIDE_PX``; ``shape_hw``
    the frame's own size. Frame pixels times ``scale`` are grey pixels."""

    grey: np.ndarray
    scale: float
    shape_hw: Tuple[int, int]

    @classmethod
    def of(cls, bgr: np.ndarray, max_side_px: int = GREY_SIDE_PX) -> "GreyFrame":
        """The grey picture of a ``(H, W, 3)`` uint8 BGR frame: converted first, then shrunk
        (area interpolation), which costs a third of shrinking three channels."""
        h, w = bgr.shape[:2]
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, max_side_px / max(h, w))
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return cls(grey, scale, (int(h), int(w)))

    def to_grey(self, xyxy: np.ndarray) -> np.ndarray:
        """Frame-pixel boxes ``(..., 4)`` in this picture's pixels (float32)."""
        return (np.asarray(xyxy, np.float32) * np.float32(self.scale)).astype(np.float32)
