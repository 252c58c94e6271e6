"""The audience measure of a tracked run: per person, their zone visits, line crossings and looks
at the camera, as ``zone_enter`` / ``zone_exit`` / ``line_cross`` records and ``end``-record fields.

The worker hands it the people shown on each frame (:class:`Sightings`); it answers with records
(events schema in README, "Zones, lines and attention") and, for the frame's faces, the zones
each person is in and whether they look at the camera. Pure numpy and Python, no thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..config import AudienceConfig
from .attention import Glances, looking
from .geometry import Lines, Polygons, anchor_points
from .lines import LineCrossing, LineSides
from .zones import ZoneChange, ZoneVisits

Labels = Tuple[Optional[str], Optional[str]]  # (gender, age_group) as shown, None: not shown
_DIRECTIONS = {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}


@dataclass(frozen=True)
class Sightings:
    """The people shown on one frame. ``track``: ``(N,)`` int64 ids; ``xyxy``: ``(N, 4)`` float32
    frame pixels; ``landmarks_xy``: ``(N, 5, 2)`` float32 frame pixels in YuNet's order for faces
    the detector found on this frame, NaN rows for boxes the tracker carried, None when the
    detector gives no landmarks; ``labels``: each person's shown ``(gender, age_group)``."""

    track: np.ndarray
    xyxy: np.ndarray
    landmarks_xy: Optional[np.ndarray] = None
    labels: Tuple[Labels, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.track)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"Sightings.xyxy must be (N, 4) with N={n}, got {self.xyxy.shape}")
        if self.landmarks_xy is not None and self.landmarks_xy.shape != (n, 5, 2):
            raise ValueError(f"Sightings.landmarks_xy must be (N, 5, 2) with N={n}, got {self.landmarks_xy.shape}")
        if self.labels and len(self.labels) != n:
            raise ValueError(f"Sightings.labels must have N={n} entries, got {len(self.labels)}")

    @classmethod
    def empty(cls) -> "Sightings":
        return cls(np.zeros((0,), np.int64), np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), ())

    def __len__(self) -> int:
        return int(self.track.shape[0])


class _Person:
    __slots__ = ("visits", "sides", "glances", "last_t", "labels")

    def __init__(self, visits: ZoneVisits, sides: LineSides, glances: Optional[Glances]) -> None:
        self.visits, self.sides, self.glances = visits, sides, glances
        self.last_t: Optional[float] = None
        self.labels: Labels = (None, None)


