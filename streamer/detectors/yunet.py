"""OpenCV Zoo's YuNet (ONNX, run by ``cv2.FaceDetectorYN``): boxes and 5 landmarks, OpenCV 4 and 5.
An upstream download only (no package carries it), so never a default's requirement."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from ..config import Config, DetectorConfig, DnnConfig
from ..dnn import backend_target
from ..errors import ModelError
from ..models.store import ModelStore
from ..picture.resize import shrink_to_long_side
from ..types import Detections
from .base import MIN_FRAME_SIDE_PX, clip_and_filter, detector_settings

MODEL_ID = "yunet_2023mar"


class YuNetDetector:
    """OpenCV Zoo's YuNet (ONNX via cv2.FaceDetectorYN): boxes and 5 landmarks; OpenCV 4 and 5."""

    name = "yunet"
    DEFAULT_SCORE = 0.6
    DEFAULT_MAX_SIDE_PX = 480
    # YuNet scores every anchor; its own threshold is kept low so that ours (cfg.score) decides,
    # and its internal NMS is left to ours too so both detectors merge boxes the same way.
    _RAW_SCORE = 0.3
    _RAW_NMS = 0.9
    _TOP_K = 5000

    def __init__(self, onnx: Path, cfg: DetectorConfig, dnn: DnnConfig) -> None:
        self.score, self.max_side_px = detector_settings(cfg, self.DEFAULT_SCORE, self.DEFAULT_MAX_SIDE_PX)
        self.nms_iou = cfg.nms_iou
        backend, target = backend_target(dnn)
        try:
            self.model = cv2.FaceDetectorYN.create(
                str(onnx), "", (320, 320), self._RAW_SCORE, self._RAW_NMS, self._TOP_K, backend, target
            )
        except cv2.error as error:
            raise ModelError(
                f"face detector yunet: OpenCV could not load {onnx} ({error.err}); "
                "check it with `streamer models verify`"
            ) from None
        self._input_wh: Optional[Tuple[int, int]] = None

    def _preprocess(self, bgr: np.ndarray) -> Tuple[np.ndarray, float]:
        """Downscale so the long side is at most max_side_px; return the image and the scale."""
        return shrink_to_long_side(bgr, self.max_side_px)

    def forward(self, bgr: np.ndarray) -> np.ndarray:
        input_wh = (bgr.shape[1], bgr.shape[0])
        if input_wh != self._input_wh:
            self.model.setInputSize(input_wh)
            self._input_wh = input_wh
        _, faces = self.model.detect(bgr)
        return np.zeros((0, 15), np.float32) if faces is None else faces

    @staticmethod
    def _postprocess(
        faces: np.ndarray, scale: float, shape_hw: Tuple[int, int], score: float, nms_iou: float
    ) -> Detections:
        """``faces`` is YuNet's ``(N, 15)``: x, y, w, h, five (x, y) landmarks, score — in the
        pixels of the (possibly downscaled) detector input; ``scale`` maps back to the frame."""
        faces = faces.reshape(-1, 15)
        faces = faces[np.isfinite(faces).all(axis=1) & (faces[:, 14] >= score)]
        if faces.shape[0] == 0:
            return Detections.empty(with_landmarks=True)
        xywh = faces[:, 0:4] / scale
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        landmarks = (faces[:, 4:14] / scale).reshape(-1, 5, 2)
        return clip_and_filter(xyxy, faces[:, 14], landmarks, shape_hw, nms_iou)

    def detect(self, bgr: np.ndarray) -> Detections:
        if min(bgr.shape[:2]) < MIN_FRAME_SIDE_PX:
            return Detections.empty(with_landmarks=True)
        small, scale = self._preprocess(bgr)
        return self._postprocess(self.forward(small), scale, bgr.shape[:2], self.score, self.nms_iou)


def load(config: Config, store: ModelStore) -> YuNetDetector:
    """The detector as ``config`` sets it, its model file located (or fetched) by ``store``."""
    return YuNetDetector(store.path(MODEL_ID, "face_detection_yunet_2023mar.onnx"), config.detector, config.dnn)
