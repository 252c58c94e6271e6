"""Caffe SSD -> ONNX, so the res10 detector runs where Caffe cannot; converted once and cached
beside the model (``convert_ssd_cached``).

OpenCV 5 has no Caffe importer and onnxruntime never had one, but the only copy of res10 on the
package registries is the Caffe original. This module reads ``deploy.prototxt`` (protobuf text)
and the ``.caffemodel`` (protobuf binary) with small readers of its own, and writes an ONNX graph
(protobuf binary) of the network body, which both runtimes load from bytes. No protobuf, caffe or
onnx package is needed; only the layer types of an SSD backbone are supported, and anything else
is refused by name.

The SSD head (PriorBox, Permute/Flatten/Concat, Softmax, DetectionOutput) is not converted: the
graph outputs each head's raw ``loc`` and ``conf`` maps (NCHW), and ``SsdSpec`` carries the
PriorBox and DetectionOutput parameters for ``detect.SsdHead``. The input's height and width
are symbolic, so the detector keeps feeding aspect-kept sizes as with Caffe.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ModelError
from ..models import conversion_cache
from ..models.onnx_proto import LEN, VARINT, OnnxGraph, read_fields, read_varint, value_info

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Caffe: deploy.prototxt (text format) and .caffemodel blobs (binary)

Proto = Dict[str, List[Any]]
_TOKEN = re.compile(r'\s*(?:#[^\n]*\n?)*\s*("(?:[^"\\]|\\.)*"|[{}:]|[^\s{}:"#]+)')


def parse_prototxt(text: str) -> Proto:
    """Protobuf text format into nested dicts: every key maps to the list of its values."""
    tokens = [m.group(1) for m in _TOKEN.finditer(text) if m.group(1)]
    pos = 0

    def message(closing: Optional[str]) -> Proto:
        nonlocal pos
        out: Proto = {}
        while pos < len(tokens):
            key = tokens[pos]
            pos += 1
            if key == closing:
                return out
            if tokens[pos] == ":":
                pos += 1
            if tokens[pos] == "{":
                pos += 1
                out.setdefault(key, []).append(message("}"))
            else:
                out.setdefault(key, []).append(_scalar(tokens[pos]))
                pos += 1
        if closing is not None:
            raise ValueError("unbalanced braces")
        return out

    return message(None)


def _scalar(token: str) -> Union[str, float, int, bool]:
    if token.startswith('"'):
        return token[1:-1]
    if token in ("true", "false"):
        return token == "true"
    try:
        return int(token)
    except ValueError:
        try:
            return float(token)
        except ValueError:
            return token  # an enum name (MAX, SUM, CENTER_SIZE, ...)


def _one(proto: Proto, key: str, default: Any = None) -> Any:
    values = proto.get(key)
    return values[0] if values else default


def read_caffemodel_blobs(data: bytes) -> Dict[str, List[np.ndarray]]:
    """Each layer's weight blobs (float32, in their shapes) from a V2 ``.caffemodel``."""
    blobs: Dict[str, List[np.ndarray]] = {}
    for number, _, layer in read_fields(memoryview(data)):
        if number == 2:
            raise ValueError("V1 caffemodel (old 'layers' format); upgrade it with Caffe's upgrade_net_proto_binary")
        if number != 100:  # NetParameter.layer
            continue
        name, arrays = "", []
        for lnum, _, value in read_fields(layer):
            if lnum == 1:
                name = bytes(value).decode()
            elif lnum == 7:  # LayerParameter.blobs
                arrays.append(_blob(value))
        if arrays:
            blobs[name] = arrays
    return blobs


