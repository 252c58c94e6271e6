"""Frames that carry their own number: bars in binary, readable after JPEG or MJPEG coding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BITS = 10  # frame indices up to 1023 are drawn as 10 black/white bars
BAR_PX = 8
SIZE_WH = (BITS * BAR_PX, 48)


def stamp(index: int) -> np.ndarray:
    """A BGR frame whose bars spell ``index`` in binary (bit 0 leftmost); survives JPEG."""
    image = np.zeros((SIZE_WH[1], SIZE_WH[0], 3), np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            image[:, bit * BAR_PX : (bit + 1) * BAR_PX] = 255
    return image


def unstamp(image: np.ndarray) -> int:
    bars = image[:, : BITS * BAR_PX].reshape(image.shape[0], BITS, BAR_PX, 3).mean(axis=(0, 2, 3))
    return int(sum(1 << bit for bit in range(BITS) if bars[bit] > 128))


def write_video(path: Path, count: int, fourcc: str = "MJPG", fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE_WH)
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {fourcc} to {path}"
    for index in range(count):
        writer.write(stamp(index))
    writer.release()
    return path
