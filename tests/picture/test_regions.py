"""The audience overlay: zones and lines thin and named, under the face labels, only when asked."""

from __future__ import annotations

import numpy as np

from streamer.config import parse_config
from streamer.picture.regions import LINE_COLOR, ZONE_COLOR, RegionOverlay

AUDIENCE = {"zones": {"shelf": {"polygon": [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]}},
            "lines": {"door": {"points": [[0.0, 0.9], [1.0, 0.9]], "direction": "down"}}}


def _is(canvas: np.ndarray, colour) -> np.ndarray:
    return np.all(np.abs(canvas.astype(int) - np.array(colour)) <= 40, axis=2)


def test_zones_and_lines_are_drawn_thin_where_the_config_says():
    overlay = RegionOverlay(parse_config({"audience": AUDIENCE}).audience)
    canvas = np.full((360, 640, 3), 60, np.uint8)
    out = overlay.draw(canvas, {"shelf": 2})
    assert out is canvas
    zone = _is(canvas, ZONE_COLOR)
    # The square's edges at x = 0.25 and 0.75 of 639 px, y = 0.25 and 0.75 of 359 px; 1 px wide (2 with antialiasing).
    assert zone[180, 158:162].any() and zone[180, 477:482].any() and not zone[180, 165:470].any()
    assert zone[88:92, 320].any() and zone[267:271, 320].any()
    assert zone[150:210, 160].sum() >= 55  # an unbroken edge
    line = _is(canvas, LINE_COLOR)
    assert line[321:325, 20].any() and line[321:325, 600].any()
    assert line[330:350, 320].any()  # the "in" arrow points down from the line's middle
    label = np.abs(canvas[92:110, 162:240].astype(int) - 60).sum(axis=2) > 60  # text, outlined dark
    assert label.sum() > 40  # the zone's name and people count, inside its top-left corner


def test_the_layout_follows_the_frame_size():
    overlay = RegionOverlay(parse_config({"audience": AUDIENCE}).audience)
    small = overlay.draw(np.zeros((144, 176, 3), np.uint8), {})
    big = overlay.draw(np.zeros((720, 1280, 3), np.uint8), {})
    assert _is(small, ZONE_COLOR)[72, 42:46].any() and _is(big, ZONE_COLOR)[360, 318:322].any()
