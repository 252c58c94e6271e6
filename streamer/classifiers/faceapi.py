"""face-api.js's AgeGenderNet (MIT, npm ``@vladmandic/face-api@1.7.15``): one network for age (a
regression in years) and gender, on the same landmark-aligned chips as the Cydral pair at 112 px,
RGB. The TensorFlow.js weights are converted to ONNX once (``models/tfjs2onnx.py``) and cached
beside them; cv2.dnn or onnxruntime runs the graph (``dnn.engine``).

Reads ``_preprocess -> forward -> _postprocess``; ``_postprocess`` is pure numpy on the network's
two output blobs, so it is tested on hand-made arrays. Measured against the Cydral pair in
docs/accuracy.md (it is the default classifier by those tables).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple, Union

import cv2
import numpy as np

from ..config import ClassifierConfig, Config, DnnConfig
from ..dnn import OnnxRunner
from ..models.store import MANIFEST_PATH, ModelStore, load_manifest
from ..models.tfjs2onnx import AGE_OUTPUT, GENDER_LABELS, GENDER_OUTPUT, INPUT_NAME, convert_age_gender_cached
from ..types import Detections, GenderAge
from .align import face_chips
from .calibration import LabelCalibration, calibration_for

MODEL_ID = "faceapi_agegender"
WEIGHTS_MANIFEST = "age_gender_model-weights_manifest.json"
WEIGHTS_BIN = "age_gender_model.bin"


# AgeGenderNet's input (face-api TinyXception): 112 px RGB bytes, NCHW float32; the graph itself
# subtracts face-api's mean and divides by 255, so the blob carries the raw 0-255 values.
FACEAPI_SIZE = 112


FACEAPI_MEAN_RGB = (0.0, 0.0, 0.0)


FACEAPI_SCALE = 1.0


FACEAPI_SWAP_RB = True


# Output order of the converted graph: gender softmax [male, female] (AgeGenderNet reads
# probMale = gender[0]) and age in years, not clipped.
FACEAPI_GENDER_LABELS: Tuple[str, ...] = GENDER_LABELS


class FaceApiGenderAge:
    """face-api.js AgeGenderNet on aligned chips (padding ``classifier.align_padding``; square crops
    for boxes without landmarks), all faces of a frame in one batch, with a label calibration
    (None: uncalibrated) that states the age range."""

    def __init__(
        self, model: Union[Path, bytes], cfg: ClassifierConfig, dnn: DnnConfig, calibration: LabelCalibration | None = None,
    ) -> None:
        self._cfg = cfg
        self._calibration = calibration or LabelCalibration.identity()
        self._net = OnnxRunner(model, INPUT_NAME, [AGE_OUTPUT, GENDER_OUTPUT], dnn, "face-api age/gender network")

    @property
    def calibration(self) -> LabelCalibration:
        """The label calibration in use (identity when uncalibrated)."""
        return self._calibration

    def _preprocess(self, bgr: np.ndarray, detections: Detections) -> np.ndarray:
        """``(N, 3, 112, 112)`` float32 RGB 0-255 blob of the faces' chips, in detection order."""
        align = self._cfg.align and detections.landmarks_xy is not None
        padding = self._cfg.align_padding if align else self._cfg.square_padding
        chips = face_chips(bgr, detections, FACEAPI_SIZE, padding, align, self._cfg.border)
        return cv2.dnn.blobFromImages(
            list(chips), FACEAPI_SCALE, (FACEAPI_SIZE, FACEAPI_SIZE), FACEAPI_MEAN_RGB, FACEAPI_SWAP_RB, False
        )

    def forward(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Age ``(N, 1)`` years and gender ``(N, 2)`` [male, female] probabilities for an NCHW blob."""
        age, gender = self._net.run(blob)
        return age, gender

    def predict(self, bgr: np.ndarray, detections: Detections) -> GenderAge:
        """Classify all faces: one forward on a batch of N chips."""
        if len(detections) == 0:
            return GenderAge.empty()
        age, gender = self.forward(self._preprocess(bgr, detections))
        return self._postprocess(age, gender, self._cfg.age_groups, self._calibration, self._cfg.age_range_coverage)

    @staticmethod
    def _postprocess(
        age: np.ndarray,
        gender_prob: np.ndarray,
        groups: Sequence[Tuple[int, int]],
        calibration: LabelCalibration | None = None,
        coverage: float = 0.8,
    ) -> GenderAge:
        """``age``: ``(N, 1)`` or ``(N,)`` years (raw regression, may be below 0); ``gender_prob``:
        ``(N, 2)`` [male, female]. ``calibration`` maps age (never below its first knot: 0 years)
        and p_male and gives the age range at ``coverage``. ``age_spread`` stays NaN: a regression
        has no distribution to take a spread from."""
        calibration = calibration or LabelCalibration.identity()
        gender_prob = np.asarray(gender_prob, np.float32).reshape(-1, len(FACEAPI_GENDER_LABELS))
        age_raw = np.asarray(age, np.float32).reshape(-1)
        if len(age_raw) != len(gender_prob):
            raise ValueError(f"age has {len(age_raw)} rows, gender {len(gender_prob)}")
        p_male_raw = gender_prob[:, FACEAPI_GENDER_LABELS.index("male")].astype(np.float32)
        return calibration.labels(p_male_raw, age_raw, groups, coverage, min_age=0.0)


def load(config: Config, store: ModelStore) -> FaceApiGenderAge:
    """The network as ``config`` sets it: the weights located (or fetched from npm) by ``store``,
    converted once and cached beside them (or in the next writable models folder; in memory when
    none is), with its label calibration when ``classifier.calibrate``."""
    manifest = store.path(MODEL_ID, WEIGHTS_MANIFEST)
    store.path(MODEL_ID, WEIGHTS_BIN)
    cache_dirs = [manifest.parent, *(d / MODEL_ID for d in store.dirs if d != manifest.parent.parent)]
    onnx = convert_age_gender_cached(manifest, cache_dirs)
    calibration = calibration_for(MODEL_ID, MANIFEST_PATH.parent, load_manifest(), config.classifier.calibrate)
    return FaceApiGenderAge(onnx, config.classifier, config.dnn, calibration)
