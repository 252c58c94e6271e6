"""Caffe SSD -> ONNX conversion and the numpy SSD head, checked against OpenCV's own Caffe import.

A tiny SSD written here (prototxt text + caffemodel bytes, random weights) covers every layer type
the converter knows; the real res10 from ../shared checks the detector end to end. Both compare the
converted graph, run by cv2.dnn and by onnxruntime, with cv2.dnn running the Caffe original.
"""

from __future__ import annotations

import logging
import shutil
import struct
import sys

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA, SHARED_MODELS

from streamer.config import DetectorConfig, DnnConfig
from streamer.detectors.caffe2onnx import (
    cache_paths,
    convert_ssd,
    convert_ssd_cached,
    parse_prototxt,
    read_caffemodel_blobs,
)
from streamer.detectors.res10 import Res10Detector, Res10OnnxDetector, SsdHead, ssd_priors
from streamer.dnn import OnnxRunner, has_caffe_importer
from streamer.errors import ModelError
from streamer.models.onnx_proto import encode_varint, len_field, read_fields, read_varint, str_field

needs_caffe = pytest.mark.skipif(not has_caffe_importer(), reason="the reference needs OpenCV 4's Caffe importer")
ENGINES = ["opencv", "onnxruntime"]
RES10 = SHARED_MODELS / "res10_ssd_caffe"


def _engine(name: str) -> DnnConfig:
    if name == "onnxruntime":
        pytest.importorskip("onnxruntime")
    return DnnConfig(engine=name)


# --- the readers -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**63 - 1])
def test_varint_round_trip(value):
    encoded = encode_varint(value)
    assert read_varint(memoryview(encoded), 0) == (value, len(encoded))


def test_negative_int64_is_ten_bytes_of_twos_complement():
    encoded = encode_varint(-1)
    assert len(encoded) == 10
    assert read_varint(memoryview(encoded), 0)[0] == 2**64 - 1


def test_parse_prototxt_nesting_repeats_comments_strings_and_enums():
    proto = parse_prototxt(
        """
        name: "net"  # a comment
        input: "data"
        layer {
          name: "p" type: "Pooling"
          pooling_param { pool: MAX kernel_size: 3 stride: 2 }
          bottom: "a" bottom: "b"
        }
        layer { name: "r" type: "ReLU" relu_param { negative_slope: 0.1 } flag: true }
        """
    )
    assert proto["name"] == ["net"] and proto["input"] == ["data"]
    first, second = proto["layer"]
    assert first["bottom"] == ["a", "b"]
    assert first["pooling_param"] == [{"pool": ["MAX"], "kernel_size": [3], "stride": [2]}]
    assert second["relu_param"][0]["negative_slope"] == [0.1] and second["flag"] == [True]
    with pytest.raises(ValueError, match="unbalanced"):
        parse_prototxt("layer { name: 'x'")


def _blob_bytes(array: np.ndarray, packed: bool = True) -> bytes:
    shape = len_field(1, b"".join(encode_varint(d) for d in array.shape))  # BlobShape.dim, packed
    if packed:
        data = len_field(5, array.astype("<f4").tobytes())
    else:  # one float per field, as old writers did
        data = b"".join(encode_varint(5 << 3 | 5) + struct.pack("<f", v) for v in array.reshape(-1))
    return len_field(7, shape) + data


def _caffemodel(weights: dict) -> bytes:
    layers = b""
    for name, arrays in weights.items():
        body = str_field(1, name) + b"".join(len_field(7, _blob_bytes(a, packed=i % 2 == 0)) for i, a in enumerate(arrays))
        layers += len_field(100, body)
    return str_field(1, "tiny") + layers


def test_caffemodel_blobs_packed_and_unpacked_in_their_shapes():
    rng = np.random.default_rng(0)
    conv_w, conv_b = rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)
    blobs = read_caffemodel_blobs(_caffemodel({"conv": [conv_w, conv_b], "empty": []}))
    assert list(blobs) == ["conv"]
    np.testing.assert_array_equal(blobs["conv"][0], conv_w)
    np.testing.assert_array_equal(blobs["conv"][1], conv_b)
    with pytest.raises(ValueError, match="V1 caffemodel"):
        read_caffemodel_blobs(len_field(2, b""))


def test_protobuf_reader_yields_fields_in_order():
    message = str_field(1, "a") + encode_varint(2 << 3) + encode_varint(300) + len_field(3, b"xyz")
    assert [(n, w, bytes(v) if isinstance(v, memoryview) else v) for n, w, v in read_fields(memoryview(message))] == [
        (1, 2, b"a"),
        (2, 0, 300),
        (3, 2, b"xyz"),
    ]


