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
        self._side = [0] * len(names)  # last side beyond the band: +1, -1, 0 unknown

    def seen(self, t_s: float, sides: List[int]) -> List[LineCrossing]:
        """``sides``: this frame's side of each line (a row of ``Lines.sides``, as a list)."""
        crossings = []
        for i, side in enumerate(sides):
            if side == 2:
                self._side[i] = 0
            elif side:
                if self._side[i] and side != self._side[i]:
                    crossings.append(LineCrossing(self._names[i], "in" if side == 1 else "out", t_s))
                self._side[i] = side
        return crossings
