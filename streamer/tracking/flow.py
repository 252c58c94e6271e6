"""Boxes that follow the picture between detector runs: pyramidal Lucas-Kanade flow of points
inside each face.

A box moved by its past velocity slides off a person who stops or turns (a box left saying "analysing..."
on an empty whiteboard). Here each tracked face carries a few corner points found inside it; every
frame they are tracked forward and back (``cv2.calcOpticalFlowPyrLK``), the points whose round trip
does not come back are dropped, and the box moves by the median shift of the rest and scales by the
median change of their spread. When too few points survive (the face left, was covered or blurred
beyond tracking) the box is reported lost, and the tracker checks the spot with the detector
instead of guessing.

Cost: the flow works on the frame's shared grey picture (``GreyFrame``, at most 640 px
on its long side), and on a crop around each face rather than the whole picture, scaled down when
the face is large, so a face costs the same few hundredths of a millisecond whatever the frame
size. OpenCV's Python binding cannot take a pyramid built once per frame (``buildOpticalFlowPyramid``'s
output is refused as ``prevImg``), so each call builds the pyramids of its two small crops. A
track's corners are found once and kept through its detections; they are topped up, inside the
detected box, only when fewer than ``_TOP_UP_POINTS`` are left. Boxes go in and out in frame
pixels (``xyxy`` float32).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from ..boxes import box_iou
from ..picture.grey import GreyFrame

# Points per face: enough that a median survives half of them being lost to an occluding hand.
_MAX_POINTS = 24
# A detection keeps the track's points while at least this many are left inside its box; below,
# new corners are added up to _MAX_POINTS. Finding corners is the flow's costliest step
# (goodFeaturesToTrack on the whole picture was ~15 ms on a Pi-class core per call).
_TOP_UP_POINTS = 16
# A detection that overlaps the box the points lead to less than this says they drifted off
# the face (onto a wall, a neighbour): they are dropped and found again in the detected box.
_KEEP_POINTS_IOU = 0.5
# Corners are looked for in the central part of the box (this share of each side cut away), where
# the face is; the box's corners often hold background that does not move with the face.
_INNER_MARGIN = 0.15
# goodFeaturesToTrack's derivative (3 px) and block (3 px) reach: the crop it gets is this much
# wider than where corners are looked for, so it finds what it would on the whole picture.
_CORNER_BORDER_PX = 4
# A face larger than twice this (long side, grey pixels) is followed on its crop halved (or
# quartered...) until it is under twice this: LK's cost grows with the crop's area, 64 px still
# hold 24 corners a few pixels apart, and halving is area interpolation's fast path.
_FLOW_FACE_PX = 64
# The crop LK works on: the box grown on every side by this share of its side (half a face of
# motion per frame, faster than a person walks across a webcam's view) plus _CROP_PAD_PX (LK's
# window around a point at the crop's edge), in crop pixels.
_CROP_GROW = 0.5
_CROP_PAD_PX = 16
# LK window and pyramid: a 15 px window over 3 levels follows ~60 px of motion per frame.
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
# Forward-backward error (crop pixels: a 64 px face at most) above which a point is not trusted
# (Kalal et al., 2010).
_MAX_FB_ERROR_PX = 1.0
# A box is lost when fewer than this many points, or this share of its seeded points, survive.
_MIN_POINTS = 5
_MIN_SURVIVING_SHARE = 0.3
# A face does not grow or shrink by more than this per frame; larger median ratios are noise.
_MAX_SCALE_STEP = 0.1


class _Points:
    """A face's tracked points: ``xy`` ``(K, 1, 2)`` float32 grey pixels on frame number
    ``frame`` (BoxFlow's count), the ``box`` (grey pixels) they belong to there, and how many
    there were at the last detection."""

    __slots__ = ("xy", "seeded", "box", "frame")

    def __init__(self, xy: np.ndarray, box: np.ndarray, frame: int) -> None:
        self.xy = xy
        self.seeded = len(xy)
        self.box = box
        self.frame = frame


class BoxFlow:
    """Follows face boxes from frame to frame. Call :meth:`next_frame` with every frame's
    ``GreyFrame``, then :meth:`seed` for the boxes a detector placed on it and :meth:`follow`
    for the rest.

    Keys are the tracker's ids; :meth:`forget` drops the points of ended tracks."""

    def __init__(self) -> None:
        self._prev: Optional[GreyFrame] = None
        self._cur: Optional[GreyFrame] = None
        self._count = 0  # frames taken
        self._points: Dict[int, _Points] = {}

    def next_frame(self, grey: GreyFrame) -> None:
        """Take the frame that the next calls refer to."""
        cur = self._cur
        if cur is not None and (grey.grey.shape != cur.grey.shape or grey.scale != cur.scale):
            self._points.clear()  # the source changed size: old points mean nothing
            cur = None
        self._prev, self._cur = cur, grey
        self._count += 1

    def seed(self, key: int, xyxy: np.ndarray) -> None:
        """A detector placed this face's box on the current frame: keep the points that are
        inside it (moved to this frame first when they are from the previous one), and find new
        corners there when too few are left."""
        assert self._cur is not None, "next_frame() first"
        grey = self._cur.grey
        box = self._cur.to_grey(xyxy).reshape(4)
        inner = _inner_rect(box, grey.shape)
        if inner is None:
            self._points.pop(key, None)
            return
        kept = self._current_points(key, box)
        left, top, right, bottom = inner
        if kept is not None:
            xy = kept.reshape(-1, 2)
            kept = kept[(xy[:, 0] >= left) & (xy[:, 0] < right) & (xy[:, 1] >= top) & (xy[:, 1] < bottom)]
            if len(kept) >= _TOP_UP_POINTS:
                self._points[key] = _Points(kept, box, self._count)
                return
        kept = np.zeros((0, 1, 2), np.float32) if kept is None else kept
        min_distance = max(2.0, min(right - left, bottom - top) / 8.0)
        # The corner measure of a pixel looks at its neighbours: the crop reaches _CORNER_BORDER_PX
        # past the inner rect (masked out), so the corners are those of the whole picture there.
        h, w = grey.shape
        x0, y0 = max(0, left - _CORNER_BORDER_PX), max(0, top - _CORNER_BORDER_PX)
        x1, y1 = min(w, right + _CORNER_BORDER_PX), min(h, bottom + _CORNER_BORDER_PX)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        mask[top - y0:bottom - y0, left - x0:right - x0] = 255
        for x, y in kept.reshape(-1, 2):
            cv2.circle(mask, (int(x) - x0, int(y) - y0), int(min_distance), 0, -1)
        corners = cv2.goodFeaturesToTrack(grey[y0:y1, x0:x1], _MAX_POINTS - len(kept), 0.01, min_distance, mask=mask)
        found = np.zeros((0, 1, 2), np.float32) if corners is None else corners.astype(np.float32) + np.array((x0, y0), np.float32)
        points = np.concatenate([kept, found])
        if len(points) < _MIN_POINTS:
            # A flat face (low light, blur): a grid still carries the texture LK needs, if any.
            gx, gy = np.meshgrid(np.linspace(left, right - 1, 4), np.linspace(top, bottom - 1, 4))
            points = np.stack([gx.ravel(), gy.ravel()], axis=1).reshape(-1, 1, 2).astype(np.float32)
        self._points[key] = _Points(points, box, self._count)

    def _current_points(self, key: int, box: np.ndarray) -> Optional[np.ndarray]:
        """The track's points on the current frame, for a detection at ``box`` (grey pixels): None
        when it has none, when they are older than the previous frame, or when the box they lead
        to is not the detected one (they drifted off the face)."""
        points = self._points.get(key)
        if points is None or points.frame < self._count - 1:
            return None
        if points.frame == self._count - 1:  # a frame the tracker did not follow (a full-frame detection)
            moved = self._track(points)
            if moved is None:
                return None
            points.xy, points.box = moved
            points.frame = self._count
        if box_iou(points.box, box)[0, 0] < _KEEP_POINTS_IOU:
            return None
        return points.xy

    def follow(self, key: int, xyxy: np.ndarray) -> Optional[np.ndarray]:
        """The box moved from the previous frame to the current one, or None when it is lost
        (too few points survived, or it has none). ``xyxy`` is its box on the previous frame."""
        points = self._points.get(key)
        if points is None or self._prev is None or self._cur is None:
            return None
        points.box = self._cur.to_grey(xyxy).reshape(4)
        moved = self._track(points)
        if moved is None:
            self._points.pop(key, None)
            return None
        points.xy, points.box = moved
        points.frame = self._count
        return (np.asarray(points.box, np.float64) / self._cur.scale).astype(np.float32)

    def _track(self, points: _Points) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """``points`` (at ``points.box`` on the previous frame) on the current frame: the
        surviving points and the moved box, grey pixels; None when lost."""
        if self._prev is None or self._cur is None:
            return None
        x1, y1, x2, y2 = (float(v) for v in points.box)
        side = max(x2 - x1, y2 - y1, 1.0)
        shrink = 0.5 ** max(0, int(np.floor(np.log2(side / _FLOW_FACE_PX))))
        pad = _CROP_GROW * side + _CROP_PAD_PX / shrink
        h, w = self._cur.grey.shape
        left, top = max(0, int(np.floor(x1 - pad))), max(0, int(np.floor(y1 - pad)))
        right, bottom = min(w, int(np.ceil(x2 + pad))), min(h, int(np.ceil(y2 + pad)))
        if right - left < 8 or bottom - top < 8:
            return None  # followed out of the picture
        before, after = self._prev.grey[top:bottom, left:right], self._cur.grey[top:bottom, left:right]
        to_crop = np.array((shrink, shrink), np.float32)
        if shrink < 1.0:
            size_wh = (max(8, round((right - left) * shrink)), max(8, round((bottom - top) * shrink)))
            before = cv2.resize(before, size_wh, interpolation=cv2.INTER_AREA)
            after = cv2.resize(after, size_wh, interpolation=cv2.INTER_AREA)
            to_crop = np.array((size_wh[0] / (right - left), size_wh[1] / (bottom - top)), np.float32)
        origin = np.array((left, top), np.float32)
        p0 = ((points.xy.reshape(-1, 2) - origin) * to_crop).reshape(-1, 1, 2)
        p1, status, _ = _lucas_kanade(before, after, p0, None, **_LK_PARAMS)
        if p1 is None:
            return None
        back, status_back, _ = _lucas_kanade(after, before, p1, None, **_LK_PARAMS)
        round_trip = (back - p0).reshape(-1, 2)
        fb_error = np.sqrt((round_trip * round_trip).sum(axis=1))
        good = (status.ravel() == 1) & (status_back.ravel() == 1) & (fb_error < _MAX_FB_ERROR_PX)
        if good.sum() < max(_MIN_POINTS, _MIN_SURVIVING_SHARE * points.seeded):
            return None
        old = p0.reshape(-1, 2)[good] / to_crop + origin
        new = p1.reshape(-1, 2)[good] / to_crop + origin
        shift = _median(new - old)
        scale = _median_scale(old, new)
        # In float64 (Python floats), as the box's own arithmetic: float32 here shifts boxes by
        # rounding, which the tracker's thresholds can turn into a different decision frames later.
        cx, cy = (x1 + x2) / 2 + float(shift[0]), (y1 + y2) / 2 + float(shift[1])
        half_w, half_h = (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
        if cx + half_w <= 0 or cy + half_h <= 0 or cx - half_w >= w or cy - half_h >= h:
            return None  # followed out of the picture
        box = np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h], np.float64)
        return new.reshape(-1, 1, 2).astype(np.float32), box

    def forget(self, key: int) -> None:
        self._points.pop(key, None)

    def keys(self) -> Tuple[int, ...]:
        return tuple(self._points)


