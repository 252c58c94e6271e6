"""Every face detector by the name config.yaml gives it (``detector.name``, ``detector.fallback``,
``output.anonymize_detector``).

Adding a detector is one new file in this folder plus one line in ``DETECTORS``. The file holds a
class that meets the ``FaceDetector`` protocol (``name``, ``DEFAULT_SCORE``, ``DEFAULT_MAX_SIDE_PX``,
``detect(bgr) -> Detections``), ``MODEL_ID`` (its entry in ``streamer/data/models.json``) and
``load(config, store)``, which builds it from the config with its files found by the model store
(and, when it loads only some of its model's files, ``model_files(config)``).
Modules are imported only when their detector is chosen.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional, Set

from ..errors import ModelError, ModelFileError
from ..registry import Registry

if TYPE_CHECKING:
    from ..config import Config
    from ..models.store import ModelStore
    from .base import FaceDetector

log = logging.getLogger(__name__)

# detector.name -> its module in this folder.
DETECTORS = Registry(__package__, "face detector", {
    "centerface": "centerface",
    "res10": "res10",
    "yunet": "yunet",
    "blazeface": "blazeface",
})


def model_id(name: str) -> str:
    """The model manifest entry the detector ``name`` loads (``streamer doctor`` checks it)."""
    return str(DETECTORS.module(name).MODEL_ID)


def model_files(name: str, config: Config) -> Optional[Set[str]]:
    """The files of ``model_id(name)`` the detector loads as ``config`` sets it; None: all of them
    (a detector with variants, such as BlazeFace's, defines ``model_files(config)``)."""
    files = getattr(DETECTORS.module(name), "model_files", None)
    return None if files is None else set(files(config))


def load_detector(name: str, config: Config, store: ModelStore) -> FaceDetector:
    """The detector ``name``, built from ``config`` with its files from ``store``; ModelError when
    its model cannot be loaded."""
    detector: FaceDetector = DETECTORS.module(name).load(config, store)
    return detector


def build_detector(config: Config, store: ModelStore) -> FaceDetector:
    """The configured detector, or the configured fallback with a logged warning."""
    chosen = config.detector.name
    try:
        return load_detector(chosen, config, store)
    except ModelError as error:
        fallback = config.detector.fallback
        # A damaged or unreadable file is the user's to fix: another detector would hide it.
        if fallback is None or fallback == chosen or isinstance(error, ModelFileError):
            raise
        log.warning("face detector %s unavailable (%s); falling back to %s", chosen, error, fallback)
        try:
            return load_detector(fallback, config, store)
        except ModelError as second:
            raise ModelError(f"no face detector could be loaded: {chosen}: {error}; {fallback}: {second}") from None


def build_mask_detector(config: Config, store: Optional[ModelStore] = None) -> Optional[FaceDetector]:
    """``output.anonymize_detector`` at its own score and input size (no fallback: a mask detector
    that cannot load is an error, not a quieter privacy), or None when not anonymizing with one."""
    from ..config import override
    from ..models.store import ModelStore

    out = config.output
    if out.anonymize is None or out.anonymize_detector is None:
        return None
    mask_config = override(config, {
        "detector.name": out.anonymize_detector, "detector.score": out.anonymize_detector_score,
        "detector.max_side_px": out.anonymize_detector_max_side_px, "detector.fallback": None,
    })
    try:
        detector = build_detector(mask_config, store or ModelStore.from_config(config.models))
    except ModelError as error:
        raise ModelError(f"output.anonymize_detector {out.anonymize_detector} (it finds the faces the main "
                         f"detector misses, to mask them): {str(error).rstrip('.')}; or set output.anonymize_detector: null "
                         "to mask only the main detector's faces") from None
    if out.anonymize_detector_mirror:
        from .mirrored import MirroredDetector

        return MirroredDetector(detector)
    return detector
