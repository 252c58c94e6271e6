"""Face detectors: the protocol, shared geometry, OpenCV's res10 SSD (Caffe, or converted to ONNX)
and YuNet (ONNX, 5 landmarks). CenterFace, the default, is in ``centerface.py``.

Each reads as ``_preprocess -> forward -> _postprocess`` with ``_postprocess`` pure numpy, so it is
tested on hand-made output blobs. ``detect(bgr)`` takes a ``(H, W, 3)`` uint8 BGR frame and returns
``types.Detections`` in that frame's pixels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Protocol, Sequence, Tuple

import cv2
import numpy as np

from ..boxes import box_iou, clipped, short_side
from ..config import DetectorConfig, DnnConfig
from ..dnn import OnnxRunner, apply_dnn_config, backend_target, read_caffe
from ..errors import ModelError
from ..types import Detections
from .caffe2onnx import PriorBoxSpec, SsdSpec, convert_ssd, convert_ssd_cached

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


def ssd_priors(spec: PriorBoxSpec, map_hw: Tuple[int, int], image_hw: Tuple[int, int]) -> np.ndarray:
    """One head's prior boxes as Caffe's PriorBox makes them: ``(rows * cols * boxes_per_cell, 4)``
    ``[cx, cy, w, h]`` normalised to the image, in (row, col, box) order."""
    rows, cols = map_hw
    img_h, img_w = image_hw
    step_y, step_x = (spec.step, spec.step) if spec.step else (img_h / rows, img_w / cols)
    sizes = []  # (width, height) in pixels, per box of a cell
    for i, min_size in enumerate(spec.min_size):
        sizes.append((min_size, min_size))
        if i < len(spec.max_size):
            side = float(np.sqrt(min_size * spec.max_size[i]))
            sizes.append((side, side))
        for ratio in spec.aspect_ratios:
            sizes.append((min_size * np.sqrt(ratio), min_size / np.sqrt(ratio)))
    wh = np.array(sizes, np.float64) / np.array([img_w, img_h])
    cy, cx = np.meshgrid((np.arange(rows) + spec.offset) * step_y / img_h, (np.arange(cols) + spec.offset) * step_x / img_w, indexing="ij")
    priors = np.empty((rows, cols, len(sizes), 4), np.float64)
    priors[..., 0] = cx[..., None]
    priors[..., 1] = cy[..., None]
    priors[..., 2:] = wh
    flat = priors.reshape(-1, 4)
    if spec.clip:
        corners = np.clip(np.concatenate([flat[:, :2] - flat[:, 2:] / 2, flat[:, :2] + flat[:, 2:] / 2], 1), 0, 1)
        flat = np.concatenate([(corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]], 1)
    return flat.astype(np.float32)


def _class_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; for two classes the same thing as a sigmoid of the difference,
    at a third of the cost (this runs over every prior of every frame)."""
    if logits.shape[-1] == 2:
        # Clipped: exp(88) is the float32 limit; beyond +-30 the probability is 0 or 1 anyway.
        p1 = 1.0 / (1.0 + np.exp(np.clip(logits[:, 0] - logits[:, 1], -30.0, 30.0)))
        return np.stack([1.0 - p1, p1], axis=1)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


