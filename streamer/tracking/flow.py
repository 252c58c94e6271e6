"""Boxes that follow the picture between detector runs: pyramidal Lucas-Kanade flow of points
inside each face.

A box moved by its past velocity slides off a person who stops or turns (a box left saying "analysing..."
on an empty whiteboard). Here each tracked face carries a few corner points found inside it at its
last detection; every frame they are tracked forward and back (``cv2.calcOpticalFlowPyrLK``), the
points whose round trip does not come back are dropped, and the box moves by the median shift of
the rest and scales by the median change of their spread. When too few points survive (the face
left, was covered or blurred beyond tracking) the box is reported lost, and the tracker checks
the spot with the detector instead of guessing.

Works on a grey copy of the frame at most ``WORK_SIDE_PX`` on its long side; boxes go in and out
in frame pixels (``xyxy`` float32).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from ..picture.resize import shrink_to_long_side

# 640 px keeps a 40 px face (a far person in a 1080p frame scaled down) about 24 px wide, enough
# corners to follow, at ~1 ms per frame for a handful of faces on a Pi-class core.
WORK_SIDE_PX = 640
# Points per face: enough that a median survives half of them being lost to an occluding hand.
_MAX_POINTS = 24
# Corners are looked for in the central part of the box (this share of each side cut away), where
# the face is; the box's corners often hold background that does not move with the face.
_INNER_MARGIN = 0.15
# LK window and pyramid: a 15 px window over 3 levels follows ~60 px of motion per frame at
# WORK_SIDE_PX, faster than a person walks across a webcam's view.
# minEigThreshold 1e-3 (OpenCV's default 1e-4): a point in a flat patch (a dark wall, a face gone
# black) "follows" with no error while following nothing; such points are dropped, so a box whose
# face became a flat patch is reported lost instead of staying put as a ghost.
_LK_PARAMS: Dict[str, Any] = dict(
    winSize=(15, 15),
    maxLevel=3,
    criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
    minEigThreshold=1e-3,
)
# nextPts=None (OpenCV allocates the output) is valid, but whether OpenCV's typing stubs accept it
# changes between releases (4.x and 5.0 refuse it, 5.1 accepts it): called untyped, so the type
# check passes on every OpenCV that pip may pick.
_lucas_kanade: Callable[..., Any] = cv2.calcOpticalFlowPyrLK
# Forward-backward error (work pixels) above which a point is not trusted (Kalal et al., 2010).
_MAX_FB_ERROR_PX = 1.0
# A box is lost when fewer than this many points, or this share of its seeded points, survive.
_MIN_POINTS = 5
_MIN_SURVIVING_SHARE = 0.3
# A face does not grow or shrink by more than this per frame; larger median ratios are noise.
_MAX_SCALE_STEP = 0.1


class _Points:
    """A face's tracked points: ``(K, 1, 2)`` float32 work pixels, and how many it was seeded with."""

    __slots__ = ("xy", "seeded")

    def __init__(self, xy: np.ndarray) -> None:
        self.xy = xy
        self.seeded = len(xy)


