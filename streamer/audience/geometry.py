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


# An anchor is a linear map of a box: (N, 4) xyxy @ (4, 2) -> (N, 2) points.
_ANCHORS = {
    "centre": np.array([[0.5, 0.0], [0.0, 0.5], [0.5, 0.0], [0.0, 0.5]], np.float64),
    "bottom": np.array([[0.5, 0.0], [0.0, 0.0], [0.5, 0.0], [0.0, 1.0]], np.float64),
}


def anchor_points(xyxy: np.ndarray, anchor: str) -> np.ndarray:
    """The point of each box that says where its person is: ``(N, 2)`` float64 pixels, the box
    centre (``anchor="centre"``) or the middle of its bottom edge (``"bottom"``). ``xyxy``: ``(N, 4)``."""
    return np.asarray(xyxy, np.float64).reshape(-1, 4) @ _ANCHORS[anchor]


class Polygons:
    """Several polygons (relative coordinates), tested together: all their edges in one array, so
    one broadcast answers "which faces are in which zones" (crossing-number rule; a point exactly on
    an edge may fall either way, which the zones' inertia absorbs). The edges are scaled to each
    frame size once, so the per-frame test is a handful of numpy operations whatever the count."""

    def __init__(self, polygons: Sequence[Sequence[Point]]) -> None:
        self.count = len(polygons)
        starts: List[int] = []
        edges: List[Tuple[float, float, float, float]] = []
        for polygon in polygons:
            starts.append(len(edges))
            corners = [(float(x), float(y)) for x, y in polygon]
            edges += [(ax, ay, bx, by) for (ax, ay), (bx, by) in zip(corners, [*corners[1:], corners[0]])]
        self._starts = np.array(starts, np.intp)
        self._edges = np.array(edges, np.float64).reshape(-1, 4)
        self._shape_hw: Tuple[int, int] = (0, 0)

    def _scale(self, shape_hw: Tuple[int, int]) -> None:
        if shape_hw == self._shape_hw:
            return
        h, w = shape_hw
        x1, y1, x2, y2 = (self._edges * np.array([w, h, w, h], np.float64)).T
        rise = y2 - y1
        self._x1, self._y1, self._y2 = x1[None, :], y1[None, :], y2[None, :]
        # x per unit of y along each edge; horizontal edges never cross a ray in x, their slope is unused.
        self._slope = np.divide(x2 - x1, rise, out=np.zeros_like(rise), where=rise != 0)[None, :]
        self._shape_hw = shape_hw

    def inside(self, points_px: np.ndarray, shape_hw: Tuple[int, int]) -> np.ndarray:
        """``(N, Z)`` bool: point i (frame pixels, ``(N, 2)``) is inside polygon j on a frame of ``shape_hw``."""
        points = np.asarray(points_px, np.float64).reshape(-1, 2)
        if not self.count or not len(points):
            return np.zeros((len(points), self.count), bool)
        self._scale(shape_hw)
        px, py = points[:, :1], points[:, 1:]
        spans = (self._y1 <= py) != (self._y2 <= py)  # the edge straddles the point's row
        crosses = spans & (px < self._x1 + (py - self._y1) * self._slope)
        return (np.add.reduceat(crosses, self._starts, axis=1) & 1).astype(bool)

    def contains(self, points_rel: np.ndarray) -> np.ndarray:
        """``(N, Z)`` bool for points in relative coordinates (0-1)."""
        return self.inside(points_rel, (1, 1))


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
        start = ends[:, 0]
        along = ends[:, 1] - start
        length = np.linalg.norm(along, axis=1)
        unit = along / length[:, None]
        normal = np.stack([-unit[:, 1], unit[:, 0]], axis=1)
        # Point the normal to the "in" side, so that a positive distance is "in" (the direction is
        # across the line by the config's check, so the dot product is never 0).
        normal *= np.sign(np.einsum("ij,ij->i", normal, self._in))[:, None]
        # One product gives every point's distance from each line (first L columns) and position
        # along it (last L): [x y] @ [normals | units] - [normal . start | unit . start].
        self._project = np.concatenate([normal, unit]).T.copy()
        self._offset = np.concatenate([np.einsum("ij,ij->i", normal, start), np.einsum("ij,ij->i", unit, start)])
        self._length = length
        self._shape_hw = shape_hw

    def sides(self, points_px: np.ndarray, shape_hw: Tuple[int, int], band: np.ndarray) -> np.ndarray:
        """``(N, L)`` int8: +1 on the "in" side of line j beyond ``band[j]`` (a share of the frame's
        shorter side), -1 on the "out" side beyond it, 0 within the band, and 2 beyond the line's ends
        (a point there is not crossing this line). ``points_px``: ``(N, 2)`` pixels."""
        points = np.asarray(points_px, np.float64).reshape(-1, 2)
        if not self.count or not len(points):
            return np.zeros((len(points), self.count), np.int8)
        self._pixels(shape_hw)
        projected = points @ self._project - self._offset
        distance, along = projected[:, :self.count], projected[:, self.count:]
        band_px = np.asarray(band, np.float64) * min(shape_hw)
        side = ((distance > band_px).astype(np.int8) - (distance < -band_px)).astype(np.int8)
        side[(along < 0) | (along > self._length)] = 2
        return side
