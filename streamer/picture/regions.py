"""The audience overlay: zones and counting lines drawn thin over the picture, each named, zones
with the people in them now, lines with an arrow that points "in" (``audience.draw``).

Zones and lines do not move: they are drawn once per frame size into a sparse layer (the pixels
they cover and their colours) that each frame gets pasted in one indexing operation, and each
zone's count is a small sprite kept per value shown. Drawing 10 zones and 10 lines with OpenCV on
every frame took ~0.8 ms at 640x360; pasting them takes a tenth of that (bench/audience.py).
"""

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
# Count sprites kept per zone (a zone rarely holds more than a few values in a row).
_MAX_SPRITES = 64

Sprite = Tuple[np.ndarray, np.ndarray]  # flat pixel indices (K,) into an (H*W, 3) view, their BGR (K, 3)


def _sparse(layer: np.ndarray, offset_yx: Tuple[int, int] = (0, 0), width: int = 0) -> Sprite:
    """The drawn pixels of ``layer`` ((h, w, 3) uint8, black where nothing was drawn) as flat
    indices into a frame ``width`` pixels wide (the layer's own width when 0), placed at ``offset_yx``."""
    ys, xs = np.nonzero(layer.any(axis=2))
    colours = layer[ys, xs]
    stride = width or layer.shape[1]
    return ((ys + offset_yx[0]) * stride + xs + offset_yx[1]).astype(np.intp), colours


def _outlined(canvas: np.ndarray, text: str, origin: Tuple[int, int], colour, scale: float) -> None:
    """Text with a dark outline, readable on a bright or a busy background. Not antialiased: the
    layer is pasted, not blended, and an antialiased edge drawn on black would paste as a dark smear."""
    cv2.putText(canvas, text, origin, FONT, scale, (1, 1, 1), 3, cv2.LINE_8)  # 1, not 0: 0 is "not drawn"
    cv2.putText(canvas, text, origin, FONT, scale, colour, 1, cv2.LINE_8)


class RegionOverlay:
    """Draws the config's zones and lines; the layout is worked out once per frame size."""

    def __init__(self, cfg: AudienceConfig) -> None:
        self._zones = [(name, zone.polygon) for name, zone in cfg.zones.items()]
        self._lines = [(name, line.points, line.direction) for name, line in cfg.lines.items()]
        self._shape_hw: Optional[Tuple[int, int]] = None
        self._static: Sprite = (np.zeros(0, np.intp), np.zeros((0, 3), np.uint8))
        self._count_at: List[Tuple[int, int]] = []  # per zone: where its count's text starts (x, baseline y)
        self._sprites: Dict[Tuple[int, int], Sprite] = {}
        self._scale = 0.3

    def _layout(self, shape_hw: Tuple[int, int]) -> None:
        if shape_hw == self._shape_hw:
            return
        h, w = shape_hw
        self._scale = _text_scale(shape_hw)[0]
        layer = np.zeros((h, w, 3), np.uint8)
        size = np.array([w - 1, h - 1], np.float64)
        self._count_at = []
        for name, polygon in self._zones:
            corners = np.round(np.array(polygon) * size).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(layer, [corners], True, ZONE_COLOR, 1, cv2.LINE_8)
            text = f"{name} "
            origin = self._place(text + "00", (int(corners[:, 0, 0].min()) + 3, int(corners[:, 0, 1].min()) + 3), shape_hw)
            _outlined(layer, text, origin, ZONE_COLOR, self._scale)
            self._count_at.append((origin[0] + cv2.getTextSize(text, FONT, self._scale, 1)[0][0], origin[1]))
        for name, (a, b), direction in self._lines:
            start = tuple(int(v) for v in np.round(np.array(a) * size))
            end = tuple(int(v) for v in np.round(np.array(b) * size))
            middle = (np.array(start) + np.array(end)) / 2.0
            tip = middle + np.array(_DIRECTIONS[direction]) * _ARROW * min(h, w)
            cv2.line(layer, start, end, LINE_COLOR, 1, cv2.LINE_8)
            cv2.arrowedLine(layer, (int(middle[0]), int(middle[1])), (int(tip[0]), int(tip[1])), LINE_COLOR, 1,
                            cv2.LINE_8, tipLength=0.3)
            text = f"{name} in"
            _outlined(layer, text, self._place(text, (int(tip[0]) + 3, int(tip[1]) - 3), shape_hw), LINE_COLOR,
                      self._scale)
        self._static = _sparse(layer)
        self._sprites = {}
        self._shape_hw = shape_hw

    def _place(self, text: str, top_left: Tuple[int, int], shape_hw: Tuple[int, int]) -> Tuple[int, int]:
        """The text's origin (bottom-left) near ``top_left``, inside the frame."""
        (w, h), base = cv2.getTextSize(text, FONT, self._scale, 1)
        x = min(max(1, top_left[0]), max(1, shape_hw[1] - w - 2))
        y = min(max(h + 2, top_left[1] + h), shape_hw[0] - base - 2)
        return x, y

    def _count(self, zone: int, people: int) -> Sprite:
        key = (zone, people)
        sprite = self._sprites.get(key)
        if sprite is None:
            assert self._shape_hw is not None
            text = str(people)
            (w, h), base = cv2.getTextSize(text, FONT, self._scale, 3)
            x, y = self._count_at[zone]
            top, left = max(0, y - h - 2), max(0, x - 2)
            patch = np.zeros((min(h + base + 4, self._shape_hw[0] - top), min(w + 4, self._shape_hw[1] - left), 3),
                             np.uint8)
            _outlined(patch, text, (x - left, y - top), ZONE_COLOR, self._scale)
            sprite = _sparse(patch, (top, left), self._shape_hw[1])
            if len(self._sprites) >= _MAX_SPRITES * max(1, len(self._zones)):
                self._sprites.clear()
            self._sprites[key] = sprite
        return sprite

    def draw(self, canvas: np.ndarray, people: Dict[str, int]) -> np.ndarray:
        """Zones and lines on ``canvas`` ((H, W, 3) uint8 BGR, a C-contiguous copy of the frame), in
        place, and returned; ``people``: zone name -> people in it now."""
        if not canvas.flags.c_contiguous:
            raise ValueError("RegionOverlay.draw: canvas must be C-contiguous (a copy of the frame), got a strided view")
        self._layout((canvas.shape[0], canvas.shape[1]))
        flat = canvas.reshape(-1, 3)
        index, colours = self._static
        flat[index] = colours
        for zone, (name, _) in enumerate(self._zones):
            index, colours = self._count(zone, people.get(name, 0))
            flat[index] = colours
        return canvas