class BoxFlow:
    """Follows face boxes from frame to frame. Call :meth:`next_frame` with every frame, then
    :meth:`seed` for the boxes a detector placed on it and :meth:`follow` for the rest.

    Keys are the tracker's ids; :meth:`forget` drops the points of ended tracks."""

    def __init__(self) -> None:
        self._prev: Optional[np.ndarray] = None
        self._grey: Optional[np.ndarray] = None
        self._scale = 1.0
        self._points: Dict[int, _Points] = {}

    def next_frame(self, bgr: np.ndarray) -> None:
        """Take the ``(H, W, 3)`` uint8 BGR frame that the next calls refer to."""
        small, scale = shrink_to_long_side(bgr, WORK_SIDE_PX)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if self._grey is not None and (grey.shape != self._grey.shape or scale != self._scale):
            self._points.clear()  # the source changed size: old points mean nothing
            self._grey = None
        self._prev, self._grey, self._scale = self._grey, grey, scale

    def seed(self, key: int, xyxy: np.ndarray) -> None:
        """Find points to follow inside a box detected on the current frame."""
        assert self._grey is not None, "next_frame() first"
        x1, y1, x2, y2 = np.asarray(xyxy, np.float64) * self._scale
        mx, my = (x2 - x1) * _INNER_MARGIN, (y2 - y1) * _INNER_MARGIN
        h, w = self._grey.shape
        left, top = int(max(0, np.floor(x1 + mx))), int(max(0, np.floor(y1 + my)))
        right, bottom = int(min(w, np.ceil(x2 - mx))), int(min(h, np.ceil(y2 - my)))
        if right - left < 4 or bottom - top < 4:
            self._points.pop(key, None)
            return
        mask = np.zeros_like(self._grey)
        mask[top:bottom, left:right] = 255
        min_distance = max(2.0, min(right - left, bottom - top) / 8.0)
        corners = cv2.goodFeaturesToTrack(self._grey, _MAX_POINTS, 0.01, min_distance, mask=mask)
        if corners is None or len(corners) < _MIN_POINTS:
            # A flat face (low light, blur): a grid still carries the texture LK needs, if any.
            gx, gy = np.meshgrid(np.linspace(left, right - 1, 4), np.linspace(top, bottom - 1, 4))
            corners = np.stack([gx.ravel(), gy.ravel()], axis=1).reshape(-1, 1, 2)
        self._points[key] = _Points(corners.astype(np.float32))

    def follow(self, key: int, xyxy: np.ndarray) -> Optional[np.ndarray]:
        """The box moved from the previous frame to the current one, or None when it is lost
        (too few points survived, or it has none). ``xyxy`` is its box on the previous frame."""
        points = self._points.get(key)
        if points is None or self._prev is None or self._grey is None:
            return None
        p0 = points.xy
        p1, status, _ = _lucas_kanade(self._prev, self._grey, p0, None, **_LK_PARAMS)
        if p1 is None:
            self._points.pop(key, None)
            return None
        back, status_back, _ = _lucas_kanade(self._grey, self._prev, p1, None, **_LK_PARAMS)
        fb_error = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
        good = (status.ravel() == 1) & (status_back.ravel() == 1) & (fb_error < _MAX_FB_ERROR_PX)
        if good.sum() < max(_MIN_POINTS, _MIN_SURVIVING_SHARE * points.seeded):
            self._points.pop(key, None)
            return None
        old, new = p0.reshape(-1, 2)[good], p1.reshape(-1, 2)[good]
        shift = np.median(new - old, axis=0)
        scale = _median_scale(old, new)
        x1, y1, x2, y2 = np.asarray(xyxy, np.float64) * self._scale
        cx, cy = (x1 + x2) / 2 + shift[0], (y1 + y2) / 2 + shift[1]
        half_w, half_h = (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
        h, w = self._grey.shape
        if cx + half_w <= 0 or cy + half_h <= 0 or cx - half_w >= w or cy - half_h >= h:
            self._points.pop(key, None)  # followed out of the picture
            return None
        points.xy = new.reshape(-1, 1, 2).astype(np.float32)
        return (np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h]) / self._scale).astype(np.float32)

    def forget(self, key: int) -> None:
        self._points.pop(key, None)

    def keys(self) -> Tuple[int, ...]:
        return tuple(self._points)


def _median_scale(old: np.ndarray, new: np.ndarray) -> float:
    """Median ratio of pairwise point distances after / before, clamped to one frame's change."""
    if len(old) < 2:
        return 1.0
    i, j = np.triu_indices(len(old), k=1)
    before = np.linalg.norm(old[i] - old[j], axis=1)
    after = np.linalg.norm(new[i] - new[j], axis=1)
    ok = before > 1.0
    if not ok.any():
        return 1.0
    ratio = float(np.median(after[ok] / before[ok]))
    return float(np.clip(ratio, 1.0 - _MAX_SCALE_STEP, 1.0 + _MAX_SCALE_STEP))
