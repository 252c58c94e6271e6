"""``streamer serve`` (and ``python run.py serve``): the web service's command. The upload page
and JSON API for photos; with ``--source``, that source runs as ``run`` runs it and its live view
is served too. The application is streamer/web/app.py (Flask), the server streamer/web/server.py
(cheroot), both from the optional ``web`` extra; this module stays cheap to import and needs
neither (the command line imports it for ``--help``)."""

from __future__ import annotations

import argparse
import dataclasses

from ..errors import StreamerError

TOKEN_ENV = "STREAMER_TOKEN"
INSTALL_HINT = "pip install 'streamer[web]'"
# What the web extra installs (pyproject.toml), by import name.
EXTRA_MODULES = ("flask", "cheroot")


class WebError(StreamerError):
    """The web service cannot start (extra not installed, address in use, no token for a network
    address, ...)."""


def require_extra() -> None:
    """WebError naming the fix when Flask or cheroot is not installed."""
    import importlib

    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise WebError(f"`serve` needs the web extra (Flask and cheroot); {name} is not installed: "
                           f"{INSTALL_HINT}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``serve`` (cli.py adds --config and -v to every command); ``main(args)`` runs it."""
    from ..cli import add_run_arguments

    parser = subparsers.add_parser(
        "serve",
        help="web page and JSON API for photos; with --source, also a live view of that source; with a "
        "config with cameras, a live view of each",
        description="Serve the upload page and the JSON API (POST /api/analyze) on HOST:PORT.\n"
        "With --source, run that source as `run` does (same capture, gate, tracker and outputs;\n"
        "never a preview window) and serve its live view (/api/stream.mjpeg, /api/latest.jpg,\n"
        "/api/latest.json, /api/stats, /healthz, /metrics).\n"
        "With a config with cameras and no --source, run every camera as `run --config` does (one\n"
        "supervised worker each) and serve them all: a card per camera on the page, /api/<camera>/...\n"
        "for each (stream.mjpeg, latest.jpg, latest.json, stats, healthz), /api/stats for the site,\n"
        "/metrics labelled by camera; --camera NAME serves that one camera alone.\n"
        f"Listening on anything but 127.0.0.1 needs a token ({TOKEN_ENV} or web.token). Without one, a\n"
        "request must name this machine in its Host header (localhost, 127.0.0.1, or web.allowed_hosts);\n"
        "a POST from another site's page is always refused.\n"
        "A video file plays at its own fps (--unpaced: as fast as it is analysed); after it ends the\n"
        "service keeps serving its last frame until Ctrl-C or SIGTERM. Nothing is written unless asked\n"
        "(--output, --events, --report, ...).\n"
        f"Needs the web extra (Flask, cheroot): {INSTALL_HINT}",
    )
    add_run_arguments(parser, source_required=False, default_output=False)
    parser.add_argument("--unpaced", action="store_true",
                        help="read a video file as fast as it is analysed (default: at its own fps, as a camera)")
    parser.add_argument("--host", help="address to listen on (default: web.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: web.port, 8080; 0: any free port)")
    return parser


def main(args: argparse.Namespace) -> int:
    """``serve`` with parsed arguments; StreamerError (one line, exit 2) on bad input."""
    from ..cli import apply_privacy_arguments, print_summary, run_options
    from ..config import override

    require_extra()
    from .server import serve

    config = args.config_obj
    host = args.host or config.web.host
    port = config.web.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise WebError(f"--port {port}: expected 0-65535")
    options = None
    args.no_window = True  # a service: the picture goes to the browser
    if not args.source and config.cameras:
        return _serve_cameras(args, host, port)
    if args.source:
        config, options = run_options(args)
        # A file plays as a camera would; its annotated copy is written only when asked (--output).
        options = dataclasses.replace(options, paced=not args.unpaced, default_output=False)
    else:
        # Photos only: --anonymize, --no-labels and --privacy still decide what the answers show.
        config = apply_privacy_arguments(override(config, {"output.window": False}), args)
    try:
        summary = serve(config, host, port, options)
    except StreamerError as error:
        partial = getattr(error, "summary", None)
        if partial is not None:
            print_summary(partial)
        raise
    if summary is not None:
        print_summary(summary)
    return 0


def _serve_cameras(args: argparse.Namespace, host: str, port: int) -> int:
    """``serve`` of a config with cameras: all of them (one supervised worker each), or with
    ``--camera NAME`` that one in this process; its summary (or the site's) printed at the end."""
    from ..cli import print_site_summary, print_summary, site_options
    from ..config import camera_config
    from ..site import camera_jobs
    from .server import serve, serve_site

    config, base, site_summary, adjust = site_options(args, "serve")
    # Files play at their own fps, as cameras would (--unpaced: as fast as analysed).
    base = dataclasses.replace(base, paced=not args.unpaced)
    if args.camera:
        camera_config(config, args.camera)  # an unknown name: the error lists the known ones
        job = camera_jobs(config, base, [args.camera], site_summary, adjust)[0]
        options = dataclasses.replace(job.options, output=args.output or job.options.output,
                                      events=args.events or job.options.events,
                                      summary_json=args.summary or job.options.summary_json, report=args.report)
        summary = serve(job.config, host, port, options)
        if summary is not None:
            print_summary(summary)
        return 0
    print_site_summary(serve_site(config, host, port, base, site_summary, args.verbose, adjust), site_summary)
    return 0