class Audience:
    """Zones, lines and attention for one source (``AudienceConfig``). Per frame,
    :meth:`update` with the people shown; :meth:`end` when a person's track ends (before its
    ``end`` record); :meth:`state` for what a face shows."""

    def __init__(self, cfg: AudienceConfig) -> None:
        self.cfg = cfg
        self.zone_names = list(cfg.zones)
        self.line_names = list(cfg.lines)
        self._zones = [cfg.zones[name] for name in self.zone_names]
        self._polygons = Polygons([zone.polygon for zone in self._zones])
        lines = [cfg.lines[name] for name in self.line_names]
        self._lines = Lines([line.points for line in lines], [_DIRECTIONS[line.direction] for line in lines])
        self._bands = np.array([line.band for line in lines], np.float64)
        self._people: Dict[int, _Person] = {}
        self._prev_t: Optional[float] = None

    def _person(self, track: int) -> _Person:
        person = self._people.get(track)
        if person is None:
            glances = Glances(self.cfg.min_glance_s, self.cfg.glance_gap_s) if self.cfg.attention else None
            person = self._people[track] = _Person(ZoneVisits(self.zone_names, self._zones),
                                                   LineSides(self.line_names), glances)
        return person

    def update(self, t_s: float, shape_hw: Tuple[int, int], seen: Sightings) -> List[dict]:
        """The people shown on the frame at ``t_s`` (``shape_hw``: its size); the records it caused."""
        records: List[dict] = []
        # Rows as lists: the per-person loop below reads plain Python values (cheaper than numpy
        # scalars for the handful of zones and lines a person is tested against).
        inside: List[List[bool]] = [[]] * len(seen)
        sides: List[List[int]] = [[]] * len(seen)
        if self._polygons.count or self._lines.count:
            anchors = anchor_points(seen.xyxy, self.cfg.anchor)
            if self._polygons.count:
                inside = self._polygons.inside(anchors, shape_hw).tolist()
            if self._lines.count:
                sides = self._lines.sides(anchors, shape_hw, self._bands).tolist()
        frontal: List[Optional[bool]] = [None] * len(seen)
        if self.cfg.attention and seen.landmarks_xy is not None and len(seen):
            measured = ~np.isnan(seen.landmarks_xy).any(axis=(1, 2))
            if measured.any():
                verdict = looking(seen.landmarks_xy[measured], self.cfg.max_yaw_deg, self.cfg.max_pitch_deg)
                for index, answer in zip(np.flatnonzero(measured).tolist(), verdict.tolist()):
                    frontal[index] = bool(answer)
        shown = set()
        for i, track in enumerate(seen.track.tolist()):
            shown.add(track)
            person = self._person(track)
            if seen.labels:
                person.labels = seen.labels[i]
            # The time since the previous frame passed in the state and zones of that frame (none
            # after frames where the person was not shown).
            dt_s = t_s - person.last_t if person.last_t is not None and person.last_t == self._prev_t else 0.0
            if person.glances is not None:
                person.glances.update(t_s, dt_s, frontal[i], person.visits.present())
            person.last_t = t_s
            for change in person.visits.seen(t_s, [j for j, flag in enumerate(inside[i]) if flag]):
                records.append(self._zone_record(track, person, change))
            for crossing in person.sides.seen(t_s, sides[i]):
                records.append(self._cross_record(track, person, crossing))
        for track, person in self._people.items():
            if track not in shown:
                person.visits.unseen(t_s)
        self._prev_t = t_s
        return records

    def end(self, track: int, t_s: float) -> Tuple[List[dict], dict]:
        """The person's track ended (at the frame of ``t_s``): the ``zone_exit`` records of the
        visits it closes, and the fields its ``end`` record gains (``attention_s``, ``glances``)."""
        person = self._people.pop(track, None)
        if person is None:
            return [], self._person_fields(None)
        records = [self._zone_record(track, person, change) for change in person.visits.end(t_s)]
        return records, self._person_fields(person)

    def state(self, track: int) -> Tuple[Tuple[str, ...], Optional[bool]]:
        """``(zones the person is in, looking at the camera)`` for their face on this frame."""
        person = self._people.get(track)
        if person is None:
            return (), None
        return tuple(person.visits.present()), None if person.glances is None else person.glances.looking

    def occupancy(self) -> Dict[str, int]:
        """People in each zone now (past its inertia), for the overlay."""
        counts = dict.fromkeys(self.zone_names, 0)
        for person in self._people.values():
            for zone in person.visits.present():
                counts[zone] += 1
        return counts

    def _person_fields(self, person: Optional[_Person]) -> dict:
        if not self.cfg.attention:
            return {}
        glances = None if person is None else person.glances
        return {"attention_s": round(glances.attention_s, 3) if glances else 0.0,
                "glances": glances.count if glances else 0}

    def _zone_record(self, track: int, person: _Person, change: ZoneChange) -> dict:
        record: dict = {"event": f"zone_{change.kind}", "track": track, "zone": change.zone,
                        "enter_t_s": round(change.enter_t_s, 4)}
        if change.kind == "exit":
            assert change.exit_t_s is not None and change.dwell_s is not None
            record.update(exit_t_s=round(change.exit_t_s, 4), dwell_s=round(change.dwell_s, 3))
            if person.glances is not None:
                attention = person.glances.take(change.zone)
                record.update(attention_s=round(attention, 3), watched=attention > 0)
        gender, group = person.labels
        record.update(gender=gender, age_group=group)
        return record

    def _cross_record(self, track: int, person: _Person, crossing: LineCrossing) -> dict:
        gender, group = person.labels
        return {"event": "line_cross", "track": track, "line": crossing.line, "direction": crossing.direction,
                "gender": gender, "age_group": group}


def sightings_of(tracks: Sequence, with_landmarks: bool = True) -> Sightings:
    """:class:`Sightings` of tracker tracks (``tracking.Track``: ``id``, ``xyxy``, ``detection``,
    ``labels``), for the worker."""
    if not tracks:
        return Sightings.empty()
    ids = np.array([track.id for track in tracks], np.int64)
    xyxy = np.array([track.xyxy for track in tracks], np.float32).reshape(-1, 4)
    marks = None
    if with_landmarks:
        marks = np.full((len(tracks), 5, 2), np.nan, np.float32)
        for i, track in enumerate(tracks):
            detection = track.detection
            if detection is not None and detection.landmarks_xy is not None:
                marks[i] = detection.landmarks_xy[0]
    labels = tuple((track.labels.gender, track.labels.age_group) if track.labels.label_ready else (None, None)
                   for track in tracks)
    return Sightings(ids, xyxy, marks, labels)
