"""Anchors, many polygons at once, and the sides of lines with their dead band."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.audience.geometry import Lines, Polygons, anchor_points

SQUARE = [(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)]
# An L: the top-right quarter of the unit square is missing (concave, the classic trap).
ELL = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]
TRIANGLE = [(0.5, 0.1), (0.9, 0.9), (0.1, 0.9)]


@pytest.mark.parametrize("anchor, expected", [("centre", [[30.0, 60.0]]), ("bottom", [[30.0, 100.0]])])
def test_anchor_points(anchor, expected):
    np.testing.assert_allclose(anchor_points(np.array([[10, 20, 50, 100]], np.float32), anchor), expected)


@pytest.mark.parametrize(
    "point, inside",
    [
        ((0.4, 0.4), [True, True, True]),
        ((0.1, 0.1), [False, True, False]),
        ((0.8, 0.2), [False, False, False]),  # the L's missing corner
        ((0.8, 0.8), [False, True, True]),
        ((0.45, 0.05), [False, True, False]),
        ((1.5, 0.5), [False, False, False]),
        ((-0.1, 0.5), [False, False, False]),
    ],
)
def test_polygons_answer_every_zone_at_once(point, inside):
    polygons = Polygons([SQUARE, ELL, TRIANGLE])
    assert polygons.contains(np.array([point])).tolist() == [inside]


def test_polygons_on_no_points_and_no_zones_keep_their_shape():
    assert Polygons([SQUARE, ELL]).contains(np.zeros((0, 2))).shape == (0, 2)
    assert Polygons([]).contains(np.array([[0.5, 0.5]])).shape == (1, 0)


def test_polygons_match_opencv_on_random_points():
    import cv2

    rng = np.random.default_rng(3)
    points = rng.uniform(-0.1, 1.1, (500, 2))
    result = Polygons([SQUARE, ELL, TRIANGLE]).contains(points)
    for j, polygon in enumerate([SQUARE, ELL, TRIANGLE]):
        contour = np.array(polygon, np.float32).reshape(-1, 1, 2)
        expected = [cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points]
        clear = np.abs(expected) > 1e-6  # on an edge either answer is right
        assert (result[clear, j] == (np.array(expected)[clear] > 0)).all()


SHAPE_HW = (360, 640)


@pytest.mark.parametrize(
    "y_px, side",
    [(100.0, -1), (169.0, -1), (171.0, 0), (180.0, 0), (190.0, 0), (191.0, 1), (300.0, 1)],
)
def test_line_sides_with_a_band_of_three_percent(y_px, side):
    # A horizontal line at mid-height, "in" downwards; band 0.03 of 360 px = 10.8 px each side.
    lines = Lines([((0.0, 0.5), (1.0, 0.5))], [(0.0, 1.0)])
    assert lines.sides(np.array([[320.0, y_px]]), SHAPE_HW, np.array([0.03])).tolist() == [[side]]


def test_line_sides_follow_the_in_direction_and_the_ends():
    # The same segment drawn either way, "in" up: the sign follows the direction, not the drawing.
    lines = Lines([((0.2, 0.5), (0.8, 0.5)), ((0.8, 0.5), (0.2, 0.5))], [(0.0, -1.0), (0.0, -1.0)])
    points = np.array([[320.0, 100.0], [320.0, 300.0], [50.0, 100.0], [600.0, 300.0]])
    sides = lines.sides(points, SHAPE_HW, np.array([0.03, 0.03]))
    assert sides.tolist() == [[1, 1], [-1, -1], [2, 2], [2, 2]]
