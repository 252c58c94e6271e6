"""Box geometry shared by the detectors, the tracker, the worker and the bench: one home each.

Boxes are ``xyxy`` float arrays in frame pixels, shape ``(..., 4)``, x2/y2 exclusive edges.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """Areas of ``(..., 4)`` boxes; degenerate boxes give 0."""
    xyxy = np.asarray(xyxy)
    # np.maximum, not np.clip: the same values, without np.clip's per-call overhead (called a few
    # times per face per frame).
    return np.maximum(xyxy[..., 2] - xyxy[..., 0], 0) * np.maximum(xyxy[..., 3] - xyxy[..., 1], 0)


def box_tuple(xyxy: np.ndarray) -> Tuple[float, float, float, float]:
    """One box as four Python floats (``Face.xyxy``)."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy).reshape(4))
    return x1, y1, x2, y2


def short_side(xyxy: np.ndarray) -> np.ndarray:
    """The shorter side of ``(..., 4)`` boxes, in pixels (0 for degenerate boxes)."""
    xyxy = np.asarray(xyxy)
    return np.maximum(np.minimum(xyxy[..., 2] - xyxy[..., 0], xyxy[..., 3] - xyxy[..., 1]), 0)


def clipped(xyxy: np.ndarray, shape_hw: Tuple[int, int]) -> np.ndarray:
    """A float32 copy of ``(..., 4)`` boxes clipped to a frame of ``shape_hw``: what of a box is
    in the picture (a box partly outside keeps its inside part)."""
    h, w = shape_hw
    out = np.array(xyxy, np.float32, copy=True)
    np.clip(out[..., 0::2], 0, w, out=out[..., 0::2])
    np.clip(out[..., 1::2], 0, h, out=out[..., 1::2])
    return out


def at_frame_edge(xyxy: np.ndarray, shape_hw: Tuple[int, int], margin_px: float = 1.0) -> np.ndarray:
    """Bool mask of ``(N, 4)`` boxes that reach the border of a frame of ``shape_hw`` (within
    ``margin_px``). Detector boxes are clipped to the frame, so a face cut by the edge of the
    picture (walking in or out) has a box on the border."""
    h, w = shape_hw
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return (
        (xyxy[:, 0] <= margin_px) | (xyxy[:, 1] <= margin_px)
        | (xyxy[:, 2] >= w - margin_px) | (xyxy[:, 3] >= h - margin_px)
    )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of two ``(N, 4)`` / ``(M, 4)`` xyxy arrays."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.maximum(bottom_right - top_left, 0), axis=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def covered_share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N,)``: the largest share of each ``(N, 4)`` box of ``a`` lying inside one box of ``(M, 4)``
    ``b`` (0 when ``b`` is empty): 1 means wholly inside one of them."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros(len(a))
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    return inter.max(axis=1) / np.maximum(box_area(a), 1e-9)


def scaled_about_centre(xyxy: np.ndarray, factor: float) -> np.ndarray:
    """``(N, 4)`` float32 boxes with width and height times ``factor``, centres kept."""
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def grown_box(xyxy: np.ndarray, grow: float, shape_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """Integer pixel bounds ``(x1, y1, x2, y2)`` of a box pushed out by ``grow`` times its width and
    height on every side, clipped to a frame of ``shape_hw``; empty (x2 <= x1) when outside."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy).reshape(4))
    dx, dy = (x2 - x1) * grow, (y2 - y1) * grow
    h, w = shape_hw
    return (
        int(max(0, np.floor(x1 - dx))),
        int(max(0, np.floor(y1 - dy))),
        int(min(w, np.ceil(x2 + dx))),
        int(min(h, np.ceil(y2 + dy))),
    )
