"""Where a face is, against zones and lines: the anchor point of a box, point-in-polygon for many
zones at once, and the side of a line with a dead band. Pure numpy, vectorised over faces and
zones (10 zones and 10 lines cost tens of microseconds a frame, bench/audience.py).

Zones and lines are given in relative coordinates (0-1, x right, y down). Containment does not
change under scaling each axis, so it is tested on anchors in relative coordinates; distances to a
line are measured in pixels, where a band of "3 % of the shorter side" means the same on any frame.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

Point = Tuple[float, float]


def anchor_points(xyxy: np.ndarray, anchor: str) -> np.ndarray:
    """The point of each box that says where its person is: ``(N, 2)`` float64 pixels, the box
    centre (``anchor="centre"``) or the middle of its bottom edge (``"bottom"``). ``xyxy``: ``(N, 4)``."""
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    x = (boxes[:, 0] + boxes[:, 2]) / 2.0
    y = boxes[:, 3] if anchor == "bottom" else (boxes[:, 1] + boxes[:, 3]) / 2.0
    return np.stack([x, y], axis=1)


class Polygons:
    """Several polygons (relative coordinates), tested together: all their edges in one array, so
    one broadcast answers "which faces are in which zones" (crossing-number rule; a point exactly on
    an edge may fall either way, which the zones' inertia absorbs)."""

    def __init__(self, polygons: Sequence[Sequence[Point]]) -> None:
        self.count = len(polygons)
        starts: List[int] = []
        x1: List[float] = []
        y1: List[float] = []
        x2: List[float] = []
        y2: List[float] = []
        for polygon in polygons:
            starts.append(len(x1))
            corners = [tuple(map(float, point)) for point in polygon]
            for (ax, ay), (bx, by) in zip(corners, [*corners[1:], corners[0]]):
                x1.append(ax)
                y1.append(ay)
                x2.append(bx)
                y2.append(by)
        self._starts = np.array(starts, np.intp)
        self._x1, self._y1 = np.array(x1, np.float64), np.array(y1, np.float64)
        self._y2 = np.array(y2, np.float64)
        rise = self._y2 - self._y1
        # x per unit of y along each edge; horizontal edges never cross a ray in x, their slope is unused.
        self._slope = np.divide(np.array(x2) - self._x1, rise, out=np.zeros_like(rise), where=rise != 0)

    def contains(self, points_rel: np.ndarray) -> np.ndarray:
        """``(N, Z)`` bool: point i is inside polygon j. ``points_rel``: ``(N, 2)`` relative coordinates."""
        points = np.asarray(points_rel, np.float64).reshape(-1, 2)
        if not self.count or not len(points):
            return np.zeros((len(points), self.count), bool)
        px, py = points[:, :1], points[:, 1:]
        spans = (self._y1 <= py) != (self._y2 <= py)  # the edge straddles the point's row
        crossing_x = self._x1 + (py - self._y1) * self._slope
        crosses = spans & (px < crossing_x)
        return (np.add.reduceat(crosses, self._starts, axis=1) % 2).astype(bool)


class Lines:
    """Several lines (relative ends) and which way across each is "in" (a unit vector on the
    picture): :meth:`sides` says on which side of each line each point is, outside a dead band."""

    def __init__(self, ends: Sequence[Tuple[Point, Point]], directions: Sequence[Point]) -> None:
        self.count = len(ends)
        self._ends = np.array(ends, np.float64).reshape(-1, 2, 2)
        self._in = np.array(directions, np.float64).reshape(-1, 2)
        self._shape_hw: Tuple[int, int] = (0, 0)

    def _pixels(self, shape_hw: Tuple[int, int]) -> None:
        if shape_hw == self._shape_hw:
            return
        h, w = shape_hw
        ends = self._ends * np.array([w, h], np.float64)
        self._a = ends[:, 0]
        along = ends[:, 1] - ends[:, 0]
        self._length = np.linalg.norm(along, axis=1)
        self._unit = along / self._length[:, None]
        normal = np.stack([-self._unit[:, 1], self._unit[:, 0]], axis=1)
        # Point the normal to the "in" side, so that a positive distance is "in" (the direction is
        # across the line by the config's check, so the dot product is never 0).
        flip = np.sign(np.einsum("ij,ij->i", normal, self._in))
        self._normal = normal * flip[:, None]
        self._shape_hw = shape_hw

    def sides(self, points_px: np.ndarray, shape_hw: Tuple[int, int], band: np.ndarray) -> np.ndarray:
        """``(N, L)`` int8: +1 on the "in" side of line j beyond ``band[j]`` (a share of the frame's
        shorter side), -1 on the "out" side beyond it, 0 within the band, and 2 beyond the line's ends
        (a point there is not crossing this line). ``points_px``: ``(N, 2)`` pixels."""
        points = np.asarray(points_px, np.float64).reshape(-1, 2)
        if not self.count or not len(points):
            return np.zeros((len(points), self.count), np.int8)
        self._pixels(shape_hw)
        offset = points[:, None, :] - self._a[None, :, :]  # (N, L, 2)
        distance = np.einsum("nlk,lk->nl", offset, self._normal)
        along = np.einsum("nlk,lk->nl", offset, self._unit)
        band_px = np.asarray(band, np.float64) * min(shape_hw)
        side = np.where(distance > band_px, 1, np.where(distance < -band_px, -1, 0)).astype(np.int8)
        side[(along < 0) | (along > self._length)] = 2
        return side
