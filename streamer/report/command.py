"""``streamer report EVENTS.jsonl --out DIR``: the people report of a tracked run's events file;
of several cameras (several files, or ``--mqtt HOST`` for every camera on a broker): one report per
camera and one for the fleet (``fleet.py``)."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

from ..config import Config, override
from ..errors import ConfigError
from .build import PeopleReport, write_report
from .events import read_events


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``report EVENTS.jsonl --out DIR`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "report",
        help="write the people report (CSV, JSON, charts, one HTML page) from a tracked run's events file",
        description="Read the events file of a tracked run (--mode tracked --events PATH.jsonl) in one pass and "
        "write people.csv, people.json, summary.json, PNG charts and report.html into a folder. Charts need "
        "matplotlib: pip install 'streamer[report]'.",
    )
    parser.add_argument("events", type=Path, nargs="*",
                        help="the JSON Lines file a run wrote with --events; several: a report per camera and one "
                        "for the fleet")
    parser.add_argument("--mqtt", metavar="HOST[:PORT]",
                        help="instead of files: listen to every camera's events on this broker (login and TLS from "
                        "the config's mqtt section), then write a report per camera and one for the fleet")
    parser.add_argument("--site", metavar="PREFIX", help="with --mqtt: the cameras' topic prefix (default: "
                        "mqtt.topic_prefix)")
    listen = parser.add_mutually_exclusive_group()
    listen.add_argument("--for", dest="listen_for", metavar="DURATION", type=_duration,
                        help="with --mqtt: listen this long (90s, 15m, 1h), then write the reports")
    listen.add_argument("--until-ctrl-c", action="store_true",
                        help="with --mqtt: listen until Ctrl-C (or SIGTERM), then write the reports")
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
    if args.mqtt or len(args.events) > 1:
        return _fleet_main(args, config)
    if not args.events:
        raise ConfigError("report needs an events file (or several), or --mqtt HOST to listen to a broker")
    if args.listen_for or args.until_ctrl_c or args.site:
        raise ConfigError("--for, --until-ctrl-c and --site go with --mqtt")
    args.events = args.events[0]
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


_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s, 15m or 1h, got {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2) or "s"]


def _fleet_main(args: argparse.Namespace, config: Config) -> int:
    from ..outputs.mqtt_messages import cli_overrides
    from .events import read_events
    from .fleet import FleetReport, write_fleet_report

    fleet = FleetReport(config.report, config.classifier.age_groups)
    if args.mqtt:
        if args.events:
            raise ConfigError("give events files or --mqtt, not both")
        if not (args.listen_for or args.until_ctrl_c):
            raise ConfigError("--mqtt needs --for DURATION (e.g. --for 1h) or --until-ctrl-c: how long to listen")
        changes = dict(cli_overrides(args.mqtt))
        if args.site:
            changes["mqtt.topic_prefix"] = args.site
        mqtt_config = override(config, changes).mqtt
        sources = [f"{mqtt_config.host}:{mqtt_config.port} {mqtt_config.topic_prefix}/+/events"]
        _listen(mqtt_config, fleet, args.listen_for)
    else:
        sources = [str(path) for path in args.events]
        for path in args.events:
            fleet.default_camera = Path(path).stem
            read_events(path, fleet)
    written = write_fleet_report(fleet, args.out, args.overwrite, sources)
    lines = [f"{name:<12}  " + format_people(summary)[14:] for name, summary in written["cameras"].items()]
    lines.append("fleet         " + format_people(written["fleet"])[14:])
    lines.append(f"report        {args.out} (the fleet), {args.out / 'cameras'}/<camera> (each camera)")
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def _listen(mqtt_config, fleet, duration_s: Optional[float]) -> None:
    """Feed ``fleet`` from the broker until ``duration_s`` or Ctrl-C/SIGTERM (then the reports are
    still written: a stop is how --until-ctrl-c ends)."""
    from ..outputs.mqtt_session import listen_events

    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        listen_events(mqtt_config, fleet.add_quietly, stop, duration_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