# --- a tiny SSD with every supported layer type ------------------------------------------------

TINY_PROTOTXT = """
name: "tiny_ssd"
input: "data"
input_shape { dim: 1 dim: 3 dim: 64 dim: 64 }
layer { name: "bn0" type: "BatchNorm" bottom: "data" top: "bn0" }
layer { name: "scale0" type: "Scale" bottom: "bn0" top: "bn0" scale_param { bias_term: true } }
layer { name: "conv1" type: "Convolution" bottom: "bn0" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { eps: 0.001 } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 4 kernel_size: 1 bias_term: false } }
layer { name: "sum" type: "Eltwise" bottom: "pool1" bottom: "conv2" top: "sum" }
layer { name: "norm" type: "Normalize" bottom: "sum" top: "norm" norm_param { across_spatial: false channel_shared: false } }
layer { name: "conv3" type: "Convolution" bottom: "sum" top: "conv3"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
HEADS
layer { name: "mbox_loc" type: "Concat" bottom: "norm_loc_flat" bottom: "conv3_loc_flat" top: "mbox_loc" concat_param { axis: 1 } }
layer { name: "mbox_conf" type: "Concat" bottom: "norm_conf_flat" bottom: "conv3_conf_flat" top: "mbox_conf" concat_param { axis: 1 } }
layer { name: "mbox_priorbox" type: "Concat" bottom: "norm_prior" bottom: "conv3_prior" top: "mbox_priorbox" concat_param { axis: 2 } }
layer { name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" top: "mbox_conf_reshape" reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }
layer { name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape" top: "mbox_conf_softmax" softmax_param { axis: 2 } }
layer { name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax" top: "mbox_conf_flatten" flatten_param { axis: 1 } }
layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc" bottom: "mbox_conf_flatten" bottom: "mbox_priorbox"
        top: "detection_out"
        detection_output_param { num_classes: 2 share_location: true background_label_id: 0
          nms_param { nms_threshold: 0.45 top_k: 400 } code_type: CENTER_SIZE keep_top_k: 200 confidence_threshold: 0.01 } }
"""

HEAD = """
layer {{ name: "{src}_{kind}" type: "Convolution" bottom: "{src}" top: "{src}_{kind}"
        convolution_param {{ num_output: {n} kernel_size: 3 pad: 1 }} }}
layer {{ name: "{src}_{kind}_perm" type: "Permute" bottom: "{src}_{kind}" top: "{src}_{kind}_perm" permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "{src}_{kind}_flat" type: "Flatten" bottom: "{src}_{kind}_perm" top: "{src}_{kind}_flat" flatten_param {{ axis: 1 }} }}
"""

# norm: min + max + 2 (ar 2 flipped) = 4 boxes, explicit step; conv3: min + 2 (ar 3 flipped) = 3
# boxes, step from the image and map sizes (no step given).
PRIORS = {
    "norm": (4, 'min_size: 12 max_size: 24 aspect_ratio: 2 flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: 8 offset: 0.5'),
    "conv3": (3, "min_size: 24 aspect_ratio: 3 flip: true clip: false variance: 0.1 offset: 0.5"),
}


def _tiny_prototxt() -> str:
    heads = ""
    for src, (boxes, prior) in PRIORS.items():
        heads += HEAD.format(src=src, kind="loc", n=boxes * 4) + HEAD.format(src=src, kind="conf", n=boxes * 2)
        heads += f'layer {{ name: "{src}_prior" type: "PriorBox" bottom: "{src}" bottom: "data" top: "{src}_prior" prior_box_param {{ {prior} }} }}\n'
    return TINY_PROTOTXT.replace("HEADS", heads)


def _tiny_weights() -> dict:
    rng = np.random.default_rng(7)

    def conv(out, inp, k, bias=True):
        w = rng.normal(0, 1.0 / np.sqrt(inp * k * k), (out, inp, k, k)).astype(np.float32)
        return [w, rng.normal(0, 0.1, out).astype(np.float32)] if bias else [w]

    def bn(c):  # mean, variance, moving-average factor (Caffe divides both by it)
        return [rng.normal(0, 1, c).astype(np.float32) * 2, rng.uniform(0.5, 2, c).astype(np.float32) * 2, np.array([2.0], np.float32)]

    def scale(c):
        return [rng.uniform(0.5, 1.5, c).astype(np.float32), rng.normal(0, 0.1, c).astype(np.float32)]

    weights = {
        "bn0": bn(3), "scale0": scale(3), "conv1": conv(4, 3, 3), "bn1": bn(4), "scale1": scale(4),
        "conv2": conv(4, 4, 1, bias=False), "norm": [rng.uniform(5, 20, 4).astype(np.float32)], "conv3": conv(4, 4, 3),
    }
    for src, (boxes, _) in PRIORS.items():
        weights[f"{src}_loc"] = conv(boxes * 4, 4, 3)
        weights[f"{src}_conf"] = [w * 4 for w in conv(boxes * 2, 4, 3)]  # spread the scores out
    return weights