class SsdHead:
    """Caffe's PriorBox + DetectionOutput in numpy. Priors depend only on the input and map sizes,
    so they are made once per input size (a stream keeps one)."""

    def __init__(self, spec: SsdSpec) -> None:
        self.spec = spec
        self._priors: Dict[Tuple[int, ...], Tuple[np.ndarray, np.ndarray]] = {}

    def priors(self, map_hws: Sequence[Tuple[int, int]], image_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
        """All heads' priors ``(P, 4)`` [cx, cy, w, h] and their variances ``(P, 4)``."""
        key = (*image_hw, *(d for hw in map_hws for d in hw))
        if key not in self._priors:
            if len(self._priors) > 8:  # a source that keeps changing size
                self._priors.clear()
            parts = [ssd_priors(p, hw, image_hw) for p, hw in zip(self.spec.priors, map_hws)]
            variance = np.concatenate([np.tile(np.asarray(p.variance, np.float32), (len(x), 1)) for p, x in zip(self.spec.priors, parts)])
            self._priors[key] = (np.concatenate(parts), variance)
        return self._priors[key]

    def decode(self, locs: Sequence[np.ndarray], confs: Sequence[np.ndarray], image_hw: Tuple[int, int], score: float) -> np.ndarray:
        """Detections from each head's raw ``(1, boxes*4, rows, cols)`` loc and ``(1, boxes*classes,
        rows, cols)`` conf maps, as the ``(1, 1, K, 7)`` blob Caffe's detection_out gives ([image_id,
        label, confidence, x1, y1, x2, y2], normalised), restricted to confidence >= ``score``:
        greedy NMS never lets a lower score suppress a higher one, so this subset is exactly Caffe's.
        """
        spec = self.spec
        prior_xywh, variance = self.priors([loc.shape[2:] for loc in locs], image_hw)
        delta = np.concatenate([loc[0].transpose(1, 2, 0).reshape(-1, 4) for loc in locs])
        logits = np.concatenate([conf[0].transpose(1, 2, 0).reshape(-1, spec.num_classes) for conf in confs])
        prob = _class_probabilities(logits)
        rows_out = []
        for label in range(spec.num_classes):
            if label == spec.background_label:
                continue
            scores = prob[:, label]
            candidates = np.flatnonzero(scores > spec.confidence_threshold)
            if spec.top_k > 0 and candidates.size > spec.top_k:
                candidates = candidates[np.argsort(-scores[candidates], kind="stable")[: spec.top_k]]
            candidates = candidates[scores[candidates] >= score]
            if candidates.size == 0:
                continue
            p, d, v = prior_xywh[candidates], delta[candidates], variance[candidates]
            centre = p[:, :2] + d[:, :2] * v[:, :2] * p[:, 2:]
            size = p[:, 2:] * np.exp(d[:, 2:] * v[:, 2:])
            boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
            keep = nms_xyxy(boxes, scores[candidates], spec.nms_threshold)
            rows_out.append(
                np.column_stack([np.zeros(keep.size), np.full(keep.size, label), scores[candidates][keep], boxes[keep]])
            )
        if not rows_out:
            return np.zeros((1, 1, 0, 7), np.float32)
        rows = np.concatenate(rows_out).astype(np.float32)
        if spec.keep_top_k > 0 and len(rows) > spec.keep_top_k:
            rows = rows[np.argsort(-rows[:, 2], kind="stable")[: spec.keep_top_k]]
        return rows.reshape(1, 1, -1, 7)


class Res10Detector:
    """OpenCV's ResNet-10 SSD face detector (Caffe; needs OpenCV 4.x). Gives boxes, no landmarks.

    ``Res10OnnxDetector`` runs the same network converted to ONNX (OpenCV 5, onnxruntime).
    """

    name = "res10"
    DEFAULT_SCORE = 0.6
    # 480 finds 4-5 of the group photo's faces where the classic 300x300 squash finds 2.
    DEFAULT_MAX_SIDE_PX = 480
    TRAINED_SIDE_PX = 300
    MEAN_BGR = (104.0, 177.0, 123.0)
    SCALE = 1.0
    SWAP_RB = False

    def __init__(self, prototxt: Path, caffemodel: Path, cfg: DetectorConfig, dnn: DnnConfig) -> None:
        self.score, self.max_side_px = detector_settings(cfg, self.DEFAULT_SCORE, self.DEFAULT_MAX_SIDE_PX)
        self.nms_iou = cfg.nms_iou
        self.net = apply_dnn_config(read_caffe(prototxt, caffemodel, "face detector res10"), dnn)

    def _preprocess(self, bgr: np.ndarray) -> np.ndarray:
        # The SSD is fully convolutional, so it takes any input size. The classic 300x300 squash
        # loses the smaller faces of a group photo (2 of 5 found at 0.6 on the Pexels meeting
        # photo); keeping the aspect ratio at a long side of max_side_px finds 4-5 of them.
        # Outputs are normalised coordinates, so no letterbox bookkeeping is needed.
        # Frames smaller than the 300 px the model was trained at are upscaled to it: faces in a
        # 176x144 clip are otherwise below the smallest prior box.
        h, w = bgr.shape[:2]
        scale = min(self.max_side_px, max(max(h, w), self.TRAINED_SIDE_PX)) / max(h, w)
        input_wh = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.dnn.blobFromImage(bgr, self.SCALE, input_wh, self.MEAN_BGR, self.SWAP_RB, False)

    def forward(self, blob: np.ndarray) -> np.ndarray:
        self.net.setInput(blob)
        return self.net.forward()

    @staticmethod
    def _postprocess(out: np.ndarray, shape_hw: Tuple[int, int], score: float, nms_iou: float) -> Detections:
        """``out`` is the SSD ``(1, 1, K, 7)`` blob: [image_id, label, confidence, x1, y1, x2, y2]
        with coordinates normalised to [0, 1]."""
        rows = out.reshape(-1, 7)
        rows = rows[np.isfinite(rows).all(axis=1) & (rows[:, 2] >= score)]
        if rows.shape[0] == 0:
            return Detections.empty()
        h, w = shape_hw
        xyxy = rows[:, 3:7] * np.array([w, h, w, h], np.float32)
        return clip_and_filter(xyxy, rows[:, 2], None, shape_hw, nms_iou)

    def detect(self, bgr: np.ndarray) -> Detections:
        if min(bgr.shape[:2]) < MIN_FRAME_SIDE_PX:
            return Detections.empty()
        out = self.forward(self._preprocess(bgr))
        return self._postprocess(out, bgr.shape[:2], self.score, self.nms_iou)


class Res10OnnxDetector(Res10Detector):
    """res10 converted from the Caffe files at load (``caffe2onnx``), run by cv2.dnn's ONNX importer
    (OpenCV 5 has no Caffe one) or by onnxruntime; PriorBox and DetectionOutput run in numpy.

    Same input and same output blob as ``Res10Detector``, so the rest is shared.
    """

    def __init__(
        self, prototxt: Path, caffemodel: Path, cfg: DetectorConfig, dnn: DnnConfig, cache_dirs: Sequence[Path] = ()
    ) -> None:
        """``cache_dirs``: where the conversion may be cached and found (``convert_ssd_cached``);
        empty: converted in memory at every load."""
        self.score, self.max_side_px = detector_settings(cfg, self.DEFAULT_SCORE, self.DEFAULT_MAX_SIDE_PX)
        self.nms_iou = cfg.nms_iou
        converted = convert_ssd_cached(prototxt, caffemodel, cache_dirs) if cache_dirs else convert_ssd(prototxt, caffemodel)
        spec = converted.spec
        self.head = SsdHead(spec)
        self.runner = OnnxRunner(converted.onnx, converted.input_name, spec.loc_outputs + spec.conf_outputs, dnn, "face detector res10")

    @property
    def engine(self) -> str:
        """What runs the network: ``opencv`` or ``onnxruntime`` (after any fallback)."""
        return self.runner.engine

    def forward(self, blob: np.ndarray) -> np.ndarray:
        maps = self.runner.run(blob)
        heads = len(self.head.spec.priors)
        # Rows under the configured score are dropped before NMS: the kept rows are Caffe's.
        return self.head.decode(maps[:heads], maps[heads:], blob.shape[2:], self.score)


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
        h, w = bgr.shape[:2]
        scale = min(1.0, self.max_side_px / max(h, w))
        if scale < 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return bgr, scale

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
