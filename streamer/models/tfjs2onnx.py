"""face-api.js AgeGenderNet (TensorFlow.js weights) -> ONNX, for cv2.dnn and onnxruntime; converted
once and cached beside the weights (``convert_age_gender_cached``).

The MIT-licensed AgeGenderNet of face-api.js (npm ``@vladmandic/face-api``) ships as a TensorFlow.js
weights manifest (JSON: names, shapes, dtypes, quantisation) and one binary of uint8-quantised
weights; the graph itself lives only in face-api's TypeScript source. This module reads the
weights (``read_tfjs_weights``), checks them against the AgeGenderNet layout
(``read_age_gender_weights``) and rebuilds the graph as ONNX protobuf (``age_gender_onnx``) with
the ONNX writer of ``onnx_proto``: no tensorflow, tfjs or onnx package is needed.

The graph (face-api ``src/xception/TinyXception.ts`` with 2 main blocks, ``src/ageGenderNet/``):

- input ``image``: ``(N, 3, 112, 112)`` float32, **RGB**, 0-255, NCHW; face-api feeds the face box
  padded to a square with black and resized to 112 px. Normalisation is in the graph:
  ``(x - MEAN_RGB) / 255``.
- TinyXception: a 3x3 stride-2 convolution, two reduction blocks (separable convolutions, a 3x3
  stride-2 max-pool and a strided 1x1 shortcut), two residual main blocks, a third reduction
  block and a separable convolution to ``(N, 512, 7, 7)``; TensorFlow's "same" padding (the odd
  pixel padded at the end) is written out as explicit, asymmetric pads.
- a 7x7 average pool to ``(N, 512)``, then two fully connected heads:
  output ``age``: ``(N, 1)`` float32, years (a regression, not clipped);
  output ``gender``: ``(N, 2)`` float32 softmax probabilities, ``GENDER_LABELS`` = (male, female).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ModelError
from . import conversion_cache
from .onnx_proto import OnnxGraph, value_info

logger = logging.getLogger(__name__)

INPUT_SIZE = 112
# face-api TinyXception.forwardInput: normalize(x, meanRgb).div(255), on RGB 0-255 pixels.
MEAN_RGB = (122.782, 117.001, 104.298)
SCALE = 1.0 / 255.0
INPUT_NAME, AGE_OUTPUT, GENDER_OUTPUT = "image", "age", "gender"
# AgeGenderNet.predictAgeAndGender reads probMale = gender[0].
GENDER_LABELS = ("male", "female")
# AgeGenderNet builds its extractor as new TinyXception(2).
MAIN_BLOCKS = 2

_FIX = "use age_gender_model-weights_manifest.json and age_gender_model.bin as published in npm @vladmandic/face-api 1.7.x"
# TensorFlow.js quantisation dtypes: bytes per value and the little-endian numpy type.
_QUANTISED = {"uint8": "<u1", "uint16": "<u2", "float16": "<f2"}


# ---------------------------------------------------------------------------------------------
# reading: the manifest and its binaries


def _reject(manifest: Path, what: str) -> ModelError:
    return ModelError(f"TensorFlow.js weights {manifest}: {what}; {_FIX}")


def read_tfjs_weights(manifest: Path) -> Dict[str, np.ndarray]:
    """Every weight of a TensorFlow.js weights manifest, dequantised: ``{name: float32 array in its
    manifest shape}`` (TensorFlow layouts: conv filters HWIO, depthwise filters HWC1).

    The manifest is a JSON list of groups, each ``{"paths": [...], "weights": [...]}``; a group's
    weights lie back to back in its binaries (concatenated in order, paths relative to the
    manifest). Weights are ``float32``, stored raw or quantised: uint8/uint16 as
    ``q * scale + min``, or float16. Anything else, or binaries shorter or longer than the
    weights, raises ``ModelError`` naming the file."""
    manifest = Path(manifest)
    try:
        groups = json.loads(manifest.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelError(f"TensorFlow.js weights manifest {manifest} cannot be read ({error.strerror}); {_FIX}") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise _reject(manifest, f"not JSON ({error})") from None
    if not isinstance(groups, list) or not groups:
        raise _reject(manifest, "expected a JSON list of weight groups")
    weights: Dict[str, np.ndarray] = {}
    for number, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or not isinstance(group.get("weights"), list):
            raise _reject(manifest, f"group {number} is not {{'paths': [...], 'weights': [...]}}")
        entries = [_entry(manifest, entry) for entry in group["weights"]]
        data = b"".join(_read_bin(manifest, path) for path in group["paths"])
        needed = sum(entry.size for entry in entries)
        if needed != len(data):
            paths = " + ".join(str(p) for p in group["paths"])
            raise _reject(manifest, f"{paths} holds {len(data)} bytes, its weights need {needed} (a truncated or different "
                                    "file, or a manifest of another model)")
        offset = 0
        for entry in entries:
            if entry.name in weights:
                raise _reject(manifest, f"weight {entry.name!r} is listed twice")
            weights[entry.name] = _decode(manifest, entry, data, offset)
            offset += entry.size
    return weights


def _read_bin(manifest: Path, path: Any) -> bytes:
    if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
        raise _reject(manifest, f"weights path {path!r} must be a file name beside the manifest")
    try:
        return (manifest.parent / path).read_bytes()
    except OSError as error:
        raise ModelError(
            f"TensorFlow.js weights {manifest.parent / path} (listed in {manifest.name}) cannot be read "
            f"({error.strerror}); put the .bin beside its manifest"
        ) from None


@dataclass(frozen=True)
class _Entry:
    """One manifest weight: its name, shape, stored numpy dtype, quantisation and byte size."""

    name: str
    shape: Tuple[int, ...]
    stored: str
    scale: float
    low: float

    @property
    def size(self) -> int:
        return math.prod(self.shape) * np.dtype(self.stored).itemsize


def _entry(manifest: Path, entry: Any) -> _Entry:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise _reject(manifest, f"weight entry {entry!r} has no name")
    name, shape, dtype = entry["name"], entry.get("shape"), entry.get("dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _reject(manifest, f"weight {name!r}: shape {shape!r} is not a list of sizes")
    if dtype != "float32":
        raise _reject(manifest, f"weight {name!r}: dtype {dtype!r} is not supported (expected float32)")
    quantization = entry.get("quantization")
    if quantization is None:
        return _Entry(name, tuple(shape), "<f4", 1.0, 0.0)
    if not isinstance(quantization, dict) or quantization.get("dtype") not in _QUANTISED:
        raise _reject(manifest, f"weight {name!r}: quantization {quantization!r} is not supported "
                                f"(expected none, or dtype one of {sorted(_QUANTISED)})")
    stored = _QUANTISED[quantization["dtype"]]
    if stored == "<f2":
        return _Entry(name, tuple(shape), stored, 1.0, 0.0)
    scale: Any = quantization.get("scale")
    low: Any = quantization.get("min")
    if not (_is_finite_number(scale) and _is_finite_number(low)):
        raise _reject(manifest, f"weight {name!r}: {quantization['dtype']} quantization needs finite scale and min, "
                                f"got {scale!r}, {low!r}")
    return _Entry(name, tuple(shape), stored, float(scale), float(low))


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _decode(manifest: Path, entry: _Entry, data: bytes, offset: int) -> np.ndarray:
    """One weight as float32 in its shape."""
    values = np.frombuffer(data, dtype=entry.stored, count=math.prod(entry.shape), offset=offset)
    if entry.stored in ("<u1", "<u2"):
        # tfjs io.decodeWeights: value = q * scale + min, in float32.
        array = values.astype(np.float32) * np.float32(entry.scale) + np.float32(entry.low)
    else:
        array = values.astype(np.float32)
    if not np.isfinite(array).all():
        raise _reject(manifest, f"weight {entry.name!r} holds NaN or infinite values (a damaged file)")
    return array.reshape(entry.shape)


# ---------------------------------------------------------------------------------------------
# the AgeGenderNet layout


def _separable(prefix: str, cin: int, cout: int) -> Dict[str, Tuple[int, ...]]:
    return {
        f"{prefix}/depthwise_filter": (3, 3, cin, 1),
        f"{prefix}/pointwise_filter": (1, 1, cin, cout),
        f"{prefix}/bias": (cout,),
    }


def _reduction(prefix: str, cin: int, cout: int) -> Dict[str, Tuple[int, ...]]:
    return {
        **_separable(f"{prefix}/separable_conv0", cin, cout),
        **_separable(f"{prefix}/separable_conv1", cout, cout),
        f"{prefix}/expansion_conv/filters": (1, 1, cin, cout),
        f"{prefix}/expansion_conv/bias": (cout,),
    }


def age_gender_layout() -> Dict[str, Tuple[int, ...]]:
    """The weights AgeGenderNet needs, ``{name: TensorFlow shape}``, in face-api's order."""
    layout: Dict[str, Tuple[int, ...]] = {"entry_flow/conv_in/filters": (3, 3, 3, 32), "entry_flow/conv_in/bias": (32,)}
    layout.update(_reduction("entry_flow/reduction_block_0", 32, 64))
    layout.update(_reduction("entry_flow/reduction_block_1", 64, 128))
    for block in range(MAIN_BLOCKS):
        for conv in range(3):
            layout.update(_separable(f"middle_flow/main_block_{block}/separable_conv{conv}", 128, 128))
    layout.update(_reduction("exit_flow/reduction_block", 128, 256))
    layout.update(_separable("exit_flow/separable_conv", 256, 512))
    layout.update({"fc/age/weights": (512, 1), "fc/age/bias": (1,), "fc/gender/weights": (512, 2), "fc/gender/bias": (2,)})
    return layout