@pytest.fixture(scope="module")
def tiny_ssd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_ssd")
    (folder / "deploy.prototxt").write_text(_tiny_prototxt())
    (folder / "tiny.caffemodel").write_bytes(_caffemodel(_tiny_weights()))
    return folder / "deploy.prototxt", folder / "tiny.caffemodel"


def _rows(blob: np.ndarray, score: float) -> np.ndarray:
    rows = blob.reshape(-1, 7)
    rows = rows[rows[:, 2] >= score]
    return rows[np.lexsort((rows[:, 3], -rows[:, 2]))]


@needs_caffe
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("size_hw", [(64, 64), (48, 80), (37, 53)])
def test_tiny_ssd_matches_opencv_caffe_import(tiny_ssd, engine, size_hw):
    prototxt, caffemodel = tiny_ssd
    converted = convert_ssd(prototxt, caffemodel)
    assert converted.spec.loc_outputs == ("norm_loc", "conv3_loc")
    assert [p.boxes_per_cell for p in converted.spec.priors] == [4, 3]
    reference = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    blob = np.random.default_rng(1).uniform(-60, 60, (1, 3, *size_hw)).astype(np.float32)
    reference.setInput(blob)
    expected_maps = reference.forward(list(converted.spec.loc_outputs + converted.spec.conf_outputs))
    reference.setInput(blob)
    expected_rows = reference.forward("detection_out")
    reference.setInput(blob)
    caffe_priors = reference.forward("mbox_priorbox")[0, 0].reshape(-1, 4)

    runner = OnnxRunner(converted.onnx, converted.input_name, converted.spec.loc_outputs + converted.spec.conf_outputs, _engine(engine), "tiny")
    maps = runner.run(blob)
    for got, want in zip(maps, expected_maps):
        np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max() + 1e-4)  # float sums in another order

    heads = len(converted.spec.priors)
    priors = np.concatenate([ssd_priors(p, m.shape[2:], size_hw) for p, m in zip(converted.spec.priors, maps[:heads])])
    corners = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], axis=1)
    np.testing.assert_allclose(corners, caffe_priors, atol=1e-6)

    got_rows = _rows(SsdHead(converted.spec).decode(maps[:heads], maps[heads:], size_hw, 0.3), 0.3)
    want_rows = _rows(expected_rows, 0.3)
    assert len(want_rows) > 3, "the tiny net should give several boxes to compare"
    np.testing.assert_allclose(got_rows, want_rows, atol=1e-3)


def test_unsupported_layer_is_named(tmp_path, tiny_ssd):
    prototxt, caffemodel = tiny_ssd
    text = prototxt.read_text().replace('type: "Eltwise"', 'type: "Deconvolution"')
    (tmp_path / "bad.prototxt").write_text(text)
    with pytest.raises(ModelError, match="layer sum: Caffe layer type Deconvolution is not supported"):
        convert_ssd(tmp_path / "bad.prototxt", caffemodel)


def test_truncated_caffemodel_is_a_model_error(tmp_path, tiny_ssd):
    prototxt, caffemodel = tiny_ssd
    (tmp_path / "cut.caffemodel").write_bytes(caffemodel.read_bytes()[:-100])
    with pytest.raises(ModelError, match="cannot convert cut.caffemodel to ONNX"):
        convert_ssd(prototxt, tmp_path / "cut.caffemodel")


def test_ssd_priors_step_from_map_size_when_not_given():
    from streamer.detectors.caffe2onnx import PriorBoxSpec

    spec = PriorBoxSpec(min_size=(10.0,), max_size=(), aspect_ratios=(), step=None, offset=0.5, variance=(0.1,) * 4, clip=False)
    priors = ssd_priors(spec, (2, 4), (20, 40))  # 10 px cells
    np.testing.assert_allclose(priors[:, 0], [0.125, 0.375, 0.625, 0.875] * 2)
    np.testing.assert_allclose(priors[:, 1], [0.25] * 4 + [0.75] * 4)
    np.testing.assert_allclose(priors[:, 2:], [[0.25, 0.5]] * 8)