def _blob(buf: memoryview) -> np.ndarray:
    shape: List[int] = []
    legacy = [0, 0, 0, 0]  # num, channels, height, width
    data: List[np.ndarray] = []
    for number, wire, value in read_fields(buf):
        if number == 7:  # BlobShape
            for _, dwire, dim in read_fields(value):
                if dwire == LEN:
                    pos = 0
                    while pos < len(dim):
                        v, pos = read_varint(dim, pos)
                        shape.append(v)
                else:
                    shape.append(dim)
        elif 1 <= number <= 4 and wire == VARINT:
            legacy[number - 1] = value
        elif number == 5:  # data: packed (LEN) or one float per field (I32)
            data.append(np.frombuffer(value, dtype="<f4"))
    if not shape and any(legacy):
        shape = [d for d in legacy if d] or [0]
    # One packed field (the usual case) stays a view of the file's bytes: no copy.
    flat = data[0] if len(data) == 1 else np.concatenate(data) if data else np.zeros(0, np.float32)
    if flat.size != int(np.prod(shape)):
        raise ValueError(f"blob holds {flat.size} values for shape {shape} (fp16 caffemodels are not supported)")
    return flat.astype(np.float32, copy=False).reshape(shape)


# ---------------------------------------------------------------------------------------------
# the conversion


@dataclass(frozen=True)
class PriorBoxSpec:
    """One SSD head's PriorBox parameters (Caffe's prior_box_param)."""

    min_size: Tuple[float, ...]
    max_size: Tuple[float, ...]
    aspect_ratios: Tuple[float, ...]  # besides 1, flipped ones included, in Caffe's order
    step: Optional[float]
    offset: float
    variance: Tuple[float, float, float, float]
    clip: bool

    @property
    def boxes_per_cell(self) -> int:
        return len(self.min_size) * (1 + len(self.aspect_ratios)) + len(self.max_size)


@dataclass(frozen=True)
class SsdSpec:
    """What the converted graph leaves to numpy: its output names and the head parameters."""

    loc_outputs: Tuple[str, ...]
    conf_outputs: Tuple[str, ...]
    priors: Tuple[PriorBoxSpec, ...]
    num_classes: int
    background_label: int
    nms_threshold: float
    top_k: int
    keep_top_k: int
    confidence_threshold: float


@dataclass(frozen=True)
class ConvertedSsd:
    onnx: bytes
    spec: SsdSpec
    input_name: str


_HEAD_TYPES = {"Permute", "Flatten", "Concat", "Reshape", "Softmax", "PriorBox", "DetectionOutput"}


def convert_ssd(prototxt: Path, caffemodel: Path) -> ConvertedSsd:
    """Convert an SSD (res10-style) Caffe model; ``ModelError`` names what cannot be converted."""
    try:
        net = parse_prototxt(Path(prototxt).read_text())
        blobs = read_caffemodel_blobs(Path(caffemodel).read_bytes())
        return _convert(net, blobs)
    except (ValueError, KeyError, IndexError) as error:
        raise ModelError(
            f"cannot convert {Path(caffemodel).name} to ONNX ({error}): the files may be damaged (check "
            "them with `streamer models verify`), or not an SSD face detector like res10, the only kind "
            "supported"
        ) from None


