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
from .classifiers import GenderAgeModel, build_classifier
from .classifiers.align import yaw_ratio
from .config import Config, override
from .detectors import FaceDetector, build_detector, clip_and_filter
from .models.store import ModelStore
from .types import ChildGender, Detections, Face, GenderAge, gender_p

log = logging.getLogger(__name__)

# The side of the square a region look is scaled to: a face in it is ~51 px (128 / 2.5 for the
# default region_grow), where every detector is at its best, and a 128 px input costs CenterFace
# a fifth of a 320x256 full frame.
REGION_INPUT_PX = 128


def faces_from(
    detections: Detections, labels: GenderAge, classified: np.ndarray, turned: Optional[np.ndarray] = None,
    too_small: Optional[np.ndarray] = None, child_gender: ChildGender = ChildGender(),
) -> Tuple[Face, ...]:
    """Join detections with the labels of the classified subset (``classified`` is a bool mask);
    ``turned`` and ``too_small`` (bool masks, default all False) say why the others were not.
    ``child_gender`` says when a child's gender is left out (gender None, age kept)."""
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
        gender = child_gender.shown_gender(p_male, float(labels.age_years[label_row]))
        age_range = labels.age_range[label_row]
        faces.append(
            Face(
                xyxy=box,
                score=score,
                gender=gender,
                gender_p=None if gender is None else gender_p(gender, p_male),
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
    """Detector + gender/age model. ``analyse`` takes a ``(H, W, 3)`` uint8 BGR frame.
    ``child_gender`` says when a child's gender is shown (``shown_gender``)."""

    def __init__(
        self, detector: FaceDetector, classifier: GenderAgeModel, min_face_px: int, max_yaw: Optional[float] = None,
        child_gender: ChildGender = ChildGender(),
    ) -> None:
        self.detector = detector
        self.classifier = classifier
        self.min_face_px = min_face_px
        self.max_yaw = max_yaw
        self.child_gender = child_gender

    def shown_gender(self, p_male: float, age_years: float) -> Optional[str]:
        """The gender to show for a face (or a person's fused labels): None for a child read
        with too little confidence (``ChildGender``)."""
        return self.child_gender.shown_gender(p_male, age_years)

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
        faces = faces_from(
            detections, labels, mask, self.turned(detections), self.too_small(detections.xyxy), self.child_gender
        )
        return faces, timings


    def release_buffers(self) -> None:
        """Let the detector give back the working memory of its last input (detectors that keep
        large per-input buffers have a ``release_buffers``); the next ``analyse`` is as before."""
        release = getattr(self.detector, "release_buffers", None)
        if release is not None:
            release()


def build_analyzer(config: Config, store: Optional[ModelStore] = None, photos: bool = False) -> FaceAnalyzer:
    """Wire detector and classifier from config; models are located (and fetched) via ``store``.
    ``photos``: the source is a photo or a folder of them, detected at ``photo_max_side_px``."""
    store = store or ModelStore.from_config(config.models)
    if photos:
        config = override(config, {"detector.max_side_px": config.detector.photo_max_side_px})
    if config.dnn.threads:
        cv2.setNumThreads(config.dnn.threads)
    cfg = config.classifier
    return FaceAnalyzer(
        build_detector(config, store), build_classifier(config, store), cfg.min_face_px, cfg.max_yaw,
        ChildGender(cfg.child_max_age, cfg.child_min_gender_p, cfg.baby_max_age),
    )
