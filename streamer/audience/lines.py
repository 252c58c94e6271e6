"""Line crossings: a person counts "in" or "out" when their anchor goes from beyond a line's dead
band on one side to beyond it on the other.

The band (``band``, a share of the frame's shorter side) is the hysteresis: an anchor that
jitters on the line, or steps onto it and back, never gets beyond the band on the far side and
counts nothing; one that really crosses counts once, however many frames it spends in the band.
An anchor beyond the line's ends forgets its side (a person walking round the end of a line has
not crossed it), and so do frames where the person is not seen for long: a side is remembered
across missed frames, not across a new track.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np


@dataclass(frozen=True)
class LineCrossing:
    """A crossing of line ``line`` at ``t_s`` (the first frame beyond the band on the far side),
    ``direction`` "in" or "out"."""

    line: str
    direction: str
    t_s: float


class LineSides:
    """One person's side of every line (``names``, the config's order): :meth:`seen` takes the
    frame's sides (``geometry.Lines.sides`` row: +1 in, -1 out, 0 in the band, 2 beyond the ends)
    and returns the crossings."""

    def __init__(self, names: List[str]) -> None:
        self._names = names
        self._side = np.zeros(len(names), np.int8)  # last side beyond the band: +1, -1, 0 unknown

    def seen(self, t_s: float, sides: np.ndarray) -> List[LineCrossing]:
        definite = (sides == 1) | (sides == -1)
        crossed = definite & (self._side != 0) & (sides != self._side)
        self._side[definite] = sides[definite]
        self._side[sides == 2] = 0
        if not crossed.any():
            return []
        return [LineCrossing(self._names[i], "in" if sides[i] == 1 else "out", t_s) for i in np.flatnonzero(crossed)]