def _convert(net: Proto, blobs: Dict[str, List[np.ndarray]]) -> ConvertedSsd:
    layers = net.get("layer", [])
    input_name = _one(net, "input", "data")
    shape = _one(net, "input_shape")
    channels = int(shape["dim"][1]) if shape else int(net["input_dim"][1])
    graph = OnnxGraph()
    tensors: Dict[str, str] = {input_name: input_name}  # Caffe top -> current ONNX tensor name
    by_top = {}
    for layer in layers:
        for top in layer.get("top", []):
            by_top[top] = layer
    pending_bn: Dict[str, Tuple[str, np.ndarray, np.ndarray]] = {}  # BN top -> (input, mean, std)
    heads: Dict[str, PriorBoxSpec] = {}
    detection: Optional[Proto] = None
    for layer in layers:
        kind, name = _one(layer, "type"), _one(layer, "name")
        bottoms, tops = layer.get("bottom", []), layer.get("top", [])
        if kind == "PriorBox":
            heads[bottoms[0]] = _prior_spec(_one(layer, "prior_box_param", {}))
            continue
        if kind == "DetectionOutput":
            detection = _one(layer, "detection_output_param", {})
            continue
        if kind in _HEAD_TYPES:
            continue
        out = name
        if kind == "BatchNorm":
            mean, var, factor_blob = blobs[name][:3]
            factor = float(factor_blob.reshape(-1)[0]) or 1.0
            eps = float(_one(_one(layer, "batch_norm_param", {}), "eps", 1e-5))
            pending_bn[tops[0]] = (tensors[bottoms[0]], mean / factor, np.sqrt(var / factor + eps))
            continue
        if kind == "Scale":
            gamma = blobs[name][0]
            bias_term = _one(_one(layer, "scale_param", {}), "bias_term", False)
            beta = blobs[name][1] if bias_term else np.zeros_like(gamma)
            if bottoms[0] in pending_bn and len(bottoms) == 1:
                # BatchNorm + Scale: y = gamma * (x - mean) / std + beta, one BatchNormalization
                # node that both runtimes fold into the convolution before it.
                source, mean, std = pending_bn.pop(bottoms[0])
                inputs = [
                    source,
                    graph.const(f"{name}_gamma", gamma / std),
                    graph.const(f"{name}_beta", beta - gamma * mean / std),
                    graph.const(f"{name}_mean", np.zeros_like(mean)),
                    graph.const(f"{name}_var", np.full_like(mean, 1.0 - 1e-5)),
                ]
                graph.node("BatchNormalization", inputs, out, epsilon=1e-5)
            else:
                per_channel = (-1, 1, 1)
                scaled = graph.node("Mul", [tensors[bottoms[0]], graph.const(f"{name}_w", gamma.reshape(per_channel))], f"{name}_mul")
                graph.node("Add", [scaled, graph.const(f"{name}_b", beta.reshape(per_channel))], out)
        elif kind == "Convolution":
            _convolution(graph, layer, blobs[name], tensors[_bn_free(bottoms[0], pending_bn)], out)
        elif kind == "ReLU":
            slope = float(_one(_one(layer, "relu_param", {}), "negative_slope", 0.0))
            source = tensors[_bn_free(bottoms[0], pending_bn)]
            if slope:
                graph.node("LeakyRelu", [source], out, alpha=slope)
            else:
                graph.node("Relu", [source], out)
        elif kind == "Pooling":
            _pooling(graph, _one(layer, "pooling_param", {}), tensors[_bn_free(bottoms[0], pending_bn)], out)
        elif kind == "Eltwise":
            param = _one(layer, "eltwise_param", {})
            if _one(param, "operation", "SUM") != "SUM" or param.get("coeff"):
                raise ValueError(f"layer {name}: only plain Eltwise SUM is supported")
            acc = tensors[_bn_free(bottoms[0], pending_bn)]
            for i, bottom in enumerate(bottoms[1:]):
                acc = graph.node("Add", [acc, tensors[_bn_free(bottom, pending_bn)]], out if i == len(bottoms) - 2 else f"{name}_{i}")
        elif kind == "Normalize":
            param = _one(layer, "norm_param", {})
            if _one(param, "across_spatial", True):
                raise ValueError(f"layer {name}: only Normalize with across_spatial: false is supported")
            eps = float(_one(param, "eps", 1e-10))
            source = tensors[_bn_free(bottoms[0], pending_bn)]
            norm = graph.node("ReduceL2", [source], f"{name}_l2", axes=[1], keepdims=1)
            norm = graph.node("Add", [norm, graph.const(f"{name}_eps", np.array(eps, np.float32))], f"{name}_l2eps")
            unit = graph.node("Div", [source, norm], f"{name}_unit")
            scale = blobs[name][0].reshape(1, -1, 1, 1)
            graph.node("Mul", [unit, graph.const(f"{name}_scale", scale)], out)
        else:
            raise ValueError(f"layer {name}: Caffe layer type {kind} is not supported")
        for top in tops:
            tensors[top] = out
    if pending_bn:
        raise ValueError(f"BatchNorm without a Scale after it: {sorted(pending_bn)}")
    if detection is None or not heads:
        raise ValueError("no PriorBox/DetectionOutput layers: not an SSD detector")
    loc_outputs, conf_outputs, priors = _head_outputs(layers, by_top, heads, tensors)
    nms = _one(detection, "nms_param", {})
    spec = SsdSpec(
        loc_outputs=tuple(loc_outputs),
        conf_outputs=tuple(conf_outputs),
        priors=tuple(priors),
        num_classes=int(_one(detection, "num_classes")),
        background_label=int(_one(detection, "background_label_id", 0)),
        nms_threshold=float(_one(nms, "nms_threshold", 0.45)),
        top_k=int(_one(nms, "top_k", -1)),
        keep_top_k=int(_one(detection, "keep_top_k", -1)),
        confidence_threshold=float(_one(detection, "confidence_threshold", 0.0)),
    )
    if _one(detection, "code_type", "CENTER_SIZE") != "CENTER_SIZE" or not _one(detection, "share_location", True):
        raise ValueError("only DetectionOutput with code_type CENTER_SIZE and share_location is supported")
    graph_inputs = [value_info(input_name, [1, channels, "height", "width"])]
    graph_outputs = [value_info(n, [1, "boxes", "rows", "cols"]) for n in (*loc_outputs, *conf_outputs)]
    return ConvertedSsd(onnx=graph.model(graph_inputs, graph_outputs), spec=spec, input_name=input_name)


