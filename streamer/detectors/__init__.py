"""Face detectors: the protocol every detector meets, one file per detector, and the registry that
maps ``detector.name`` to it."""

from .base import FaceDetector, clip_and_filter
from .registry import DETECTORS, build_detector, build_mask_detector, load_detector, model_files, model_id

__all__ = ["DETECTORS", "FaceDetector", "build_detector", "build_mask_detector", "clip_and_filter", "load_detector",
           "model_files", "model_id"]
