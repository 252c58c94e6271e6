"""Protobuf's wire format, read and written, and an ONNX model writer on top of it: just the
messages and fields the converted graphs use (onnx.proto3, opset 13). Enough to turn a model file of
another format into an ONNX graph that cv2.dnn and onnxruntime load from bytes, with no protobuf or
onnx package (``detectors/caffe2onnx.py`` converts res10 with it, ``models/tfjs2onnx.py`` face-api's
AgeGenderNet)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Sequence, Tuple, Union

import numpy as np

# ---------------------------------------------------------------------------------------------
# protobuf wire format (reading and writing); https://protobuf.dev/programming-guides/encoding/

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def read_varint(buf: memoryview, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def read_fields(buf: memoryview) -> Iterator[Tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of one message; LEN values are memoryviews."""
    pos, end = 0, len(buf)
    value: Union[int, memoryview]
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire == LEN:
            size, pos = read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == I32:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == I64:
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


Chunks = List[Union[bytes, memoryview]]


def len_field(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | LEN) + encode_varint(len(payload)) + payload


def len_chunks(number: int, chunks: Chunks) -> Chunks:
    """A length-delimited field whose payload stays in pieces: the weights are copied once, by
    the final join, instead of once per level of nesting (a 10 MB model would peak at 60 MB)."""
    return [encode_varint(number << 3 | LEN) + encode_varint(sum(len(c) for c in chunks)), *chunks]


def int_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def float_field(number: int, value: float) -> bytes:
    return encode_varint(number << 3 | I32) + struct.pack("<f", value)


def str_field(number: int, text: str) -> bytes:
    return len_field(number, text.encode())


# ---------------------------------------------------------------------------------------------
# ONNX writer: just the messages and fields this graph uses (onnx.proto3, opset 13)

_ONNX_FLOAT, _ONNX_INT64 = 1, 7
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7
OPSET = 13


def tensor(name: str, array: np.ndarray) -> Chunks:
    dtype = _ONNX_INT64 if array.dtype == np.int64 else _ONNX_FLOAT
    array = np.ascontiguousarray(array, dtype="<i8" if dtype == _ONNX_INT64 else "<f4")
    dims = b"".join(int_field(1, d) for d in array.shape)
    return [dims + int_field(2, dtype) + str_field(8, name), *len_chunks(9, [memoryview(array.data).cast("B")])]


def attribute(name: str, value: Union[int, float, Sequence[int]]) -> bytes:
    out = str_field(1, name)
    if isinstance(value, float):
        return out + float_field(2, value) + int_field(20, _ATTR_FLOAT)
    if isinstance(value, int):
        return out + int_field(3, value) + int_field(20, _ATTR_INT)
    return out + b"".join(int_field(8, v) for v in value) + int_field(20, _ATTR_INTS)


def value_info(name: str, dims: Sequence[Union[int, str]]) -> bytes:
    shape = b"".join(
        len_field(1, int_field(1, d) if isinstance(d, int) else str_field(2, d)) for d in dims
    )
    tensor_type = int_field(1, _ONNX_FLOAT) + len_field(2, shape)
    return str_field(1, name) + len_field(2, len_field(1, tensor_type))


@dataclass
class OnnxGraph:
    nodes: List[bytes] = field(default_factory=list)
    initializers: List[Chunks] = field(default_factory=list)

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        body = b"".join(str_field(1, i) for i in inputs) + str_field(2, output)
        body += str_field(3, output) + str_field(4, op)
        body += b"".join(len_field(5, attribute(k, v)) for k, v in attrs.items())
        self.nodes.append(body)
        return output

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(tensor(name, array))
        return name

    def model(self, inputs: Sequence[bytes], outputs: Sequence[bytes], name: str = "streamer_caffe2onnx") -> bytes:
        """The ModelProto bytes; ``name`` is the graph's (which converter wrote it)."""
        graph: Chunks = [len_field(1, n) for n in self.nodes]
        graph.append(str_field(2, name))
        for tensor in self.initializers:
            graph += len_chunks(5, tensor)
        graph += [len_field(11, v) for v in inputs] + [len_field(12, v) for v in outputs]
        opset = str_field(1, "") + int_field(2, OPSET)
        return b"".join([int_field(1, 7), str_field(2, "streamer"), *len_chunks(7, graph), len_field(8, opset)])
