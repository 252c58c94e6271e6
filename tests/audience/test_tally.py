"""The audience tables from records: per zone, per line and attention, split by age group and
gender; the same from the run (AudienceTally) and from an events file (the people report)."""

from __future__ import annotations

import json
import random

import pytest

from streamer.audience.tally import AudienceTally, Quantiles
from streamer.config import ClassifierConfig, ReportConfig, parse_config
from streamer.report.build import PeopleReport, write_report
from streamer.report.events import read_events
from streamer.types import age_group_labels

GROUPS = age_group_labels(ClassifierConfig().age_groups)


def visit(track, zone, enter, dwell, attention=0.0, gender=None, group=None):
    return {"event": "zone_exit", "track": track, "zone": zone, "enter_t_s": enter, "exit_t_s": enter + dwell,
            "dwell_s": dwell, "attention_s": attention, "watched": attention > 0, "gender": gender, "age_group": group}


def cross(track, line, direction):
    return {"event": "line_cross", "track": track, "line": line, "direction": direction, "gender": None,
            "age_group": None}


def end(track, gender, group, seen_s=10.0, glances=0, attention_s=0.0):
    return {"event": "end", "track": track, "gender": gender, "age_group": group, "seen_s": seen_s,
            "first_t_s": 0.0, "last_t_s": seen_s, "glances": glances, "attention_s": attention_s}


RECORDS = [
    # 1: a woman of 30-39 in, to the shelf twice (4 s and 6 s, looking 1.5 s the second time), out.
    cross(1, "door", "in"),
    visit(1, "shelf", 10.0, 4.0),
    visit(1, "shelf", 20.0, 6.0, attention=1.5, gender="female", group="30-39"),
    cross(1, "door", "out"),
    end(1, "female", "30-39", glances=1, attention_s=1.5),
    # 2: a man of 20-29 in, 2 s at the shelf without looking, still in at the end of the events.
    cross(2, "door", "in"),
    visit(2, "shelf", 15.0, 2.0, gender="male", group="20-29"),
    # 3: a flicker (seen 0.2 s) "in the zone": left out of everything.
    visit(3, "shelf", 30.0, 0.2),
    end(3, None, None, seen_s=0.2),
    # 4: nobody the tracker could label, at the screen 8 s, looking twice.
    visit(4, "screen", 400.0, 8.0, attention=3.0),
    end(4, None, None, glances=2, attention_s=3.0),
]


def tally_of(records, **kwargs) -> AudienceTally:
    tally = AudienceTally(["shelf", "screen", "empty"], ["door"], GROUPS, min_seen_s=1.0, **kwargs)
    for record in records:
        tally.add(record)
    return tally


def test_zone_line_and_attention_tables_by_age_group_and_gender():
    summary = tally_of(RECORDS).summary()
    shelf = summary["zones"]["shelf"]
    assert (shelf["people"], shelf["visits"], shelf["watchers"], shelf["passers_by"]) == (2, 3, 1, 1)
    assert shelf["attention_share"] == 0.5
    assert shelf["dwell_s"]["p50"] == 4.0 and shelf["dwell_s"]["total"] == 12.0
    assert [(r["age_group"], r["gender"], r["people"], r["visits"], r["watchers"]) for r in shelf["by_group"]] == [
        ("20-29", "male", 1, 1, 0), ("30-39", "female", 1, 2, 1)]
    (woman,) = [r for r in shelf["by_group"] if r["gender"] == "female"]
    assert (woman["dwell_p50_s"], woman["dwell_p90_s"], woman["attention_p50_s"]) == (5.0, 5.8, 1.5)
    screen = summary["zones"]["screen"]
    assert [(r["age_group"], r["gender"], r["watchers"]) for r in screen["by_group"]] == [("unknown", "unknown", 1)]
    assert summary["zones"]["empty"] == {**summary["zones"]["empty"], "people": 0, "visits": 0, "by_group": []}
    door = summary["lines"]["door"]
    assert (door["in"], door["out"], door["crossings_in"], door["crossings_out"]) == (2, 1, 2, 1)
    attention = summary["attention"]
    # Attention counts ended people only (2 open has no end record, 3 was left out): 1 and 4, both watched.
    assert (attention["people"], attention["watchers"], attention["glances"]) == (2, 2, 3)
    assert summary["left_out"] == {"people": 1, "min_seen_s": 1.0}


def test_a_summary_changes_nothing_and_open_people_wait_for_their_end():
    tally = tally_of(RECORDS)
    first = tally.summary()
    assert tally.summary() == first
    tally.add(end(2, "male", "20-29"))  # the open person ends: now in the attention table too
    assert tally.summary()["attention"]["people"] == 3
    assert tally.summary()["zones"]["shelf"] == first["zones"]["shelf"]


