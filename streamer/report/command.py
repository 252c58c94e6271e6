"""``streamer report EVENTS.jsonl --out DIR``: the people report of a tracked run's events file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import Config, override
from .build import PeopleReport, read_events, write_report


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``report EVENTS.jsonl --out DIR`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "report",
        help="write the people report (CSV, JSON, charts, one HTML page) from a tracked run's events file",
        description="Read the events file of a tracked run (--mode tracked --events PATH.jsonl) in one pass and "
        "write people.csv, people.json, summary.json, PNG charts and report.html into a folder. Charts need "
        "matplotlib: pip install 'streamer[report]'.",
    )
    parser.add_argument("events", type=Path, help="the JSON Lines file a run wrote with --events")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the report into (made if missing)")
    parser.add_argument("--min-seen-s", type=float, default=None,
                        help="leave out people seen for less than this many seconds (default: report.min_seen_s)")
    parser.add_argument("--overwrite", action="store_true", help="replace report files already in the folder")
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the ``report`` subcommand (``args.config_obj``: the loaded Config, from the command
    line's common ``--config``); StreamerError (exit 2) on unusable input or unwritable output."""
    config = getattr(args, "config_obj", None) or Config()
    if args.min_seen_s is not None:
        config = override(config, {"report.min_seen_s": args.min_seen_s})
    report = read_events(args.events, PeopleReport(config.report, config.classifier.age_groups,
                                                   audience=config.audience))
    summary = write_report(report, args.out, args.overwrite, args.events)
    lines = [format_people(summary)]
    if summary.get("audience"):
        from ..audience.tally import format_audience

        lines += format_audience(summary["audience"])
    lines.append(f"report        {args.out}: {', '.join(Path(name).name for name in summary['files'])}")
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def format_people(summary: dict) -> str:
    """One line for the command line: people, by gender, by age group, left out."""
    genders = ", ".join(f"{k} {v}" for k, v in summary["by_gender"].items() if v)
    groups = ", ".join(f"{k} {v}" for k, v in summary["by_age_group"].items() if v)
    left = summary["left_out"]
    left_out = left["tracks"] if isinstance(left, dict) else left
    text = f"people        {summary['people']}"
    if summary["people"]:
        text += f" ({genders}; ages {groups})"
    if left_out:
        min_seen = f" under {left['min_seen_s']:g} s" if isinstance(left, dict) else ""
        text += f"; {left_out} seen{min_seen} left out"
    return text