# --- the real res10 ----------------------------------------------------------------------------

PHOTOS = ["pexels_group_meeting_1080865.jpeg", "pexels_women_on_phones.jpg", "skimage_astronaut.png"]


@pytest.fixture(scope="module")
def res10_caffe():
    if not has_caffe_importer():
        pytest.skip("the reference needs OpenCV 4's Caffe importer")
    return Res10Detector(RES10 / "deploy.prototxt", RES10 / "res10_300x300_ssd_iter_140000.caffemodel", DetectorConfig(score=0.3), DnnConfig())


@pytest.mark.parametrize("engine", ENGINES)
def test_res10_converted_gives_caffes_detections(res10_caffe, engine):
    onnx_detector = Res10OnnxDetector(
        RES10 / "deploy.prototxt", RES10 / "res10_300x300_ssd_iter_140000.caffemodel", DetectorConfig(score=0.3), _engine(engine)
    )
    assert onnx_detector.engine == engine
    for photo in PHOTOS:
        bgr = cv2.imread(str(SHARED_MEDIA / photo))
        want, got = res10_caffe.detect(bgr), onnx_detector.detect(bgr)
        assert len(want) >= 1 and len(got) == len(want), photo
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-4)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.05)  # pixels of photos up to 1280 px


def test_res10_converted_matches_the_shared_onnx_backbone():
    """The backbone in ../shared was converted with another tool (caffe2onnx 2.0.1) and cut before
    the SSD head; our per-head maps, permuted and concatenated the Caffe way, must equal its outputs."""
    converted = convert_ssd(RES10 / "deploy.prototxt", RES10 / "res10_300x300_ssd_iter_140000.caffemodel")
    spec = converted.spec
    blob = cv2.dnn.blobFromImage(cv2.imread(str(SHARED_MEDIA / PHOTOS[0])), 1.0, (300, 300), (104.0, 177.0, 123.0))
    maps = OnnxRunner(converted.onnx, converted.input_name, spec.loc_outputs + spec.conf_outputs, DnnConfig(), "res10").run(blob)
    heads = len(spec.priors)
    loc = np.concatenate([m[0].transpose(1, 2, 0).reshape(-1) for m in maps[:heads]])
    logits = np.concatenate([m[0].transpose(1, 2, 0).reshape(-1, 2) for m in maps[heads:]])
    conf = np.exp(logits - logits.max(1, keepdims=True))
    conf = (conf / conf.sum(1, keepdims=True)).reshape(-1)
    backbone = cv2.dnn.readNetFromONNX(str(SHARED_MODELS / "res10_ssd_onnx_backbone" / "res10_300x300_ssd_iter_140000_backbone.onnx"))
    backbone.setInput(blob)
    want_loc, want_conf = backbone.forward(["mbox_loc", "mbox_conf_flatten"])
    np.testing.assert_allclose(loc, want_loc.reshape(-1), atol=1e-4)
    np.testing.assert_allclose(conf, want_conf.reshape(-1), atol=1e-5)


