"""Zone visits: when a person is in a zone, with inertia against jitter on its edge, and how long
they stayed.

A person is inside a zone once their anchor has been inside for ``inertia_frames`` frames in a
row, and has left once it has been outside for as many; the visit runs from the first of those
inside frames to the first of those outside frames, so the dwell time is exact to a frame however
long the inertia. Frames where the person is not seen (hidden behind someone, the tracker unsure)
neither extend nor break a run. A visit counts once it has lasted ``min_dwell_s``; one that ends
sooner is not counted at all (someone cutting the corner of the zone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from ..config import ZoneConfig


@dataclass(frozen=True)
class ZoneChange:
    """A visit that started counting (``kind="enter"``) or ended (``"exit"``): ``zone`` name,
    ``enter_t_s`` (its first frame inside), ``exit_t_s`` (its first frame outside, or the first
    frame the person was no longer seen) and ``dwell_s`` for an exit."""

    kind: str
    zone: str
    enter_t_s: float
    exit_t_s: Optional[float] = None

    @property
    def dwell_s(self) -> Optional[float]:
        return None if self.exit_t_s is None else self.exit_t_s - self.enter_t_s


class _Visit:
    """One person against one zone: the runs of frames inside and outside, and the visit."""

    __slots__ = ("inside_run", "run_start_t", "outside_run", "out_start_t", "present", "enter_t", "counted",
                 "unseen_t")

    def __init__(self) -> None:
        self.inside_run = 0
        self.run_start_t = 0.0
        self.outside_run = 0
        self.out_start_t = 0.0
        self.present = False  # inside, past the inertia
        self.enter_t = 0.0
        self.counted = False  # lasted min_dwell_s: its enter was said
        self.unseen_t: Optional[float] = None  # first frame not seen since the last frame inside

    @property
    def idle(self) -> bool:
        return not self.present and self.inside_run == 0


class ZoneVisits:
    """One person's visits to every zone (``zones``: the config's, in order). :meth:`seen` takes
    the zones their anchor is in on a frame, :meth:`unseen` a frame they were not seen on,
    :meth:`end` the end of their track; each returns the :class:`ZoneChange` s it caused."""

    def __init__(self, names: List[str], zones: List[ZoneConfig]) -> None:
        self._names, self._zones = names, zones
        self._visits: Dict[int, _Visit] = {}  # zone index -> state, only for zones with something going on

    def present(self) -> List[str]:
        """The zones the person is in now (past the inertia), in config order."""
        if not self._visits:
            return []
        return [self._names[i] for i in sorted(self._visits) if self._visits[i].present]

    def seen(self, t_s: float, inside: List[int]) -> List[ZoneChange]:
        """A frame at ``t_s`` where the person's anchor is in the zones of index ``inside``."""
        if not inside and not self._visits:
            return []  # the common case: nowhere near a zone
        changes: List[ZoneChange] = []
        inside_set = set(inside)
        for index in inside_set | self._visits.keys():
            visit = self._visits.get(index)
            if visit is None:
                visit = self._visits[index] = _Visit()
            zone = self._zones[index]
            visit.unseen_t = None
            if index in inside_set:
                visit.outside_run = 0
                if visit.inside_run == 0:
                    visit.run_start_t = t_s
                visit.inside_run += 1
                if not visit.present and visit.inside_run >= zone.inertia_frames:
                    visit.present, visit.enter_t, visit.counted = True, visit.run_start_t, False
                if visit.present and not visit.counted and t_s - visit.enter_t >= zone.min_dwell_s:
                    visit.counted = True
                    changes.append(ZoneChange("enter", self._names[index], visit.enter_t))
            else:
                visit.inside_run = 0
                if visit.present:
                    if visit.outside_run == 0:
                        visit.out_start_t = t_s
                    visit.outside_run += 1
                    if visit.outside_run >= zone.inertia_frames:
                        changes += self._close(index, visit.out_start_t)
            if self._visits.get(index) is visit and visit.idle:
                del self._visits[index]
        return changes

    def unseen(self, t_s: float) -> None:
        """A frame at ``t_s`` where the person was not seen: if the track ends before they are seen
        again, their visits ended here."""
        for visit in self._visits.values():
            if visit.unseen_t is None and visit.outside_run == 0:
                visit.unseen_t = t_s

    def end(self, t_s: float) -> List[ZoneChange]:
        """The track ended (last frame processed at ``t_s``): every open visit ends where the
        person was last seen inside (the first frame after), or at ``t_s`` if seen to the end."""
        changes: List[ZoneChange] = []
        for index in sorted(self._visits):
            visit = self._visits[index]
            if visit.present:
                exit_t = visit.out_start_t if visit.outside_run else (visit.unseen_t if visit.unseen_t is not None
                                                                      else t_s)
                changes += self._close(index, exit_t)
        self._visits.clear()
        return changes

    def _close(self, index: int, exit_t: float) -> List[ZoneChange]:
        visit = self._visits.pop(index)
        name, zone = self._names[index], self._zones[index]
        changes = []
        if not visit.counted and exit_t - visit.enter_t >= zone.min_dwell_s:
            visit.counted = True  # it lasted long enough after all, between two frames
            changes.append(ZoneChange("enter", name, visit.enter_t))
        if visit.counted:
            changes.append(ZoneChange("exit", name, visit.enter_t, exit_t))
        return changes
