"""cv2.dnn plumbing shared by the detector and classifier wrappers."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from .config import DnnConfig
from .errors import ModelError

log = logging.getLogger(__name__)

_BACKENDS = {
    "default": cv2.dnn.DNN_BACKEND_DEFAULT,
    "opencv": cv2.dnn.DNN_BACKEND_OPENCV,
    "cuda": getattr(cv2.dnn, "DNN_BACKEND_CUDA", cv2.dnn.DNN_BACKEND_DEFAULT),
}
_TARGETS = {
    "cpu": cv2.dnn.DNN_TARGET_CPU,
    "cuda": getattr(cv2.dnn, "DNN_TARGET_CUDA", cv2.dnn.DNN_TARGET_CPU),
    "cuda_fp16": getattr(cv2.dnn, "DNN_TARGET_CUDA_FP16", cv2.dnn.DNN_TARGET_CPU),
}


def backend_target(dnn: DnnConfig) -> tuple[int, int]:
    """The cv2 constants for a DnnConfig's backend and target names."""
    return _BACKENDS[dnn.backend], _TARGETS[dnn.target]


def apply_dnn_config(net: "cv2.dnn.Net", dnn: DnnConfig) -> "cv2.dnn.Net":
    """Set backend and target on a loaded network and return it."""
    backend, target = backend_target(dnn)
    net.setPreferableBackend(backend)
    net.setPreferableTarget(target)
    return net


def has_caffe_importer() -> bool:
    """OpenCV 5 removed the Caffe importer; 4.x has it."""
    return hasattr(cv2.dnn, "readNetFromCaffe")


def read_caffe(prototxt: Path, caffemodel: Path, what: str) -> "cv2.dnn.Net":
    """Load a Caffe network, with an error that says how to fix a missing importer or bad file."""
    if not has_caffe_importer():
        raise ModelError(
            f"{what} is a Caffe model, and OpenCV {cv2.__version__} has no Caffe importer; "
            "install OpenCV 4 (pip install 'opencv-python>=4.8,<5') or choose an ONNX model in config.yaml"
        )
    try:
        return cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    except cv2.error as error:
        raise ModelError(
            f"{what}: OpenCV could not load {prototxt} + {caffemodel} ({error.err}); "
            "check both files with `python run.py models verify`"
        ) from None


def read_onnx(path: Path, what: str) -> "cv2.dnn.Net":
    """Load an ONNX network with a clear error on a bad file."""
    try:
        return cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as error:
        raise ModelError(
            f"{what}: OpenCV could not load {path} ({error.err}); "
            "check it with `python run.py models verify` or delete it and run `python run.py models fetch`"
        ) from None