def test_records_of_unknown_zones_get_their_own_table_and_other_kinds_are_ignored():
    tally = AudienceTally([], [], GROUPS)
    for record in [{"event": "new", "track": 9}, {"event": "zone_enter", "track": 9, "zone": "x", "enter_t_s": 1.0},
                   visit(9, "x", 1.0, 3.0), end(9, "female", "90-99")]:
        tally.add(record)
    (row,) = tally.summary()["zones"]["x"]["by_group"]
    assert (row["age_group"], row["gender"], row["visits"]) == ("90-99", "female", 1)


def test_quantiles_are_exact_when_small_and_bounded_when_large():
    small = Quantiles()
    for value in (1.0, 2.0, 3.0, 4.0):
        small.add(value)
    assert (small.quantile(0.5), small.quantile(0.9)) == (2.5, pytest.approx(3.7))
    large = Quantiles()
    rng = random.Random(4)
    values = [rng.expovariate(1 / 30) for _ in range(50_000)]
    for value in values:
        large.add(value)
    assert len(large.values) == 4096 and large.count == 50_000
    truth = sorted(values)
    assert large.quantile(0.5) == pytest.approx(truth[25_000], rel=0.05)
    assert large.quantile(0.9) == pytest.approx(truth[45_000], rel=0.05)
    assert Quantiles().summary() == {"p50": None, "p90": None, "mean": None, "total": 0.0}


def test_entries_per_five_minutes_by_age_group_become_hours_on_long_runs():
    tally = tally_of(RECORDS)
    entries = tally.summary(entries=True)["entries"]
    assert entries["bin_s"] == 300.0
    assert entries["zones"]["shelf"] == [{"t_s": 0.0, "30-39": 2, "20-29": 1}]
    assert entries["zones"]["screen"] == [{"t_s": 300.0, "unknown": 1}]
    late = [visit(10 + k, "shelf", 3600.0 * 24 * k, 5.0) for k in range(12)] + [
        end(10 + k, "male", "40-49") for k in range(12)]
    long_run = tally_of(late).summary(entries=True)["entries"]
    assert long_run["bin_s"] == 3600.0 and sum(row["40-49"] for row in long_run["zones"]["shelf"]) == 12


def test_the_report_gives_the_same_tables_and_writes_them(tmp_path):
    """The people report of an events file holding these records: summary.json's audience is the
    run's tally; zones.csv, lines.csv, the two charts and the page's tables are written."""
    config = parse_config({"audience": {"zones": {name: {"polygon": [[0, 0], [1, 0], [1, 1]]} for name in
                                                  ("shelf", "screen", "empty")},
                                        "lines": {"door": {"points": [[0, 0.5], [1, 0.5]]}}},
                           "report": {"min_seen_s": 1.0}})
    events = tmp_path / "events.jsonl"
    base = {"source": "shop.mp4", "frame": 0, "t_s": 0.0}
    lines = [{**base, "faces": [], "stale": False}] + [{**base, **record} for record in RECORDS]
    lines.insert(3, {**base, "event": "zone_exit", "track": 5, "zone": "shelf"})  # broken: no times
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = read_events(events, PeopleReport(ReportConfig(min_seen_s=1.0), ClassifierConfig().age_groups,
                                              audience=config.audience))
    written = write_report(report, tmp_path / "report", events=events)
    assert any("line 4" in warning and "enter_t_s" in warning for warning in report.warnings)
    audience = written["audience"]
    run = tally_of(RECORDS).summary()
    assert {k: audience[k] for k in ("lines", "attention", "left_out")} == {k: run[k] for k in
                                                                            ("lines", "attention", "left_out")}
    for name, zone in run["zones"].items():
        assert {k: v for k, v in audience["zones"][name].items() if k != "dwell_bands"} == zone
    assert [band["visits"] for band in audience["zones"]["shelf"]["dwell_bands"]][:2] == [2, 1]  # 0-5 s, 5-15 s
    csv_rows = (tmp_path / "report" / "zones.csv").read_text().splitlines()
    assert csv_rows[0].startswith("zone,age_group,gender,people,visits") and "shelf,30-39,female,1,2" in csv_rows[2]
    assert (tmp_path / "report" / "lines.csv").read_text().splitlines()[1].startswith("door,")
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Zone shelf: 2 people, 3 visits" in page and "Line door: 2 people in, 1 out" in page
    assert "Attention: 2 of 2 people looked at the camera" in page
    names = {name.rsplit("/", 1)[-1] for name in written["files"]}
    assert {"zones.csv", "lines.csv", "zone_entries.png", "zone_dwell.png"} <= names


def test_the_command_line_prints_one_line_per_zone_line_and_attention():
    from streamer.audience.tally import format_audience

    lines = format_audience(tally_of(RECORDS).summary())
    assert lines[0] == ("zone shelf    2 people, 3 visits, dwell p50 4 s p90 5.6 s, watchers 1 (50 %), "
                        "passers-by 1")
    assert lines[3] == "line door     in 2, out 1 (people; crossings in 2, out 1)"
    assert lines[4].startswith("attention     2 of 2 people looked at the camera (100 %), 3 glances")
