"""The original design's Levi-Hassner Caffe pair (gender, 8 age buckets, 227 px, BGR): kept as an
option on OpenCV 4.x, which has the Caffe importer. ``_postprocess`` is pure numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from ..config import ClassifierConfig, Config, DnnConfig
from ..dnn import apply_dnn_config, read_caffe
from ..models.store import ModelStore
from ..types import Detections, GenderAge
from .align import face_chips

MODEL_ID = "levi_hassner_age_gender"


# Levi-Hassner Caffe pair (the seed's): BGR, mean-subtracted, scale 1, 227x227.
LEVI_MEAN_BGR = (78.4263377603, 87.7689143744, 114.895847746)


LEVI_SCALE = 1.0


LEVI_SWAP_RB = False


LEVI_SIZE = 227


LEVI_GENDER_LABELS = ("male", "female")


LEVI_AGE_GROUPS = ("0-2", "4-6", "8-12", "15-20", "25-32", "38-43", "48-53", "60-100")


LEVI_AGE_MIDPOINTS = np.array([1.0, 5.0, 10.0, 17.5, 28.5, 40.5, 50.5, 80.0], np.float32)


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


def _forward(net: "cv2.dnn.Net", blob: np.ndarray) -> np.ndarray:
    net.setInput(blob)
    return net.forward().reshape(blob.shape[0], -1)


def load(config: Config, store: ModelStore) -> LeviHassnerGenderAge:
    """The pair as ``config`` sets it (OpenCV 4.x only: Caffe)."""
    return LeviHassnerGenderAge(
        store.path(MODEL_ID, "deploy_age.prototxt"), store.path(MODEL_ID, "age_net.caffemodel"),
        store.path(MODEL_ID, "deploy_gender.prototxt"), store.path(MODEL_ID, "gender_net.caffemodel"),
        config.classifier, config.dnn,
    )
