"""cv2.dnn plumbing shared by the detector and classifier wrappers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, List, Sequence, Union

import cv2
import numpy as np

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
    # Only when not the defaults: OpenCV 5's new engine warns on any setPreferableTarget call.
    if backend != cv2.dnn.DNN_BACKEND_DEFAULT:
        net.setPreferableBackend(backend)
    if target != cv2.dnn.DNN_TARGET_CPU:
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
        # OpenCV 4 only: 5 has no Caffe importer and its stubs do not list it, so it is looked up
        # at run time (has_caffe_importer said it is there) and the type check passes on both.
        read: Callable[[str, str], "cv2.dnn.Net"] = getattr(cv2.dnn, "readNetFromCaffe")
        return read(str(prototxt), str(caffemodel))
    except cv2.error as error:
        raise ModelError(
            f"{what}: OpenCV could not load {prototxt} + {caffemodel} ({error.err}); "
            "check both files with `streamer models verify`"
        ) from None


def read_tflite(model: Path, what: str) -> "cv2.dnn.Net":
    """Load a TFLite network (OpenCV >= 4.8) with every output reachable by name.

    OpenCV 5's new engine exposes only one output of a multi-output TFLite graph (BlazeFace's
    classifier is lost), so the classic engine is asked for where one can choose; 4.x has only that
    engine. Both give identical outputs on BlazeFace.
    """
    if not hasattr(cv2.dnn, "readNetFromTFLite"):
        raise ModelError(
            f"{what} is a TFLite model, and OpenCV {cv2.__version__} has no TFLite importer; "
            "install OpenCV 4.8 or newer (pip install 'opencv-python>=4.8')"
        )
    # Looked up at run time: the constant exists on 5.x only, and not in every release's stubs.
    classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    engine = {} if classic is None else {"engine": classic}
    try:
        return cv2.dnn.readNetFromTFLite(str(model), **engine)
    except cv2.error as error:
        raise ModelError(
            f"{what}: OpenCV could not load {model} ({error.err}); "
            "check it with `streamer models verify` or delete it and run `streamer models fetch`"
        ) from None


def read_onnx(model: Union[Path, bytes], what: str) -> "cv2.dnn.Net":
    """Load an ONNX network from a file or from bytes (a converted one) with a clear error."""
    source: Union[str, np.ndarray]
    if isinstance(model, bytes):
        source, where = np.frombuffer(model, np.uint8), "the converted network"
    else:
        source, where = str(model), str(model)
    try:
        return cv2.dnn.readNetFromONNX(source)
    except cv2.error as error:
        raise ModelError(
            f"{what}: OpenCV could not load {where} ({error.err}); "
            "check it with `streamer models verify` or delete it and run `streamer models fetch`"
        ) from None


_warned_no_onnxruntime = False


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxRunner:
    """One ONNX network run by cv2.dnn or onnxruntime (``dnn.engine``), loaded from a file or bytes.

    ``run(blob)`` returns the named outputs in order. onnxruntime is optional: when it is chosen
    but not installed, cv2.dnn runs the network and a warning says how to install it.
    """

    def __init__(
        self, model: Union[Path, bytes], input_name: str, output_names: Sequence[str], dnn: DnnConfig, what: str
    ) -> None:
        self.input_name = input_name
        self.output_names = list(output_names)
        self.engine = dnn.engine
        if self.engine == "onnxruntime" and not onnxruntime_available():
            global _warned_no_onnxruntime
            if not _warned_no_onnxruntime:  # once, not once per network
                log.warning("dnn.engine is onnxruntime but it is not installed (pip install onnxruntime); using OpenCV")
                _warned_no_onnxruntime = True
            self.engine = "opencv"
        if self.engine == "onnxruntime":
            self._session = _ort_session(model, dnn, what)
        else:
            self._net = apply_dnn_config(read_onnx(model, what), dnn)

    def run(self, blob: np.ndarray) -> List[np.ndarray]:
        if self.engine == "onnxruntime":
            return self._session.run(self.output_names, {self.input_name: blob})
        self._net.setInput(blob, self.input_name)
        return list(self._net.forward(self.output_names))


def _ort_session(model: Union[Path, bytes], dnn: DnnConfig, what: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = dnn.threads  # 0: onnxruntime's default, one per physical core
    options.inter_op_num_threads = 1
    # Idle worker threads would otherwise spin after each run, taking CPU from capture and encoding.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        source = model if isinstance(model, bytes) else str(model)
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        where = "the converted network" if isinstance(model, bytes) else str(model)
        raise ModelError(
            f"{what}: onnxruntime could not load {where} ({error}); check it with `streamer models verify` "
            "or set dnn.engine: opencv"
        ) from None
