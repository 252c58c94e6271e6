"""The audience counts of a run, split by age group and gender: per zone (people, visits, dwell
p50/p90, watchers vs passers-by), per line (people in and out) and attention (glances, time).

Fed the records of a run in order (``zone_exit``, ``line_cross``, ``end``; the rest are ignored),
so the run summary (fed as the run goes) and the people report (fed from the events file) give
the same numbers. A person's visits wait for their ``end`` record and are counted under the labels
it states (the person's final ones); people whose track has not ended are counted under the labels
their latest record showed. Memory is bounded: per person only until their track ends, dwell and
attention times in a fixed-size sample per table cell (exact up to ``_RESERVOIR`` values).
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..types import GENDERS, UNKNOWN

# Values kept per table cell for its percentiles: exact below this many, a uniform random sample
# (Vitter's reservoir) above, whose p50/p90 are within about 1 % of rank of the truth.
_RESERVOIR = 4096
# Zone entries over time: 5-minute bins (a shop's rush hours), hours past a week of them, days
# past 12 weeks of hours: a chart never has more than _MAX_BINS bars.
_ENTRY_BINS_S = (300.0, 3600.0, 86400.0)
_MAX_BINS = 2016


class Quantiles:
    """Durations in seconds: count, total and percentiles from a bounded sample."""

    def __init__(self, seed: int = 0) -> None:
        self.count = 0
        self.total = 0.0
        self.values: List[float] = []
        self._random = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if len(self.values) < _RESERVOIR:
            self.values.append(value)
        else:
            slot = self._random.randrange(self.count)
            if slot < _RESERVOIR:
                self.values[slot] = value

    def quantile(self, q: float) -> Optional[float]:
        """The ``q`` quantile (0-1, linear between the two nearest values), None when empty."""
        if not self.values:
            return None
        ordered = sorted(self.values)
        position = q * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def summary(self) -> dict:
        """``{"p50", "p90", "mean", "total"}`` seconds (None when empty), rounded to 10 ms."""
        def r(value: Optional[float]) -> Optional[float]:
            return None if value is None else round(value, 2)

        return {"p50": r(self.quantile(0.5)), "p90": r(self.quantile(0.9)),
                "mean": r(self.total / self.count) if self.count else None, "total": round(self.total, 2)}


@dataclass
class _ZoneCell:
    people: int = 0
    visits: int = 0
    watchers: int = 0
    dwell: Quantiles = field(default_factory=Quantiles)
    attention: Quantiles = field(default_factory=Quantiles)  # per watcher: glance time during their visits

    def row(self) -> dict:
        return {"people": self.people, "visits": self.visits, "watchers": self.watchers,
                "passers_by": self.people - self.watchers, "attention_share": _share(self.watchers, self.people),
                "dwell_p50_s": self.dwell.summary()["p50"], "dwell_p90_s": self.dwell.summary()["p90"],
                "attention_p50_s": self.attention.summary()["p50"]}


@dataclass
class _LineCell:
    people_in: int = 0
    people_out: int = 0
    crossings_in: int = 0
    crossings_out: int = 0

    def row(self) -> dict:
        return {"in": self.people_in, "out": self.people_out, "crossings_in": self.crossings_in,
                "crossings_out": self.crossings_out}


@dataclass
class _AttentionCell:
    people: int = 0
    watchers: int = 0
    glances: int = 0
    attention: Quantiles = field(default_factory=Quantiles)  # per watcher

    def row(self) -> dict:
        return {"people": self.people, "watchers": self.watchers, "attention_share": _share(self.watchers, self.people),
                "glances": self.glances, "attention_p50_s": self.attention.summary()["p50"],
                "attention_p90_s": self.attention.summary()["p90"]}


@dataclass
class _Person:
    labels: Tuple[Optional[str], Optional[str]] = (None, None)
    visits: List[Tuple[str, float, float, Optional[float]]] = field(default_factory=list)  # zone, enter, dwell, attention
    crossings: List[Tuple[str, str]] = field(default_factory=list)  # line, direction


def _bands(durations: Quantiles, edges: List[float]) -> List[dict]:
    """Visits per band ``[edge_i, edge_i+1)``, the last open-ended; from the sample, scaled to the count."""
    scale = durations.count / len(durations.values) if durations.values else 0.0
    bands = []
    for low, high in zip(edges, [*edges[1:], math.inf]):
        inside = sum(low <= value < high for value in durations.values)
        bands.append({"from_s": low, "to_s": None if high == math.inf else high, "visits": round(inside * scale)})
    return bands


def _share(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 3) if whole else None


class AudienceTally:
    """Per zone, per line and for attention, one table cell per (age group, gender). ``zones`` and
    ``lines`` are the config's names (records of other names, an old events file's, get tables of
    their own); ``groups`` the config's age group labels. A person seen for less than
    ``min_seen_s`` (``report.min_seen_s``: a flicker, a false detection) is left out of every
    table, as the people counts leave them out."""

    def __init__(self, zones: Sequence[str], lines: Sequence[str], groups: Sequence[str],
                 attention: bool = True, min_seen_s: float = 0.0) -> None:
        self.groups = list(groups)
        self.attention_on = attention
        self.min_seen_s = min_seen_s
        self.left_out = 0
        self._zones: Dict[str, Dict[Tuple[str, str], _ZoneCell]] = {name: {} for name in zones}
        self._lines: Dict[str, Dict[Tuple[str, str], _LineCell]] = {name: {} for name in lines}
        self._attention: Dict[Tuple[str, str], _AttentionCell] = {}
        # The same, all labels together (percentiles of a whole cannot be had from its parts' samples).
        self._zone_totals: Dict[str, _ZoneCell] = {name: _ZoneCell() for name in zones}
        self._attention_total = _AttentionCell()
        self._people: Dict[int, _Person] = {}
        self._entry_level = 0
        self._entries: Dict[str, Dict[int, Dict[str, int]]] = {name: {} for name in zones}

    def add(self, record: dict) -> None:
        """One record of the events schema; kinds other than zone_exit, line_cross and end are ignored."""
        kind = record.get("event")
        if kind not in ("zone_exit", "line_cross", "end"):
            return
        track = record["track"]
        if kind == "end":
            person = self._people.pop(track, None) or _Person()
            if float(record.get("seen_s", 0.0)) < self.min_seen_s:
                self.left_out += 1
                return
            person.labels = (record.get("gender"), record.get("age_group"))
            self._commit(person, record)
            return
        person = self._people.setdefault(track, _Person())
        if record.get("gender") or record.get("age_group"):
            person.labels = (record.get("gender"), record.get("age_group"))
        if kind == "zone_exit":
            person.visits.append((str(record["zone"]), float(record["enter_t_s"]), float(record["dwell_s"]),
                                  record.get("attention_s")))
        else:
            person.crossings.append((str(record["line"]), str(record["direction"])))

    def _label(self, labels: Tuple[Optional[str], Optional[str]]) -> Tuple[str, str]:
        gender, group = labels
        gender = gender if gender in GENDERS else UNKNOWN
        if group and group not in self.groups:
            self.groups.append(group)
        return (group or UNKNOWN, gender)

    def _commit(self, person: _Person, end: Optional[dict]) -> None:
        key = self._label(person.labels)
        by_zone: Dict[str, List[Tuple[float, float, Optional[float]]]] = {}
        for zone, enter_t, dwell, attention in person.visits:
            by_zone.setdefault(zone, []).append((enter_t, dwell, attention))
        for zone, visits in by_zone.items():
            looked = sum(attention or 0.0 for _, _, attention in visits)
            for cell in (self._zones.setdefault(zone, {}).setdefault(key, _ZoneCell()),
                         self._zone_totals.setdefault(zone, _ZoneCell())):
                cell.people += 1
                cell.visits += len(visits)
                for _, dwell, _ in visits:
                    cell.dwell.add(dwell)
                if looked > 0:
                    cell.watchers += 1
                    cell.attention.add(looked)
            for enter_t, _, _ in visits:
                self._entry(zone, enter_t, key[0])
        for line in {line for line, _ in person.crossings}:
            line_cell = self._lines.setdefault(line, {}).setdefault(key, _LineCell())
            ins = sum(1 for name, direction in person.crossings if name == line and direction == "in")
            outs = sum(1 for name, direction in person.crossings if name == line and direction == "out")
            line_cell.people_in += ins > 0
            line_cell.people_out += outs > 0
            line_cell.crossings_in += ins
            line_cell.crossings_out += outs
        if end is not None and self.attention_on and "glances" in end:
            for person_cell in (self._attention.setdefault(key, _AttentionCell()), self._attention_total):
                person_cell.people += 1
                person_cell.glances += int(end["glances"])
                if end["glances"]:
                    person_cell.watchers += 1
                    person_cell.attention.add(float(end["attention_s"]))

    def _entry(self, zone: str, enter_t: float, group: str) -> None:
        bins = self._entries.setdefault(zone, {})
        width = _ENTRY_BINS_S[self._entry_level]
        index = int(enter_t // width)
        bins.setdefault(index, {}).setdefault(group, 0)
        bins[index][group] += 1
        spans = [max(b) - min(b) + 1 for b in self._entries.values() if b]
        if max(spans) > _MAX_BINS and self._entry_level + 1 < len(_ENTRY_BINS_S):
            factor = int(_ENTRY_BINS_S[self._entry_level + 1] // width)
            self._entry_level += 1
            for name, old in self._entries.items():
                merged: Dict[int, Dict[str, int]] = {}
                for i, counts in old.items():
                    target = merged.setdefault(i // factor, {})
                    for g, n in counts.items():
                        target[g] = target.get(g, 0) + n
                self._entries[name] = merged

    # --- results ---

    def summary(self, entries: bool = False, dwell_edges_s: Sequence[float] = ()) -> dict:
        """The ``audience`` tables (README, "Zones, lines and attention"); people whose track has
        not ended are counted under their latest labels. ``entries``: zone entries per time bin by
        age group (the report's chart); ``dwell_edges_s``: each zone's visits per dwell band between
        these edges (seconds, ascending; the last band open-ended)."""
        final = copy.deepcopy(self)
        for person in final._people.values():
            final._commit(person, None)
        final._people = {}
        return final._tables(entries, list(dwell_edges_s))

    def _ordered(self, cells: dict) -> List[Tuple[Tuple[str, str], object]]:
        order = {group: i for i, group in enumerate([*self.groups, UNKNOWN])}
        genders = {gender: i for i, gender in enumerate([*GENDERS, UNKNOWN])}
        return sorted(cells.items(), key=lambda item: (order.get(item[0][0], len(order)), genders[item[0][1]]))

    def _tables(self, entries: bool, dwell_edges_s: List[float]) -> dict:
        zones = {}
        for name, cells in self._zones.items():
            total = self._zone_totals[name]
            table: dict = {"people": total.people, "visits": total.visits, "watchers": total.watchers,
                     "passers_by": total.people - total.watchers,
                     "attention_share": _share(total.watchers, total.people),
                     "dwell_s": total.dwell.summary(), "attention_s": total.attention.summary(),
                     "by_group": [{"age_group": group, "gender": gender, **cell.row()}  # type: ignore[attr-defined]
                                  for (group, gender), cell in self._ordered(cells)]}
            if dwell_edges_s:
                table["dwell_bands"] = _bands(total.dwell, dwell_edges_s)
            zones[name] = table
        lines = {}
        for name, line_cells in self._lines.items():
            rows = [{"age_group": group, "gender": gender, **cell.row()}  # type: ignore[attr-defined]
                    for (group, gender), cell in self._ordered(line_cells)]
            lines[name] = {key: sum(row[key] for row in rows) for key in ("in", "out", "crossings_in", "crossings_out")}
            lines[name]["by_group"] = rows
        out: dict = {"zones": zones, "lines": lines,
                     "left_out": {"people": self.left_out, "min_seen_s": self.min_seen_s}}
        if self.attention_on:
            rows = [{"age_group": group, "gender": gender, **cell.row()}  # type: ignore[attr-defined]
                    for (group, gender), cell in self._ordered(self._attention)]
            total_row = self._attention_total
            out["attention"] = {"people": total_row.people, "watchers": total_row.watchers,
                                "attention_share": _share(total_row.watchers, total_row.people),
                                "glances": total_row.glances, "attention_s": total_row.attention.summary(),
                                "by_group": rows}
        if entries:
            width = _ENTRY_BINS_S[self._entry_level]
            out["entries"] = {"bin_s": width, "zones": {
                name: [{"t_s": index * width, **counts} for index, counts in sorted(bins.items())]
                for name, bins in self._entries.items()}}
        return out


def format_audience(audience: dict) -> List[str]:
    """The summary's ``audience`` tables as the command line prints them, one line per zone, line
    and for attention."""
    def seconds(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:g} s"

    def percent(share: Optional[float]) -> str:
        return "" if share is None else f" ({share * 100:.0f} %)"

    out = []
    for name, zone in audience["zones"].items():
        out.append(f"zone {name:<8} {zone['people']} people, {zone['visits']} visits, dwell p50 "
                   f"{seconds(zone['dwell_s']['p50'])} p90 {seconds(zone['dwell_s']['p90'])}, watchers "
                   f"{zone['watchers']}{percent(zone['attention_share'])}, passers-by {zone['passers_by']}")
    for name, line in audience["lines"].items():
        out.append(f"line {name:<8} in {line['in']}, out {line['out']} (people; crossings in {line['crossings_in']}, "
                   f"out {line['crossings_out']})")
    attention = audience.get("attention")
    if attention is not None:
        out.append(f"attention     {attention['watchers']} of {attention['people']} people looked at the camera"
                   f"{percent(attention['attention_share'])}, {attention['glances']} glances, attention p50 "
                   f"{seconds(attention['attention_s']['p50'])}")
    return out
