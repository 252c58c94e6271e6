"""Counting people by the labels shown: one counter for the run summary, the people report and
MQTT's people-in-view, so the three always split people the same way."""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

from ..config import ReportConfig
from ..types import GENDERS, UNKNOWN, age_group_labels

__all__ = ["UNKNOWN", "LabelCounts", "PeopleTally"]


class LabelCounts:
    """People by age group and gender (a cross table), ``unknown`` for a label not shown; every
    breakdown adds up to ``people``. ``groups`` are the config's age group labels; a label of
    another config's groups (an old events file) gets a row of its own when ``extend``, else counts
    as ``unknown``."""

    def __init__(self, groups: Sequence[str], genders: Sequence[str] = GENDERS, extend: bool = True) -> None:
        self.genders = (*genders, UNKNOWN)
        self.groups = list(groups)
        self._extend = extend
        self.cells: Dict[str, Dict[str, int]] = {group: dict.fromkeys(self.genders, 0) for group in [*groups, UNKNOWN]}
        self.people = 0

    def add(self, gender: Optional[str], group: Optional[str]) -> None:
        """One person with the labels shown for them (None: not shown)."""
        gender = gender if gender in self.genders else UNKNOWN
        if group and group not in self.cells:
            if self._extend:
                self.groups.append(group)
                self.cells = {g: self.cells.get(g) or dict.fromkeys(self.genders, 0) for g in [*self.groups, UNKNOWN]}
            else:
                group = UNKNOWN
        self.cells[group or UNKNOWN][gender] += 1
        self.people += 1

    def by_gender(self) -> Dict[str, int]:
        return {gender: sum(cell[gender] for cell in self.cells.values()) for gender in self.genders}

    def by_age_group(self) -> Dict[str, int]:
        return {group: sum(cell.values()) for group, cell in self.cells.items()}

    @classmethod
    def of(cls, labels: Iterable[Tuple[Optional[str], Optional[str]]], groups: Sequence[str],
           genders: Sequence[str] = GENDERS, extend: bool = True) -> "LabelCounts":
        """The counts of ``(gender, age_group)`` pairs, one per person."""
        counts = cls(groups, genders, extend)
        for gender, group in labels:
            counts.add(gender, group)
        return counts


class PeopleTally:
    """The ``people`` entry of a run's summary, counted as each person's track ends: the numbers a
    report of the run's end records gives (people seen at least ``cfg.min_seen_s``, by gender and
    age group, and how many were left out), in constant memory: a camera that runs for months sees
    people without end, and keeps only these counters."""

    def __init__(self, cfg: ReportConfig, age_groups: Sequence[Tuple[int, int]]) -> None:
        self.cfg = cfg
        self.left_out = 0
        self._labels = LabelCounts(age_group_labels(age_groups))

    @property
    def people(self) -> int:
        return self._labels.people

    def add(self, record: dict) -> None:
        """One track's record (``Track.to_record()``: ``seen_s``, ``gender``, ``age_group``)."""
        if record["seen_s"] < self.cfg.min_seen_s:
            self.left_out += 1
            return
        self._labels.add(record.get("gender"), record.get("age_group"))

    def counts(self) -> dict:
        return {"people": self.people, "left_out": self.left_out, "by_gender": self._labels.by_gender(),
                "by_age_group": self._labels.by_age_group()}
