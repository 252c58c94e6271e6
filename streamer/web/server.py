"""The web service's server: the token rule, cheroot serving the Flask application
(streamer/web/app.py) from a background thread, and ``serve()``, which runs it beside a live
source until Ctrl-C or SIGTERM (``streamer serve``, streamer/web/command.py, is the command).

Why cheroot (CherryPy's threaded pure-Python WSGI server) and not waitress: waitress reads every
request body whole before the application is called and answers its own size limit in plain
text, so an oversized upload could not get the JSON 413 before it is read; cheroot hands the
application the socket's stream, so Flask's ``MAX_CONTENT_LENGTH`` answers from the
Content-Length without reading the body. Both are pure Python (any board), both have a fixed pool
of request threads; cheroot keeps idle keep-alive connections out of it (a selector).

Threads: cheroot's pool of ``web.max_viewers`` + the uploads' + ``_REQUEST_THREADS`` (each MJPEG viewer
holds one for as long as it watches; requests beyond the pool wait for a free thread); the
run, when there is one, on the main thread, so Ctrl-C and SIGTERM stop it exactly as they stop a
run.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
from typing import Any, Optional

from cheroot import wsgi

from ..config import MIN_TOKEN_CHARS, Config
from . import heap
from .app import Service, create_app
from .command import TOKEN_ENV, WebError
from .connections import DeadlineGateway, GatedConnection, GatedConnections, Limits, body_seconds
from .live import LiveView
from .photo import WAITING_UPLOADS

log = logging.getLogger(__name__)

__all__ = ["WebError", "WebServer", "resolve_token", "serve", "serve_site"]

# Request threads beside the viewers' and the uploads' (web.max_parallel_uploads being read and
# analysed, photo.WAITING_UPLOADS waiting their turn; more are answered 503): the page, stats,
# health and metrics always find one. No thread waits for a request head
# (streamer/web/connections.py): a thread is busy only while a request is answered.
_REQUEST_THREADS = 4
# An idle keep-alive connection, or a stalled one (a viewer that stopped reading), is dropped after
# this; a single read or write of a request waits at most this long.
_SOCKET_TIMEOUT_S = 30
# The whole request head (request line and headers) arrives within this, or 408: a browser sends it
# in one packet; only a client that trickles it (a "slowloris") takes longer.
_HEAD_TIMEOUT_S = 10.0
# Connections open at once from one client address, and in all. A page with the live stream uses
# ~6; 64 leaves room for a burst of parallel uploads from one script (each waits its turn for
# an upload slot), while one address cannot take every socket and file descriptor of the box.
_CONNECTIONS_PER_CLIENT = 64
_CONNECTIONS_TOTAL = 256
# The listen backlog: connections the kernel completes before cheroot's thread accepts them
# (cheroot's default, 5, leaves a burst of 50 uploads waiting on SYN retries).
_LISTEN_BACKLOG = 128
# A request head larger than this is refused (cheroot: 431) before it is parsed.
_MAX_HEAD_BYTES = 64 * 1024
# A request body arrives within 10 s plus its size at 64 kB/s (a 10 MB photo: 170 s), or 408: a
# slow link still uploads a photo, a client that trickles one byte at a time does not hold a
# request thread and an upload slot for hours.
_BODY_BASE_S = 10.0
_BODY_MIN_BYTES_PER_S = 64 * 1024
# stop(): request threads get this long to finish (a photo being analysed) before their sockets
# are shut; MJPEG streams end at once (Service.close_streams).
_SHUTDOWN_S = 1
# stop(): the serving thread's join.
_JOIN_S = 5.0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(config: Config, host: str) -> Optional[str]:
    """The access token (STREAMER_TOKEN, else web.token), or None on a loopback address without
    one. WebError when a network address has none or the token is too short."""
    token = os.environ.get(TOKEN_ENV) or config.web.token
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise WebError(f"{TOKEN_ENV} has {len(token)} characters; a token needs at least {MIN_TOKEN_CHARS}: "
                       "generate one with: python -c 'import secrets; print(secrets.token_urlsafe())'")
    if token is None and not _is_loopback(host):
        raise WebError(f"refusing to listen on {host} without a token: anyone on that network could watch the "
                       f"camera and use the service; set {TOKEN_ENV} (or web.token, at least {MIN_TOKEN_CHARS} "
                       "characters, e.g. from: python -c 'import secrets; print(secrets.token_urlsafe())'), "
                       "or listen on 127.0.0.1")
    return token


class _Cheroot(wsgi.Server):
    """cheroot's WSGI server, its messages in this module's log (cheroot writes them to stderr), with
    the front door of streamer/web/connections.py: a request thread only for a complete request
    head, connections capped per client address and in total."""

    ConnectionClass = GatedConnection
    max_request_header_size = _MAX_HEAD_BYTES
    _connections: Any  # cheroot's, which its type stubs leave out

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gateway = DeadlineGateway

    @staticmethod
    def body_deadline(length: int) -> float:
        return body_seconds(length, _BODY_BASE_S, _BODY_MIN_BYTES_PER_S)

    def prepare(self) -> None:
        super().prepare()
        self._connections.close()  # cheroot's own manager: replaced before it serves anything
        self._connections = GatedConnections(
            self, Limits(_HEAD_TIMEOUT_S, _CONNECTIONS_PER_CLIENT, _CONNECTIONS_TOTAL))

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        log.log(logging.WARNING if level >= logging.ERROR else logging.DEBUG, "cheroot: %s", msg,
                exc_info=traceback)


class WebServer:
    """The service's application on cheroot in a background thread: listening from construction
    (so a port in use fails before a source starts), ``start()``, ``url``, ``stop()`` (idempotent,
    bounded). A context manager."""

    def __init__(self, service: Service, host: str, port: int) -> None:
        self._service = service
        self._server = _Cheroot((host, port), create_app(service),
                                numthreads=service.config.web.max_viewers + service.config.web.max_parallel_uploads
                                + WAITING_UPLOADS + _REQUEST_THREADS,
                                server_name="streamer", timeout=_SOCKET_TIMEOUT_S, shutdown_timeout=_SHUTDOWN_S,
                                request_queue_size=_LISTEN_BACKLOG)
        try:
            self._server.prepare()
        except OSError as error:
            # cheroot's message ends with the socket's: "... [Errno 98] Address already in use)"
            text = str(error).rstrip(")")
            reason = ("the port is in use (another serve?); pick another with --port" if "Errno 98]" in text
                      else text.rsplit("] ", 1)[-1])
            raise WebError(f"cannot listen on {host}:{port}: {reason}") from None
        self._thread: Optional[threading.Thread] = None
        bound_host, bound_port = str(self._server.bind_addr[0]), int(self._server.bind_addr[1])
        for name in (host, bound_host):
            service.hosts.add(name)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/"

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self._server.serve, name="web-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._service.close_streams()
        self._server.stop()
        if self._thread is not None:
            self._thread.join(_JOIN_S)
            if self._thread.is_alive():
                log.warning("web server thread did not stop within %.0f s", _JOIN_S)
            self._thread = None

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _wait_for_stop() -> None:
    """Block the main thread until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(config: Config, host: str, port: int, options=None, ready=None) -> Optional[dict]:
    """Run the web service until Ctrl-C/SIGTERM, or until the live run stops (a user stop, an
    error: raised as by app.run); after a source's end of input it keeps serving until Ctrl-C.
    ``options``: the app.RunOptions of the live source, or None for photos only. ``ready(url)``
    is called once the server listens. Returns the run's summary (None without a source)."""
    token = resolve_token(config, host)
    heap.limit_arenas()  # before the request threads start: see streamer/web/heap.py
    live = None
    if options is not None:
        live = LiveView(config.web, config.audience, config.classifier.age_groups,
                        pictures=config.output.privacy != "aggregate")
    service = Service(config, token, live)
    if live is None:
        service.photos.warm_up()  # model problems show now, not at the first upload
    with WebServer(service, host, port) as server:
        log.info("serving on %s%s", server.url, " (token required)" if token else "")
        if ready is not None:
            ready(server.url)
        if options is None:
            _wait_for_stop()
            return None
        from ..app import run

        assert live is not None
        summary = run(config, options, sinks=[live])
        if summary.get("stopped_by") == "end of input":
            log.info("source %s ended; still serving photos and its last frame on %s; Ctrl-C to stop",
                     summary.get("source"), server.url)
            _wait_for_stop()
    return summary


