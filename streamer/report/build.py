"""The people report: how many people were seen, when, for how long, of which gender and age group.

Built from tracked-mode events in one pass, in memory bounded for an events file of any
length: each track's ``end`` record is its row, and the per-frame faces' ``track`` ids give the
people in view over time, kept as a few sets of ids per time bin. ``python run.py report
EVENTS.jsonl --out DIR`` reads a file (:func:`read_events`); a tracked run with ``--report DIR``
feeds the same :class:`PeopleReport` from its frames and records as they happen (:class:`ReportSink`).

:func:`write_report` writes, each file finished or absent: ``people.csv`` and ``people.json`` (one
row per person), ``summary.json`` (counts, dwell-time bands, people in view over time, peak), the
PNG charts and ``report.html`` (``streamer.report.page``; charts need the ``report`` extra).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from ..audience.tally import AudienceTally
from ..config import AudienceConfig, ReportConfig
from ..errors import SinkError
from ..outputs.files import write_bytes
from ..outputs.sinks import Sink
from ..types import GENDERS, age_group_labels
from .runs import Runs
from .tally import LabelCounts

log = logging.getLogger(__name__)

PEOPLE_CSV, PEOPLE_JSON, SUMMARY_JSON, REPORT_HTML = "people.csv", "people.json", "summary.json", "report.html"
CHART_FILES = ("age_gender.png", "in_view.png", "dwell.png")
REPORT_FILES = (PEOPLE_CSV, PEOPLE_JSON, SUMMARY_JSON, *CHART_FILES, REPORT_HTML)
# With zones or lines, also: their tables by age group and gender, and two charts.
ZONES_CSV, LINES_CSV = "zones.csv", "lines.csv"
AUDIENCE_FILES = (ZONES_CSV, LINES_CSV, "zone_entries.png", "zone_dwell.png")
_AUDIENCE_KINDS = ("zone_enter", "zone_exit", "line_cross")
ZONE_CSV_COLUMNS = ("zone", "age_group", "gender", "people", "visits", "dwell_p50_s", "dwell_p90_s", "watchers",
                    "passers_by", "attention_share", "attention_p50_s")
LINE_CSV_COLUMNS = ("line", "age_group", "gender", "in", "out", "crossings_in", "crossings_out")

# One row per person: the end record's fields, the age range split in two, and whether the row
# comes from an end record (false: the events stop before the track ended, the row is from its frames).
CSV_COLUMNS = (
    "track", "first_frame", "last_frame", "first_t_s", "last_t_s", "seen_s",
    "hits", "samples", "gender", "gender_p", "age", "age_group", "age_lo", "age_hi", "ended",
    "first_time", "last_time",
)  # fmt: skip
# People in view over time: per second while the events span at most 15 minutes (a clip: 900 points
# still read as a curve), per minute up to 48 hours (a shop day or two), per hour beyond (months of a
# camera). A bin holds the distinct sets of ids seen together, a handful while people come and go.
_BIN_LEVELS: Tuple[Tuple[float, Optional[int]], ...] = ((1.0, 900), (60.0, 2880), (3600.0, None))
_LABEL_KEYS = ("gender", "gender_p", "age", "age_group", "age_range")


@dataclass
class _Seen:
    """What the frames say of a track whose end record has not come (yet)."""

    first_frame: int
    first_t_s: float
    last_frame: int
    last_t_s: float
    hits: int = 0
    labels: Dict[str, object] = field(default_factory=dict)


class PeopleReport:
    """Accumulates events (frame objects and ``new``/``update``/``end`` records, as in the events
    file) one at a time; :meth:`rows` and :meth:`summary` at any point after. Holds one row per
    track and, per time bin, the distinct sets of track ids seen on one frame."""

    def __init__(self, cfg: ReportConfig, age_groups: Sequence[Tuple[int, int]] = (), source: Optional[str] = None,
                 audience: Optional[AudienceConfig] = None, runs: bool = True):
        """``audience``: the run's zones and lines, so that a zone nobody entered still has its
        (empty) table; without it, the tables are those the events name. ``runs``: tell apart the
        runs of a live camera's events file that a restarted run appended to (``streamer.report.runs``:
        a later run's track ids and times are moved); False when the caller already did (the fleet)."""
        self.cfg = cfg
        self.runs: Optional[Runs] = Runs() if runs else None
        self.source = source
        self.frames = 0
        self.untracked_faces = 0
        self.warnings: List[str] = []
        self._group_labels = list(age_group_labels(age_groups))
        self._ended: Dict[int, dict] = {}
        self._open: Dict[int, _Seen] = {}
        self._t0: Optional[float] = None
        self._t_last: Optional[float] = None
        # Unix seconds minus t_s, from the first event of a live run (its "timestamp"): the
        # wall-clock time of any t_s. None for a file's events (their t_s is the file position).
        self._clock_offset: Optional[float] = None
        self._level = 0
        # Per time bin: each set of tracks seen together, and when it was first seen (the peak is
        # said at the moment it began, not at its bin's start).
        self._bins: Dict[int, Dict[FrozenSet[int], float]] = {}
        # Zones, lines and attention: made with the run's names, else at the first record that needs it.
        self.audience: Optional[AudienceTally] = None
        if audience is not None and (audience.zones or audience.lines):
            self.audience = AudienceTally(list(audience.zones), list(audience.lines), self._group_labels,
                                          audience.attention, cfg.min_seen_s)

    # --- feeding ---

    def add(self, event: dict) -> None:
        """One events-file object. ValueError (with what is wrong) when it is not a streamer event."""
        if self.runs is not None:
            event = self.runs.place(event)
        kind = event.get("event")
        if self._clock_offset is None and "timestamp" in event:
            stamp, t_s = event.get("timestamp"), event.get("t_s")
            if _is_number(stamp) and _is_number(t_s):
                self._clock_offset = float(stamp) - float(t_s)  # type: ignore[arg-type]
        if "faces" in event and kind is None:
            self._add_frame(event)
        elif kind in ("new", "update"):
            track = _int(event, "track")
            if kind == "new" and track not in self._ended and track not in self._open:
                t_s, frame = _num(event, "t_s", 0.0), int(_num(event, "frame", 0))
                self._open[track] = _Seen(frame, t_s, frame, t_s)
        elif kind == "end":
            self._add_end(event)
            if self.audience is not None or "glances" in event:
                self._audience_tally().add(event)
        elif kind in _AUDIENCE_KINDS:
            _check_audience(event)
            self._audience_tally().add(event)
        else:
            keys = ", ".join(sorted(event)[:6]) or "none"
            raise ValueError(f"no 'faces' list and no 'event' record; its keys: {keys}")

    def _audience_tally(self) -> AudienceTally:
        if self.audience is None:
            self.audience = AudienceTally([], [], self._group_labels, min_seen_s=self.cfg.min_seen_s)
        return self.audience

    def _add_frame(self, event: dict) -> None:
        # The hot path of a months-long events file (one call per frame): plain type checks.
        faces, number = event.get("faces"), event.get("t_s")
        if not isinstance(faces, list) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ValueError("a frame object without a 'faces' list and a numeric 't_s'")
        t_s = float(number)
        frame = event.get("frame")
        if not isinstance(frame, int):
            frame = 0
        ids = []
        if faces:
            fresh = not event.get("stale", False)
            for face in faces:
                track = face.get("track") if type(face) is dict else None
                if type(track) is not int:
                    self.untracked_faces += 1
                    continue
                ids.append(track)
                if track in self._ended:
                    continue
                seen = self._open.get(track)
                if seen is None:
                    seen = self._open[track] = _Seen(frame, t_s, frame, t_s)
                seen.last_frame, seen.last_t_s = frame, t_s
                seen.hits += fresh
                if face.get("classified"):
                    seen.labels = {key: face.get(key) for key in _LABEL_KEYS}
        self.frames += 1
        if self.source is None and isinstance(event.get("source"), str):
            self.source = event["source"]
        self._bin(t_s).setdefault(frozenset(ids), t_s)

    def _add_end(self, event: dict) -> None:
        track = _int(event, "track")
        for key in ("first_t_s", "last_t_s", "seen_s"):
            if not _is_number(event.get(key)):
                raise ValueError(f"an end record without a numeric '{key}'")
        if event.get("gender") not in (None, *GENDERS) or not isinstance(event.get("age_group"), (str, type(None))):
            raise ValueError("an end record whose gender or age_group is not one the analyzer writes")
        age_range = event.get("age_range")
        if age_range is not None and not (isinstance(age_range, list) and len(age_range) == 2
                                          and all(_is_number(v) for v in age_range)):
            raise ValueError("an end record whose age_range is not [lo, hi]")
        row = {key: event.get(key) for key in CSV_COLUMNS if key not in ("age_lo", "age_hi", "ended")}
        row["age_range"] = event.get("age_range")
        row["ended"] = True
        self._ended[track] = row
        self._open.pop(track, None)
        if self._t0 is None:  # records alone (no frames): the span is the tracks'
            self._t0 = float(event["first_t_s"])
        self._t_last = max(self._t_last or float(event["last_t_s"]), float(event["last_t_s"]))

    def _bin(self, t_s: float) -> Dict[FrozenSet[int], float]:
        if self._t0 is None:
            self._t0 = t_s
        if self._t_last is None or t_s > self._t_last:
            self._t_last = t_s
        width, limit = _BIN_LEVELS[self._level]
        index = max(0, int((t_s - self._t0) // width))
        while limit is not None and index >= limit:
            self._coarsen()
            width, limit = _BIN_LEVELS[self._level]
            index = max(0, int((t_s - self._t0) // width))
        return self._bins.setdefault(index, {})

    def _coarsen(self) -> None:
        factor = int(_BIN_LEVELS[self._level + 1][0] // _BIN_LEVELS[self._level][0])
        self._level += 1
        bins: Dict[int, Dict[FrozenSet[int], float]] = {}
        for index, combos in self._bins.items():
            merged = bins.setdefault(index // factor, {})
            for combo, first_t_s in combos.items():
                merged[combo] = min(first_t_s, merged.get(combo, first_t_s))
        self._bins = bins

    # --- results ---

    def all_rows(self) -> List[dict]:
        """One row per track (ended ones from their end record, open ones from their frames), by id."""
        rows = dict(self._ended)
        for track, seen in self._open.items():
            labels = seen.labels
            rows[track] = {
                "track": track, "first_frame": seen.first_frame, "last_frame": seen.last_frame,
                "first_t_s": round(seen.first_t_s, 4), "last_t_s": round(seen.last_t_s, 4),
                "seen_s": round(seen.last_t_s - seen.first_t_s, 3), "hits": seen.hits, "samples": None,
                "gender": labels.get("gender"), "gender_p": labels.get("gender_p"), "age": labels.get("age"),
                "age_group": labels.get("age_group"), "age_range": labels.get("age_range"), "ended": False,
            }  # fmt: skip
        for row in rows.values():
            row["first_time"], row["last_time"] = self.time_of(row["first_t_s"]), self.time_of(row["last_t_s"])
        return [rows[track] for track in sorted(rows)]

    def time_of(self, t_s: Optional[float]) -> Optional[str]:
        """The local wall-clock time (ISO 8601 with its UTC offset, to the second) of an event time,
        for events of a live run; None for a file's events."""
        if self._clock_offset is None or t_s is None:
            return None
        return datetime.fromtimestamp(self._clock_offset + t_s).astimezone().isoformat(timespec="seconds")

    def rows(self) -> Tuple[List[dict], int]:
        """The people (rows seen at least ``min_seen_s``) and how many tracks were left out."""
        everyone = self.all_rows()
        kept = [row for row in everyone if row["seen_s"] >= self.cfg.min_seen_s]
        return kept, len(everyone) - len(kept)

    def summary(self) -> dict:
        """Counts over the people (every breakdown adds up to ``people``), dwell-time bands, people
        in view per time bin, peak; the keys of summary.json (README, People report)."""
        rows, left_out = self.rows()
        # A label of another config's age groups (an old events file) gets a row of its own.
        labels = LabelCounts.of(((row["gender"], row["age_group"]) for row in rows), self._group_labels)
        seen = sorted(row["seen_s"] for row in rows)
        open_tracks = sum(not row["ended"] for row in rows)
        in_view, peak = self._in_view({row["track"] for row in rows})
        return {
            "source": self.source,
            "first_t_s": None if self._t0 is None else round(self._t0, 4),
            "last_t_s": None if self._t_last is None else round(self._t_last, 4),
            "duration_s": None if self._t0 is None or self._t_last is None else round(self._t_last - self._t0, 3),
            "first_time": self.time_of(self._t0),
            "last_time": self.time_of(self._t_last),
            "frames": self.frames,
            "people": len(rows),
            "left_out": {"tracks": left_out, "min_seen_s": self.cfg.min_seen_s},
            "without_end_record": open_tracks,
            "by_gender": labels.by_gender(),
            "by_age_group": labels.by_age_group(),
            "by_age_group_and_gender": labels.cells,
            "dwell": {
                "bands": self._dwell_bands(seen),
                "median_s": round(statistics.median(seen), 2) if seen else None,
                "mean_s": round(statistics.fmean(seen), 2) if seen else None,
                "total_s": round(sum(seen), 2),
            },
            "in_view": in_view,
            "peak": peak,
            **({} if self.audience is None else {"audience": self._audience_summary()}),
            "warnings": list(self.warnings),
        }

    def _audience_summary(self) -> dict:
        assert self.audience is not None
        edges = [0.0, *[edge for edge in self.cfg.dwell_bands_s if edge > 0]]
        summary = self.audience.summary(entries=True, dwell_edges_s=edges)
        for zone in summary["zones"].values():
            for band in zone["dwell_bands"]:
                band["label"] = _band_label(band["from_s"], math.inf if band["to_s"] is None else band["to_s"])
        entries = summary["entries"]
        entries["start_t_s"] = None if self._t0 is None else round(self._t0, 4)
        entries["start_time"] = self.time_of(self._t0)
        return summary

    def _dwell_bands(self, seen: Sequence[float]) -> List[dict]:
        edges = [self.cfg.min_seen_s, *[e for e in self.cfg.dwell_bands_s if e > self.cfg.min_seen_s], math.inf]
        bands = []
        for lo, hi in zip(edges, edges[1:]):
            bands.append({"label": _band_label(lo, hi), "from_s": lo, "to_s": None if hi == math.inf else hi,
                          "people": sum(lo <= s < hi for s in seen)})
        return bands

    def _in_view(self, kept: Set[int]) -> Tuple[dict, dict]:
        """Most people in view at once per bin (None where no frame fell in it), and the peak."""
        width = _BIN_LEVELS[self._level][0]
        if self._t0 is None or not self._bins:
            return ({"bin_s": width, "start_t_s": None, "start_time": None, "people": []},
                    {"people": 0, "t_s": None, "time": None})
        series: List[Optional[int]] = [None] * (max(self._bins) + 1)
        for index, combos in self._bins.items():
            series[index] = max(len(combo & kept) for combo in combos)
        peak = max(count or 0 for count in series)
        at = next(i for i, count in enumerate(series) if (count or 0) == peak)
        # When the peak began: the first frame of its bin that showed that many people.
        began = min((t for combo, t in self._bins.get(at, {}).items() if len(combo & kept) == peak),
                    default=self._t0 + at * width)
        return ({"bin_s": width, "start_t_s": round(self._t0, 4), "start_time": self.time_of(self._t0), "people": series},
                {"people": peak, "t_s": round(began, 4), "time": self.time_of(began), "bin_s": width})

    def run_counts(self) -> dict:
        """The ``people`` entry of a run's summary: counts only."""
        summary = self.summary()
        return {"people": summary["people"], "left_out": summary["left_out"]["tracks"],
                "by_gender": summary["by_gender"], "by_age_group": summary["by_age_group"]}


def _band_label(lo: float, hi: float) -> str:
    """``(5, 15)`` -> ``"5-15 s"``, ``(30, 60)`` -> ``"30 s-1 min"``, ``(600, inf)`` -> ``"10 min+"``."""
    def split(seconds: float) -> Tuple[str, str]:
        if seconds >= 60 and seconds % 60 == 0:
            return f"{seconds / 60:g}", "min"
        return f"{seconds:g}", "s"

    low, low_unit = split(lo)
    if hi == math.inf:
        return f"{low} {low_unit}+"
    high, high_unit = split(hi)
    return f"{low}-{high} {high_unit}" if low_unit == high_unit else f"{low} {low_unit}-{high} {high_unit}"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(event: dict, key: str, default: float) -> float:
    value = event.get(key)
    return float(value) if isinstance(value, (int, float)) and _is_number(value) else default


def _check_audience(event: dict) -> None:
    """ValueError unless a zone_enter / zone_exit / line_cross record has what the tally reads."""
    _int(event, "track")
    name = "line" if event["event"] == "line_cross" else "zone"
    if not isinstance(event.get(name), str):
        raise ValueError(f"a '{event['event']}' record without a '{name}' name")
    if event["event"] == "line_cross" and event.get("direction") not in ("in", "out"):
        raise ValueError("a 'line_cross' record whose direction is not 'in' or 'out'")
    for key in {"zone_enter": ("enter_t_s",), "zone_exit": ("enter_t_s", "dwell_s")}.get(event["event"], ()):
        if not _is_number(event.get(key)):
            raise ValueError(f"a '{event['event']}' record without a numeric '{key}'")


def _int(event: dict, key: str) -> int:
    value = event.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"a '{event.get('event')}' record without an integer '{key}'")
    return value


# --- reading an events file ---


# --- writing ---


def _csv_bytes(rows: Sequence[dict]) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        low, high = row["age_range"] or (None, None)
        writer.writerow({**row, "age_lo": low, "age_hi": high, "ended": str(row["ended"]).lower()})
    return text.getvalue().encode("utf-8")


def _table_csv_bytes(tables: dict, key: str, columns: Sequence[str]) -> bytes:
    """One row per (zone or line, age group, gender) of the audience tables."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for name, table in tables.items():
        for row in table["by_group"]:
            writer.writerow({key: name, **row})
    return text.getvalue().encode("utf-8")


def _json_bytes(data: object) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def report_paths(out_dir: Path) -> List[Path]:
    """Every file :func:`write_report` may write in ``out_dir`` (for the checks before a run)."""
    return [Path(out_dir) / name for name in (*REPORT_FILES, *AUDIENCE_FILES)]


def write_report(report: PeopleReport, out_dir: Path, overwrite: bool = False, events: Optional[Path] = None) -> dict:
    """Write the report's files into ``out_dir`` (made if missing), each under a temporary name
    renamed into place when complete, report.html last. Returns summary.json's content plus
    ``files`` (what was written). Charts are drawn when matplotlib is installed; without it the
    page shows the same numbers as tables and a warning says how to get the charts. SinkError when a
    file cannot be written."""
    from . import page as report_page

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SinkError(f"report folder {out_dir} is a file; pass a folder (made if missing)")
    existing = [path.name for path in report_paths(out_dir) if path.exists()]
    if existing and not overwrite:
        raise SinkError(f"report folder {out_dir} already holds {', '.join(existing)}; pass --overwrite to "
                        "replace them, or choose another folder")
    rows, left_out = report.rows()
    summary = report.summary()
    written = []
    people = {"source": report.source, "events": None if events is None else str(events),
              "min_seen_s": report.cfg.min_seen_s, "left_out": left_out, "people": rows}
    files = [(PEOPLE_CSV, _csv_bytes(rows)), (PEOPLE_JSON, _json_bytes(people)), (SUMMARY_JSON, _json_bytes(summary))]
    audience = summary.get("audience")
    if audience is not None:
        files += [(ZONES_CSV, _table_csv_bytes(audience["zones"], "zone", ZONE_CSV_COLUMNS)),
                  (LINES_CSV, _table_csv_bytes(audience["lines"], "line", LINE_CSV_COLUMNS))]
    for name, data in files:
        write_bytes(out_dir / name, data, overwrite, "report file")
        written.append(name)
    charts = report_page.draw_charts(summary)
    if charts is None:
        message = "report charts not drawn: matplotlib is not installed; pip install 'streamer[report]' for them"
        log.warning("%s", message)
    else:
        for name, png in charts.items():
            write_bytes(out_dir / name, png, overwrite, "report chart")
            written.append(name)
    page = report_page.render_html(summary, rows, charts, events)
    write_bytes(out_dir / REPORT_HTML, page.encode("utf-8"), overwrite, "report page")
    written.append(REPORT_HTML)
    return {**summary, "files": [str(out_dir / name) for name in written]}


class ReportSink(Sink):
    """The people report of a tracked run, fed every frame and track record as the run goes (the
    same objects the events file gets) and written into ``out_dir`` when the run ends, however it
    ends. ``written``: what :func:`write_report` returned, once it has."""

    def __init__(self, cfg: ReportConfig, age_groups: Sequence[Tuple[int, int]], out_dir: Path,
                 overwrite: bool = False, audience: Optional[AudienceConfig] = None) -> None:
        self.report = PeopleReport(cfg, age_groups, audience=audience)
        self.out_dir, self._overwrite = Path(out_dir), overwrite
        self.written: Optional[dict] = None
        self._closed = False

    def write(self, result, annotated) -> None:
        self.report.add(result.to_event())

    def write_records(self, records: Sequence[dict]) -> None:
        for record in records:
            self.report.add(record)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.written = write_report(self.report, self.out_dir, self._overwrite)