def _bn_free(top: str, pending_bn: Dict[str, Any]) -> str:
    if top in pending_bn:
        raise ValueError(f"{top}: BatchNorm output used without its Scale layer")
    return top


def _pair(param: Proto, key: str, default: int) -> Tuple[int, int]:
    h, w = _one(param, f"{key}_h"), _one(param, f"{key}_w")
    if h is not None and w is not None:
        return int(h), int(w)
    value = int(_one(param, key if key != "kernel" else "kernel_size", default))
    return value, value


def _convolution(graph: OnnxGraph, layer: Proto, weights: List[np.ndarray], source: str, out: str) -> None:
    param = _one(layer, "convolution_param", {})
    name = _one(layer, "name")
    kernel, stride, pad = _pair(param, "kernel", 1), _pair(param, "stride", 1), _pair(param, "pad", 0)
    dilation = int(_one(param, "dilation", 1))
    inputs = [source, graph.const(f"{name}_W", weights[0])]
    if _one(param, "bias_term", True):
        inputs.append(graph.const(f"{name}_B", weights[1].reshape(-1)))
    graph.node(
        "Conv",
        inputs,
        out,
        kernel_shape=list(kernel),
        strides=list(stride),
        pads=[pad[0], pad[1], pad[0], pad[1]],
        dilations=[dilation, dilation],
        group=int(_one(param, "group", 1)),
    )


def _pooling(graph: OnnxGraph, param: Proto, source: str, out: str) -> None:
    kind = _one(param, "pool", "MAX")
    if _one(param, "global_pooling", False) or kind not in ("MAX", "AVE"):
        raise ValueError(f"pooling {kind} (global: {_one(param, 'global_pooling', False)}) is not supported")
    kernel, stride, pad = _pair(param, "kernel", 1), _pair(param, "stride", 1), _pair(param, "pad", 0)
    # Caffe rounds the output size up; ONNX does the same with ceil_mode.
    attrs = dict(kernel_shape=list(kernel), strides=list(stride), pads=[pad[0], pad[1], pad[0], pad[1]], ceil_mode=1)
    if kind == "AVE":
        graph.node("AveragePool", [source], out, count_include_pad=1, **attrs)
    else:
        graph.node("MaxPool", [source], out, **attrs)


def _prior_spec(param: Proto) -> PriorBoxSpec:
    flip = bool(_one(param, "flip", True))
    ratios: List[float] = []
    for ar in param.get("aspect_ratio", []):
        if any(abs(ar - r) < 1e-6 for r in [1.0, *ratios]):
            continue
        ratios.append(float(ar))
        if flip:
            ratios.append(1.0 / float(ar))
    variance = [float(v) for v in param.get("variance", [0.1])]
    if len(variance) == 1:
        variance *= 4
    step = _one(param, "step")
    if _one(param, "step_h") is not None or _one(param, "img_size") is not None or _one(param, "img_h") is not None:
        raise ValueError("PriorBox with step_h/step_w or img_size is not supported")
    return PriorBoxSpec(
        min_size=tuple(float(v) for v in param.get("min_size", [])),
        max_size=tuple(float(v) for v in param.get("max_size", [])),
        aspect_ratios=tuple(ratios),
        step=None if step is None else float(step),
        offset=float(_one(param, "offset", 0.5)),
        variance=tuple(variance),  # type: ignore[arg-type]
        clip=bool(_one(param, "clip", False)),
    )


