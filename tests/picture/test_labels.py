"""The label text and colour of a face: a child whose gender is not shown reads "child" with its age."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.picture.draw import COLOR_FEMALE, COLOR_UNKNOWN, draw_faces, label_for
from streamer.types import Face

CHILD = Face(xyxy=(20, 20, 80, 80), score=0.9, gender=None, gender_p=None, age=6.2, age_group="3-9", classified=True,
             age_range=(4.0, 9.0))


@pytest.mark.parametrize(
    "face, text",
    [
        (CHILD, "child | 6y (4-9)"),
        (Face(xyxy=(0, 0, 9, 9), score=0.9, gender=None, age=1.0, age_group="0-2", classified=True, track=4),
         "#4 child | 1y (0-2)"),
        (Face(xyxy=(0, 0, 9, 9), score=0.9, gender="female", gender_p=0.95, age=7.0, age_group="3-9",
              classified=True, age_range=(5.0, 9.0)), "female 95% | 7y (5-9)"),
        (Face(xyxy=(0, 0, 9, 9), score=0.9, track=2), "#2 analysing..."),
        (Face(xyxy=(0, 0, 9, 9), score=0.9, turned=True), "face (turned)"),
    ],
)
def test_label_text(face, text):
    assert label_for(face) == text


def test_a_child_without_gender_is_drawn_grey():
    canvas = draw_faces(np.zeros((100, 100, 3), np.uint8), [CHILD])
    edge = canvas[50, 20].astype(int)  # on the box's left edge (anti-aliased, so dimmer than the colour)
    assert edge[0] == edge[1] == edge[2] > 0, f"grey as {COLOR_UNKNOWN}, not a gender's colour such as {COLOR_FEMALE}"
