"""A face detector run twice, on the frame and on its mirror image, for the mask detector
(``output.anonymize_detector_mirror``): the faces of both runs, in the frame's pixels.

CenterFace finds a face in profile far more often looking one way than the other: on the stage
clip, of the faces of 40 px and more that the mask detector must catch, it found 56 of 92 on the
frames as they are and 73 of 92 on their mirror images. Masks want the union (a box found twice is
masked twice, which costs nothing but a few microseconds); tracking would want one box a face, so
only the mask detector is mirrored.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..types import Detections
from .base import FaceDetector


class MirroredDetector:
    """``inner`` on a ``(H, W, 3)`` uint8 BGR frame and on its left-right mirror; ``detect`` returns
    the boxes and confidences of both (no landmarks: masks need none), frame pixels."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner = inner
        self.name = f"{inner.name} (and mirrored)"

    def detect(self, bgr: np.ndarray) -> Detections:
        direct = self.inner.detect(bgr)
        mirrored = self.inner.detect(cv2.flip(bgr, 1))
        width = float(bgr.shape[1])
        back = np.stack([width - mirrored.xyxy[:, 2], mirrored.xyxy[:, 1], width - mirrored.xyxy[:, 0],
                         mirrored.xyxy[:, 3]], axis=1).reshape(-1, 4)
        return Detections.concat([Detections(direct.xyxy, direct.confidence), Detections(back, mirrored.confidence)])