def serve_site(config: Config, host: str, port: int, base_options, site_summary, verbosity: int = 0,
               adjust=None, ready=None) -> dict:
    """``serve --config site.yaml``: every camera of the config in its own supervised worker, as
    ``run`` runs them (streamer/site/), and the web service showing them all (the camera page,
    ``/api/<camera>/...``, ``/metrics`` labelled by camera) plus the photo API, until Ctrl-C or
    SIGTERM; when every camera's source has ended it keeps serving their last frames. Returns
    (and writes) the site summary. ``ready(url)``: called once the server answers."""
    from ..site.run import run_site
    from .cameras import camera_views

    token = resolve_token(config, host)
    heap.limit_arenas()
    service = Service(config, token, None)
    server = WebServer(service, host, port)  # listening now: a port in use fails before any camera starts

    def supervisor_ready(supervisor) -> None:
        service.cameras = camera_views(supervisor, config.web)
        server.start()
        log.info("serving on %s (%d cameras)%s", server.url, len(service.cameras), " (token required)" if token else "")
        if ready is not None:
            ready(server.url)

    try:
        summary = run_site(config, base_options, site_summary, verbosity, adjust, supervisor_ready=supervisor_ready)
        if summary["site"]["stopped_by"] == "end of input":
            log.info("every camera's source ended; still serving their last frames on %s; Ctrl-C to stop", server.url)
            _wait_for_stop()
    finally:
        server.stop()
    return summary
