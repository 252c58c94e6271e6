"""GreyFrame: the one grey picture per frame that the gate, the cut detector and the flow share."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.picture.grey import GREY_SIDE_PX, GreyFrame


@pytest.mark.parametrize("shape_hw, expected_hw, scale", [
    ((480, 640), (480, 640), 1.0),  # a webcam frame stays at full size
    ((144, 176), (144, 176), 1.0),
    ((720, 1280), (360, 640), 0.5),
    ((1080, 1920), (360, 640), 1 / 3),
    ((1920, 1080), (640, 360), 1 / 3),  # portrait: the long side is the height
])
def test_the_grey_picture_fits_the_long_side(shape_hw, expected_hw, scale):
    grey = GreyFrame.of(np.zeros(shape_hw + (3,), np.uint8))
    assert grey.grey.shape == expected_hw and grey.grey.dtype == np.uint8
    assert grey.scale == pytest.approx(scale) and grey.shape_hw == shape_hw
    assert max(grey.grey.shape) <= GREY_SIDE_PX


def test_grey_is_the_frames_brightness_and_boxes_map_by_the_scale():
    rng = np.random.default_rng(0)
    bgr = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (1280, 720), interpolation=cv2.INTER_NEAREST)
    grey = GreyFrame.of(bgr)
    expected = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (640, 360), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(grey.grey, expected)
    boxes = np.array([[100, 50, 300, 250], [0, 0, 1280, 720]], np.float32)
    np.testing.assert_allclose(grey.to_grey(boxes), boxes / 2)
    assert grey.to_grey(np.zeros((0, 4), np.float32)).shape == (0, 4)