def read_age_gender_weights(manifest: Path) -> Dict[str, np.ndarray]:
    """``read_tfjs_weights``, checked against ``age_gender_layout``: every weight present with its
    shape, nothing else (another face-api network, e.g. the expression net, is refused by name)."""
    weights = read_tfjs_weights(manifest)
    layout = age_gender_layout()
    missing = [name for name in layout if name not in weights]
    extra = sorted(set(weights) - set(layout))
    if missing or extra:
        raise _reject(Path(manifest), f"not face-api's AgeGenderNet: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                                      f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
    for name, shape in layout.items():
        if weights[name].shape != shape:
            raise _reject(Path(manifest), f"weight {name!r} has shape {list(weights[name].shape)}, AgeGenderNet needs {list(shape)}")
    return weights


# ---------------------------------------------------------------------------------------------
# the ONNX graph


def _same_pads(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TensorFlow "same" padding of one axis: (before, after), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Builder:
    """AgeGenderNet as ONNX nodes on an ``OnnxGraph``, tracking the spatial size (the pads
    of TensorFlow's "same" depend on it)."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        self.graph = OnnxGraph()
        self.weights = weights

    def conv(self, x: str, prefix: str, size: int, stride: int) -> Tuple[str, int]:
        filters = self.weights[f"{prefix}/filters"]
        kernel = filters.shape[0]
        before, after = _same_pads(size, kernel, stride)
        out = self.graph.node(
            "Conv",
            [x, self.graph.const(f"{prefix}/W", filters.transpose(3, 2, 0, 1)), self.graph.const(f"{prefix}/B", self.weights[f"{prefix}/bias"])],
            prefix,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[before, before, after, after],
        )
        return out, -(-size // stride)

    def separable(self, x: str, prefix: str, size: int) -> str:
        """tf.separableConv2d (stride 1, "same") + bias: a depthwise 3x3 then a pointwise 1x1."""
        depthwise = self.weights[f"{prefix}/depthwise_filter"]  # (3, 3, C, 1)
        channels = depthwise.shape[2]
        before, after = _same_pads(size, 3, 1)
        dw = self.graph.node(
            "Conv", [x, self.graph.const(f"{prefix}/depthwise", depthwise.transpose(2, 3, 0, 1))], f"{prefix}/dw",
            kernel_shape=[3, 3], strides=[1, 1], pads=[before, before, after, after], group=channels,
        )
        pointwise = self.weights[f"{prefix}/pointwise_filter"]  # (1, 1, C, K)
        return self.graph.node(
            "Conv",
            [dw, self.graph.const(f"{prefix}/pointwise", pointwise.transpose(3, 2, 0, 1)), self.graph.const(f"{prefix}/B", self.weights[f"{prefix}/bias"])],
            prefix, kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0],
        )

    def relu(self, x: str) -> str:
        return self.graph.node("Relu", [x], f"{x}/relu")

    def add(self, a: str, b: str, name: str) -> str:
        return self.graph.node("Add", [a, b], name)

    def reduction(self, x: str, prefix: str, size: int, activate_input: bool = True) -> Tuple[str, int]:
        out = self.separable(self.relu(x) if activate_input else x, f"{prefix}/separable_conv0", size)
        out = self.separable(self.relu(out), f"{prefix}/separable_conv1", size)
        before, after = _same_pads(size, 3, 2)
        # ONNX MaxPool pads never win the max, as TensorFlow's "same" pooling ignores its padding.
        out = self.graph.node("MaxPool", [out], f"{prefix}/pool", kernel_shape=[3, 3], strides=[2, 2],
                              pads=[before, before, after, after])
        shortcut, reduced = self.conv(x, f"{prefix}/expansion_conv", size, 2)
        return self.add(out, shortcut, f"{prefix}/add"), reduced

    def main_block(self, x: str, prefix: str, size: int) -> str:
        out = self.separable(self.relu(x), f"{prefix}/separable_conv0", size)
        out = self.separable(self.relu(out), f"{prefix}/separable_conv1", size)
        out = self.separable(self.relu(out), f"{prefix}/separable_conv2", size)
        return self.add(out, x, f"{prefix}/add")

    def head(self, x: str, prefix: str) -> str:
        """A fully connected layer on ``(N, 512, 1, 1)`` as a 1x1 convolution, flattened to ``(N, K)``."""
        weights = self.weights[f"{prefix}/weights"]  # (512, K)
        out = self.graph.node(
            "Conv",
            [x, self.graph.const(f"{prefix}/W", weights.T[:, :, None, None]), self.graph.const(f"{prefix}/B", self.weights[f"{prefix}/bias"])],
            f"{prefix}/fc", kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0],
        )
        return self.graph.node("Flatten", [out], f"{prefix}/flat", axis=1)


def age_gender_onnx(weights: Mapping[str, np.ndarray]) -> bytes:
    """The ONNX model (opset 13, protobuf bytes) of AgeGenderNet with these weights (as from
    ``read_age_gender_weights``). Input and outputs: see the module docstring."""
    b = _Builder(weights)
    g = b.graph
    mean = np.array(MEAN_RGB, np.float32).reshape(1, 3, 1, 1)
    x = g.node("Sub", [INPUT_NAME, g.const("mean_rgb", mean)], "centred")
    x = g.node("Mul", [x, g.const("scale", np.array(SCALE, np.float32))], "normalised")
    x, size = b.conv(x, "entry_flow/conv_in", INPUT_SIZE, 2)
    x = b.relu(x)
    x, size = b.reduction(x, "entry_flow/reduction_block_0", size, activate_input=False)
    x, size = b.reduction(x, "entry_flow/reduction_block_1", size)
    for block in range(MAIN_BLOCKS):
        x = b.main_block(x, f"middle_flow/main_block_{block}", size)
    x, size = b.reduction(x, "exit_flow/reduction_block", size)
    x = b.relu(b.separable(x, "exit_flow/separable_conv", size))
    # face-api: avgPool 7x7 stride 2 "valid" on the 7x7 map (112 px in: 56, 28, 14, 7), i.e. the
    # global mean.
    pooled = g.node("GlobalAveragePool", [x], "pooled")
    g.node("Flatten", [b.head(pooled, "fc/age")], AGE_OUTPUT, axis=1)
    g.node("Softmax", [b.head(pooled, "fc/gender")], GENDER_OUTPUT, axis=1)
    inputs = [value_info(INPUT_NAME, ["batch", 3, INPUT_SIZE, INPUT_SIZE])]
    outputs = [value_info(AGE_OUTPUT, ["batch", 1]), value_info(GENDER_OUTPUT, ["batch", len(GENDER_LABELS)])]
    return g.model(inputs, outputs, name="streamer_tfjs2onnx")


def convert_age_gender(manifest: Path) -> bytes:
    """Read, check and convert face-api's AgeGenderNet weights: the ONNX model as bytes."""
    return age_gender_onnx(read_age_gender_weights(Path(manifest)))


# Bump when the graph written for the same weights changes: caches of another version are rebuilt.
CONVERTER_VERSION = 1
CACHE_NAME = "age_gender_model"


def convert_age_gender_cached(manifest: Path, cache_dirs: Sequence[Path]) -> bytes:
    """``convert_age_gender``, done once: the graph is cached as ``age_gender_model.onnx`` (with its
    sidecar: converter version, the manifest's and binaries' sha256) in the first of ``cache_dirs``
    that may be written, and reused from any of them while it matches; converted in memory when
    none may be written (a read-only models folder)."""
    manifest = Path(manifest)
    sources = [*_bin_paths(manifest), manifest]

    def convert() -> conversion_cache.Converted:
        return convert_age_gender(manifest), {}

    onnx, _ = conversion_cache.cached_conversion(sources, CACHE_NAME, cache_dirs, CONVERTER_VERSION, convert)
    return onnx


def _bin_paths(manifest: Path) -> Sequence[Path]:
    """The binaries a manifest names (for the cache's source check); none when it cannot be read,
    so the conversion itself reports what is wrong."""
    try:
        groups = json.loads(manifest.read_text(encoding="utf-8"))
        paths = [p for group in groups for p in group["paths"]]
    except (OSError, ValueError, TypeError, KeyError):
        return []
    return [manifest.parent / p for p in paths if isinstance(p, str) and (manifest.parent / p).is_file()]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m streamer.models.tfjs2onnx MANIFEST OUT.onnx``: convert and write (atomically)."""
    import argparse

    from .fetch import write_checked

    parser = argparse.ArgumentParser(description="Convert face-api.js AgeGenderNet TensorFlow.js weights to ONNX.")
    parser.add_argument("manifest", type=Path, help="age_gender_model-weights_manifest.json (its .bin beside it)")
    parser.add_argument("output", type=Path, help="the .onnx file to write")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        data = convert_age_gender(args.manifest)
        write_checked([data], args.output, [], "the converter")
    except (ModelError, OSError) as error:
        logger.error("%s", error)
        return 2
    logger.info("wrote %s (%d bytes)", args.output, len(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())

