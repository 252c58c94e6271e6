"""shrink_to_long_side: the detectors' inputs and the web's views."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.picture.resize import shrink_to_long_side


@pytest.mark.parametrize("shape_hw, max_side, expected_hw, scale", [
    ((480, 640), 320, (240, 320), 0.5),
    ((640, 480), 320, (320, 240), 0.5),
    ((1080, 1920), 640, (360, 640), 1 / 3),
    ((4000, 3), 100, (100, 1), 0.025),  # an extreme aspect keeps at least one pixel
])
def test_the_long_side_fits_and_the_aspect_is_kept(shape_hw, max_side, expected_hw, scale):
    small, got_scale = shrink_to_long_side(np.zeros(shape_hw + (3,), np.uint8), max_side)
    assert small.shape[:2] == expected_hw and got_scale == pytest.approx(scale)


def test_a_picture_that_fits_is_returned_as_it_is():
    small = np.zeros((100, 50, 3), np.uint8)
    out, scale = shrink_to_long_side(small, 320)
    assert out is small and scale == 1.0
