"""What every gender/age classifier meets: one batched call for all the faces of a frame."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..types import Detections, GenderAge


class GenderAgeModel(Protocol):
    """Classifies every detected face of one frame."""

    def predict(self, bgr: np.ndarray, detections: Detections) -> GenderAge:
        """``bgr``: the frame, ``(H, W, 3)`` uint8 BGR; one result row per detection, in order."""