def _inner_rect(box: np.ndarray, shape_hw: Tuple[int, ...]) -> Optional[Tuple[int, int, int, int]]:
    """The central part of a box (grey pixels) where corners are looked for, as integer
    ``(left, top, right, bottom)`` inside the picture; None when under 4 px a side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * _INNER_MARGIN, (y2 - y1) * _INNER_MARGIN
    h, w = shape_hw[:2]
    left, top = int(max(0, np.floor(x1 + mx))), int(max(0, np.floor(y1 + my)))
    right, bottom = int(min(w, np.ceil(x2 - mx))), int(min(h, np.ceil(y2 - my)))
    if right - left < 4 or bottom - top < 4:
        return None
    return left, top, right, bottom


# Index pairs of up to _MAX_POINTS points, made once (np.triu_indices per call was a fifth of the flow's time).
_PAIRS = {n: np.triu_indices(n, k=1) for n in range(2, _MAX_POINTS + 1)}


def _median_scale(old: np.ndarray, new: np.ndarray) -> float:
    """Median ratio of pairwise point distances after / before, clamped to one frame's change."""
    if len(old) < 2:
        return 1.0
    i, j = _PAIRS[len(old)] if len(old) in _PAIRS else np.triu_indices(len(old), k=1)
    d_old, d_new = old[i] - old[j], new[i] - new[j]
    before = np.hypot(d_old[:, 0], d_old[:, 1])
    after = np.hypot(d_new[:, 0], d_new[:, 1])
    ok = before > 1.0
    if not ok.any():
        return 1.0
    ratio = float(_median(after[ok] / before[ok]))
    return float(np.clip(ratio, 1.0 - _MAX_SCALE_STEP, 1.0 + _MAX_SCALE_STEP))


def _median(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)`` (the same value and dtype) for the few dozen values of one
    face, without ``np.median``'s overhead (a tenth of a millisecond a call, as much as the LK
    call itself)."""
    ordered = np.sort(values, axis=0)
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
