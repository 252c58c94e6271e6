"""OpenCV's res10 SSD face detector: the Caffe original (OpenCV 4.x), or the same network converted
to ONNX at load (OpenCV 5, onnxruntime) with its PriorBox and DetectionOutput layers in numpy
(``SsdHead``). Boxes, no landmarks; the original design's detector, kept as an option and fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from ..config import Config, DetectorConfig, DnnConfig
from ..dnn import OnnxRunner, apply_dnn_config, has_caffe_importer, read_caffe
from ..models.store import ModelStore
from ..types import Detections
from .base import MIN_FRAME_SIDE_PX, clip_and_filter, detector_settings, nms_xyxy
from .caffe2onnx import PriorBoxSpec, SsdSpec, convert_ssd, convert_ssd_cached

MODEL_ID = "res10_ssd_caffe"


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


def load(config: Config, store: ModelStore) -> Res10Detector:
    """The Caffe original on OpenCV 4; converted to ONNX for onnxruntime and for OpenCV 5, which has
    no Caffe importer (same detections to ~1e-5). The conversion is cached beside the Caffe files
    (else in the first writable models folder)."""
    prototxt = store.path(MODEL_ID, "deploy.prototxt")
    caffemodel = store.path(MODEL_ID, "res10_300x300_ssd_iter_140000.caffemodel")
    if config.dnn.engine == "onnxruntime" or not has_caffe_importer():
        cache_dirs = [caffemodel.parent, *(d / MODEL_ID for d in store.dirs if d != caffemodel.parent.parent)]
        return Res10OnnxDetector(prototxt, caffemodel, config.detector, config.dnn, cache_dirs)
    return Res10Detector(prototxt, caffemodel, config.detector, config.dnn)
