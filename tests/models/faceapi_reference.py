"""A numpy forward of face-api.js's AgeGenderNet, written from its TensorFlow.js source
(``src/xception/TinyXception.ts``, ``src/ageGenderNet/AgeGenderNet.ts``) in TensorFlow's own
layout and padding rules, independently of the ONNX graph of ``streamer.models.tfjs2onnx``: NHWC
float64, filters as stored (HWIO), "same" padding computed per op as TensorFlow does.
"""

from __future__ import annotations

from typing import Mapping, Tuple

import numpy as np

MEAN_RGB = np.array([122.782, 117.001, 104.298])


def _pad_same(x: np.ndarray, kernel: int, stride: int, value: float = 0.0) -> Tuple[np.ndarray, int]:
    """Pad H and W of an NHWC array as TensorFlow's "same" (the odd pixel at the end); the output side."""
    size = x.shape[1]
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    pads = ((0, 0), (before, total - before), (before, total - before), (0, 0))
    return np.pad(x, pads, constant_values=value), out


def conv2d(x: np.ndarray, filters: np.ndarray, stride: int) -> np.ndarray:
    """tf.conv2d(x, filters, stride, 'same'); ``filters`` (kh, kw, cin, cout)."""
    kernel = filters.shape[0]
    padded, out = _pad_same(x, kernel, stride)
    result = np.zeros((x.shape[0], out, out, filters.shape[3]))
    for i in range(kernel):
        for j in range(kernel):
            patch = padded[:, i : i + stride * out : stride, j : j + stride * out : stride, :]
            result += patch @ filters[i, j]
    return result


def separable_conv(x: np.ndarray, depthwise: np.ndarray, pointwise: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """tf.separableConv2d(x, depthwise (3, 3, C, 1), pointwise (1, 1, C, K), 1, 'same') + bias."""
    kernel = depthwise.shape[0]
    padded, out = _pad_same(x, kernel, 1)
    mixed = np.zeros_like(x)
    for i in range(kernel):
        for j in range(kernel):
            mixed += padded[:, i : i + out, j : j + out, :] * depthwise[i, j, :, 0]
    return mixed @ pointwise[0, 0] + bias


def max_pool_3x3_s2(x: np.ndarray) -> np.ndarray:
    """tf.maxPool(x, 3, 2, 'same'): padding never wins."""
    padded, out = _pad_same(x, 3, 2, value=-np.inf)
    windows = [padded[:, i : i + 2 * out : 2, j : j + 2 * out : 2, :] for i in range(3) for j in range(3)]
    return np.max(windows, axis=0)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def forward(weights: Mapping[str, np.ndarray], rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``rgb``: ``(N, 112, 112, 3)`` RGB 0-255 (any float or uint8). Returns age ``(N,)`` years and
    gender probabilities ``(N, 2)`` [male, female], float64."""
    w = {name: np.asarray(value, np.float64) for name, value in weights.items()}

    def sep(x: np.ndarray, prefix: str) -> np.ndarray:
        return separable_conv(x, w[f"{prefix}/depthwise_filter"], w[f"{prefix}/pointwise_filter"], w[f"{prefix}/bias"])

    def conv(x: np.ndarray, prefix: str, stride: int) -> np.ndarray:
        return conv2d(x, w[f"{prefix}/filters"], stride) + w[f"{prefix}/bias"]

    def reduction(x: np.ndarray, prefix: str, activate: bool = True) -> np.ndarray:
        out = sep(relu(x) if activate else x, f"{prefix}/separable_conv0")
        out = sep(relu(out), f"{prefix}/separable_conv1")
        return max_pool_3x3_s2(out) + conv(x, f"{prefix}/expansion_conv", 2)

    def main_block(x: np.ndarray, prefix: str) -> np.ndarray:
        out = sep(relu(x), f"{prefix}/separable_conv0")
        out = sep(relu(out), f"{prefix}/separable_conv1")
        return sep(relu(out), f"{prefix}/separable_conv2") + x

    x = (np.asarray(rgb, np.float64) - MEAN_RGB) / 255.0
    x = relu(conv(x, "entry_flow/conv_in", 2))
    x = reduction(x, "entry_flow/reduction_block_0", activate=False)
    x = reduction(x, "entry_flow/reduction_block_1")
    for block in range(2):
        x = main_block(x, f"middle_flow/main_block_{block}")
    x = reduction(x, "exit_flow/reduction_block")
    x = relu(sep(x, "exit_flow/separable_conv"))
    pooled = x.mean(axis=(1, 2))
    age = pooled @ w["fc/age/weights"][:, 0] + w["fc/age/bias"][0]
    logits = pooled @ w["fc/gender/weights"] + w["fc/gender/bias"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return age, probs / probs.sum(axis=1, keepdims=True)
