"""Live audience counts for MQTT and ``/metrics``, from the run's records as they come: who is in
each zone now (by the labels shown), and running totals of visits, dwell, watchers and line
crossings. The end-of-run tables are ``tally.py``'s (labels as each person finally was); these
use the labels known at the moment, as a live display must.

Written on the run's thread (:meth:`AudienceCounts.observe`), read from any thread (the web
server's): every read takes the lock and returns a copy.
"""

from __future__ import annotations

import threading
from typing import Dict, Iterable, Optional, Sequence, Tuple

from ..report.tally import LabelCounts
from ..types import GENDERS, UNKNOWN

Labels = Tuple[Optional[str], Optional[str]]


class AudienceCounts:
    """People in each zone now and totals since the run started. ``zones``, ``lines``: the
    config's names (every one has its counts from the start, at 0); ``groups``: the age group labels."""

    def __init__(self, zones: Sequence[str], lines: Sequence[str], groups: Sequence[str]) -> None:
        self.zones, self.lines, self.groups = list(zones), list(lines), list(groups)
        self._lock = threading.Lock()
        self._inside: Dict[str, Dict[int, Labels]] = {zone: {} for zone in self.zones}
        # (zone, age group, gender) -> [visits, dwell seconds, watchers, attention seconds]
        self._visits: Dict[Tuple[str, str, str], list] = {}
        self._crossings: Dict[Tuple[str, str, str, str], int] = {}  # (line, direction, age group, gender)
        self.version = 0  # goes up whenever a count may have changed

    def observe(self, records: Iterable[dict]) -> None:
        """The run's records (events schema) in order."""
        with self._lock:
            for record in records:
                self._observe(record)

    def _observe(self, record: dict) -> None:
        kind, track = record.get("event"), record.get("track")
        if track is None:
            return
        labels = (record.get("gender"), record.get("age_group"))
        if kind == "zone_enter":
            self._inside.setdefault(record["zone"], {})[track] = labels
        elif kind == "zone_exit":
            known = self._inside.setdefault(record["zone"], {}).pop(track, labels)
            key = (record["zone"], *_cell(labels if any(labels) else known))
            totals = self._visits.setdefault(key, [0, 0.0, 0, 0.0])
            totals[0] += 1
            totals[1] += float(record.get("dwell_s") or 0.0)
            totals[2] += bool(record.get("watched"))
            totals[3] += float(record.get("attention_s") or 0.0)
        elif kind == "line_cross":
            key4 = (record["line"], record["direction"], *_cell(labels))
            self._crossings[key4] = self._crossings.get(key4, 0) + 1
        elif kind == "end":
            for inside in self._inside.values():
                inside.pop(track, None)
        elif any(labels):  # update, new: the person's shown labels, wherever they are
            for inside in self._inside.values():
                if track in inside:
                    old = inside[track]
                    inside[track] = (labels[0] or old[0], labels[1] or old[1])
        else:
            return
        self.version += 1

    def zone_people(self, zone: str) -> LabelCounts:
        """The people in ``zone`` now, split by the labels shown (every breakdown adds up)."""
        with self._lock:
            labels = list(self._inside.get(zone, {}).values())
        return LabelCounts.of(labels, self.groups, extend=False)

    def crossings_total(self, line: str, direction: str) -> int:
        with self._lock:
            return sum(n for (name, way, _, _), n in self._crossings.items() if name == line and way == direction)

    def snapshot(self) -> dict:
        """For ``/metrics``: ``zones`` {zone: people now}, ``visits`` rows (zone, age group, gender,
        visits, dwell_s, watchers, attention_s), ``crossings`` rows (line, direction, age group,
        gender, count); every configured zone and line direction present, at 0 before anyone."""
        with self._lock:
            zones = {zone: len(self._inside.get(zone, {})) for zone in {*self.zones, *self._inside}}
            visits = [(*key, *values) for key, values in sorted(self._visits.items())]
            crossings = dict(self._crossings)
        for line in self.lines:
            for direction in ("in", "out"):
                if not any(k[0] == line and k[1] == direction for k in crossings):
                    crossings[(line, direction, UNKNOWN, UNKNOWN)] = 0
        return {"zones": dict(sorted(zones.items())), "visits": visits,
                "crossings": [(*key, n) for key, n in sorted(crossings.items())]}


def _cell(labels: Labels) -> Tuple[str, str]:
    gender, group = labels
    return (group or UNKNOWN, gender if gender in GENDERS else UNKNOWN)