def test_onnxruntime_missing_falls_back_to_opencv_with_a_warning(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    monkeypatch.setattr("streamer.dnn._warned_no_onnxruntime", False)
    with caplog.at_level(logging.WARNING):
        detector = Res10OnnxDetector(
            RES10 / "deploy.prototxt", RES10 / "res10_300x300_ssd_iter_140000.caffemodel", DetectorConfig(), DnnConfig(engine="onnxruntime")
        )
        assert detector.engine == "opencv"
        assert caplog.text.count("pip install onnxruntime") == 1
        Res10OnnxDetector(
            RES10 / "deploy.prototxt", RES10 / "res10_300x300_ssd_iter_140000.caffemodel", DetectorConfig(), DnnConfig(engine="onnxruntime")
        )
        assert caplog.text.count("pip install onnxruntime") == 1  # said once per run, not per network
    assert len(detector.detect(cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png")))) == 1


# --- the conversion, cached ------------------------------------------------------------------------------


@pytest.fixture
def tiny_copy(tmp_path, tiny_ssd):
    """The tiny SSD's two files in a folder of this test's own."""
    folder = tmp_path / "res10_ssd_caffe"
    folder.mkdir()
    for path in tiny_ssd:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder / "deploy.prototxt", folder / "tiny.caffemodel"


@pytest.fixture
def conversions(monkeypatch):
    """Counts the real conversions run (the converter itself runs unchanged)."""
    import streamer.detectors.caffe2onnx as module

    calls = []
    real = module._convert

    def counted(net, blobs):
        calls.append(1)
        return real(net, blobs)

    monkeypatch.setattr(module, "_convert", counted)
    return calls


def _same(a, b):
    assert a.onnx == b.onnx and a.spec == b.spec and a.input_name == b.input_name


def test_conversion_runs_once_and_is_reused(tiny_copy, conversions):
    prototxt, caffemodel = tiny_copy
    first = convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    onnx, sidecar = cache_paths(caffemodel, caffemodel.parent)
    assert onnx.is_file() and sidecar.is_file() and oct(onnx.stat().st_mode & 0o777) == "0o644"
    again = convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    assert len(conversions) == 1
    _same(again, first)
    _same(first, convert_ssd(prototxt, caffemodel))
    assert isinstance(again.spec.priors[0].variance, tuple)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "sidecar garbage", "sidecar gone", "other converter"])
def test_damaged_cache_is_rebuilt(tiny_copy, conversions, damage):
    prototxt, caffemodel = tiny_copy
    good = convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    onnx, sidecar = cache_paths(caffemodel, caffemodel.parent)
    data = bytearray(onnx.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0x10
        onnx.write_bytes(bytes(data))
    elif damage == "truncate":
        onnx.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "sidecar garbage":
        sidecar.write_text("{not json")
    elif damage == "sidecar gone":
        sidecar.unlink()
    else:
        sidecar.write_text(sidecar.read_text().replace('"converter": 1', '"converter": 0'))
    rebuilt = convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    assert len(conversions) == 2
    _same(rebuilt, good)
    assert onnx.read_bytes() == good.onnx
    convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    assert len(conversions) == 2, "the rebuilt cache is used again"


def test_changed_weights_are_converted_again(tiny_copy, conversions):
    prototxt, caffemodel = tiny_copy
    old = convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    weights = _tiny_weights()
    weights["conv3"][1] = weights["conv3"][1] + 1.0
    caffemodel.write_bytes(_caffemodel(weights))
    new = convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    assert len(conversions) == 2 and new.onnx != old.onnx
    _same(new, convert_ssd(prototxt, caffemodel))


def test_touched_but_same_weights_reuse_the_cache(tiny_copy, conversions):
    prototxt, caffemodel = tiny_copy
    convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    caffemodel.write_bytes(caffemodel.read_bytes())  # new mtime, same bytes: the sha256 decides
    convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent])
    assert len(conversions) == 1


def test_read_only_model_folder_caches_in_the_next_one(tiny_copy, tmp_path, conversions):
    prototxt, caffemodel = tiny_copy
    writable = tmp_path / "cache" / "res10_ssd_caffe"
    caffemodel.parent.chmod(0o555)
    try:
        convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent, writable])
        assert not cache_paths(caffemodel, caffemodel.parent)[0].exists()
        assert cache_paths(caffemodel, writable)[0].is_file()
        convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent, writable])
        assert len(conversions) == 1
        # Nowhere to write: converted in memory each time, nothing written, no error.
        shutil.rmtree(writable)
        writable.parent.chmod(0o555)
        convert_ssd_cached(prototxt, caffemodel, [caffemodel.parent, writable])
        assert len(conversions) == 2 and not writable.exists()
    finally:
        caffemodel.parent.chmod(0o755)
        writable.parent.chmod(0o755)


def test_res10_detector_through_the_pipeline_uses_the_cache(tmp_path, monkeypatch, conversions):
    """OpenCV 5 (or onnxruntime): the first build converts and caches in the writable models
    folder (../shared is read-only), the second loads the cache; same detections."""
    from streamer.config import Config, override
    from streamer.models.store import ModelStore
    from streamer.pipeline import build_detector

    if has_caffe_importer():
        pytest.skip("OpenCV 4 runs the Caffe original, no conversion")
    writable = tmp_path / "models"
    store = ModelStore([SHARED_MODELS, writable], auto_fetch=False)
    config = override(Config(), {"detector.name": "res10"})
    bgr = cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png"))
    first = build_detector(config, store).detect(bgr)
    assert cache_paths(RES10 / "res10_300x300_ssd_iter_140000.caffemodel", writable / "res10_ssd_caffe")[0].is_file()
    second = build_detector(config, store).detect(bgr)
    assert len(conversions) == 1
    assert len(first) == 1
    np.testing.assert_array_equal(first.xyxy, second.xyxy)
