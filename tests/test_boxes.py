"""Box geometry shared by detectors, tracker, worker and benches."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.boxes import at_frame_edge

SHAPE_HW = (480, 640)


@pytest.mark.parametrize(
    "xyxy, cut",
    [
        ((100, 100, 200, 200), False),  # well inside
        ((2, 100, 102, 200), False),  # near the left edge, not on it
        ((0, 100, 60, 200), True),  # clipped at the left edge: walking in
        ((600, 100, 640, 200), True),  # clipped at the right edge
        ((100, 0, 200, 80), True),  # forehead cut by the top
        ((100, 400, 200, 480), True),  # chin cut by the bottom
    ],
)
def test_a_box_on_the_frame_border_is_a_face_cut_by_the_edge(xyxy, cut) -> None:
    assert at_frame_edge(np.array([xyxy], np.float32), SHAPE_HW).tolist() == [cut]


def test_no_boxes_give_an_empty_mask() -> None:
    mask = at_frame_edge(np.zeros((0, 4), np.float32), SHAPE_HW)
    assert mask.shape == (0,) and mask.dtype == bool
