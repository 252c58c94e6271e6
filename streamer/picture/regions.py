"""The audience overlay: zones and counting lines drawn thin over the picture, each named, zones
with the people in them now, lines with an arrow that points "in" (``audience.draw``)."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..config import AudienceConfig
from .draw import FONT, _text_scale

# Zones in yellow, lines in magenta (BGR): apart from the orange / blue / grey of the face boxes.
ZONE_COLOR = (0, 215, 255)
LINE_COLOR = (200, 80, 255)
_DIRECTIONS = {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}
# The "in" arrow's length, as a share of the frame's shorter side.
_ARROW = 0.06


class RegionOverlay:
    """Draws the config's zones and lines; pixel positions are worked out once per frame size."""

    def __init__(self, cfg: AudienceConfig) -> None:
        self._zones = [(name, zone.polygon) for name, zone in cfg.zones.items()]
        self._lines = [(name, line.points, line.direction) for name, line in cfg.lines.items()]
        self._shape_hw: Optional[Tuple[int, int]] = None
        self._zone_px: List[Tuple[str, np.ndarray]] = []
        self._line_px: List[Tuple[str, Tuple[int, int], Tuple[int, int], Tuple[int, int], Tuple[int, int]]] = []

    def _layout(self, shape_hw: Tuple[int, int]) -> None:
        if shape_hw == self._shape_hw:
            return
        h, w = shape_hw
        scale = np.array([w - 1, h - 1], np.float64)
        self._zone_px = [(name, np.round(np.array(polygon) * scale).astype(np.int32).reshape(-1, 1, 2))
                         for name, polygon in self._zones]
        self._line_px = []
        for name, (a, b), direction in self._lines:
            start = tuple(int(v) for v in np.round(np.array(a) * scale))
            end = tuple(int(v) for v in np.round(np.array(b) * scale))
            middle = (np.array(start) + np.array(end)) / 2.0
            tip = middle + np.array(_DIRECTIONS[direction]) * _ARROW * min(h, w)
            self._line_px.append((name, start, end, (int(middle[0]), int(middle[1])),  # type: ignore[arg-type]
                                  (int(tip[0]), int(tip[1]))))
        self._shape_hw = shape_hw

    def draw(self, canvas: np.ndarray, people: Dict[str, int]) -> np.ndarray:
        """Zones and lines on ``canvas`` ((H, W, 3) uint8 BGR, a copy of the frame), in place, and
        returned; ``people``: zone name -> people in it now."""
        self._layout((canvas.shape[0], canvas.shape[1]))
        scale, _ = _text_scale(canvas.shape[:2])
        scale *= 0.7
        for name, polygon in self._zone_px:
            cv2.polylines(canvas, [polygon], True, ZONE_COLOR, 1, cv2.LINE_AA)
            x, y = polygon[:, 0, 0].min(), polygon[:, 0, 1].min()
            self._label(canvas, f"{name} {people.get(name, 0)}", (int(x) + 3, int(y) + 3), ZONE_COLOR, scale)
        for name, start, end, middle, tip in self._line_px:
            cv2.line(canvas, start, end, LINE_COLOR, 1, cv2.LINE_AA)
            cv2.arrowedLine(canvas, middle, tip, LINE_COLOR, 1, cv2.LINE_AA, tipLength=0.3)
            self._label(canvas, f"{name} in", (tip[0] + 3, tip[1] - 3), LINE_COLOR, scale)
        return canvas

    @staticmethod
    def _label(canvas: np.ndarray, text: str, top_left: Tuple[int, int], color: Tuple[int, int, int],
               scale: float) -> None:
        (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
        x = min(max(0, top_left[0]), max(0, canvas.shape[1] - w - 2))
        y = min(max(h + 2, top_left[1] + h), canvas.shape[0] - base - 1)
        # A dark outline under the text keeps it readable on a bright or a busy background.
        cv2.putText(canvas, text, (x, y), FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, text, (x, y), FONT, scale, color, 1, cv2.LINE_AA)