def _head_outputs(
    layers: Sequence[Proto], by_top: Dict[str, Proto], heads: Dict[str, PriorBoxSpec], tensors: Dict[str, str]
) -> Tuple[List[str], List[str], List[PriorBoxSpec]]:
    """Follow DetectionOutput's loc and conf Concats back through Flatten/Permute (and the conf
    Reshape/Softmax) to the head convolutions, in concatenation order."""
    detection = next(layer for layer in layers if _one(layer, "type") == "DetectionOutput")
    loc_top, conf_top, prior_top = detection["bottom"][:3]

    def concat_inputs(top: str) -> List[str]:
        layer = by_top[top]
        while _one(layer, "type") in ("Flatten", "Softmax", "Reshape"):
            layer = by_top[layer["bottom"][0]]
        if _one(layer, "type") != "Concat":
            raise ValueError(f"{top}: expected a Concat of the SSD heads")
        return layer["bottom"]

    def head_conv(top: str) -> str:
        layer = by_top[top]
        while _one(layer, "type") in ("Flatten", "Permute"):
            layer = by_top[layer["bottom"][0]]
        if _one(layer, "type") != "Convolution":
            raise ValueError(f"{top}: expected Permute/Flatten of a head convolution")
        return tensors[layer["top"][0]]

    locs = [head_conv(t) for t in concat_inputs(loc_top)]
    confs = [head_conv(t) for t in concat_inputs(conf_top)]
    priors = [heads[by_top[t]["bottom"][0]] for t in concat_inputs(prior_top)]
    if not len(locs) == len(confs) == len(priors):
        raise ValueError("SSD heads: loc, conf and priorbox counts differ")
    return locs, confs, priors


# ---------------------------------------------------------------------------------------------
# the converted model, cached beside the Caffe files

# Bump when the converter's output changes: caches written by another version are rebuilt.
CONVERTER_VERSION = 1


def cache_paths(caffemodel: Path, folder: Path) -> Tuple[Path, Path]:
    """``(<stem>.onnx, <stem>.onnx.json)`` in ``folder``: the graph and its sidecar (converter
    version, the sources' sha256, size and mtime, the graph's sha256, the input name and the head)."""
    return conversion_cache.cache_paths(folder, Path(caffemodel).stem)


def convert_ssd_cached(prototxt: Path, caffemodel: Path, cache_dirs: Sequence[Path]) -> ConvertedSsd:
    """``convert_ssd``, done once (``models.conversion_cache``): cached in the first of
    ``cache_dirs`` that may be written (beside the model first, usually) and reused from any of
    them while it matches its sources; in memory when none may be written."""

    def convert() -> conversion_cache.Converted:
        converted = convert_ssd(prototxt, caffemodel)
        return converted.onnx, {"input_name": converted.input_name, "spec": asdict(converted.spec)}

    sources = [Path(prototxt), Path(caffemodel)]
    onnx, extra = conversion_cache.cached_conversion(sources, Path(caffemodel).stem, cache_dirs, CONVERTER_VERSION, convert)
    try:
        return ConvertedSsd(onnx=onnx, spec=_spec_from_dict(extra["spec"]), input_name=str(extra["input_name"]))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        logger.warning("the cached ONNX conversion of %s has no usable SSD head (%s): converting again",
                       Path(caffemodel).name, error)
        return convert_ssd(prototxt, caffemodel)


def _spec_from_dict(data: Dict[str, Any]) -> SsdSpec:
    def tuples(value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    priors = tuple(PriorBoxSpec(**{k: tuples(v) for k, v in p.items()}) for p in data["priors"])
    fields = {k: tuples(v) for k, v in data.items() if k != "priors"}
    return SsdSpec(priors=priors, **fields)
