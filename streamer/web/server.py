"""The web service's server: the token rule, cheroot serving the Flask application
(streamer/web_app.py) from a background thread, and ``serve()``, which runs it beside a live
source until Ctrl-C or SIGTERM (``streamer serve``, streamer/web.py, is the command).

Why cheroot (CherryPy's threaded pure-Python WSGI server) and not waitress: waitress reads every
request body whole before the application is called and answers its own size limit in plain
text, so an oversized upload could not get the JSON 413 before it is read; cheroot hands the
application the socket's stream, so Flask's ``MAX_CONTENT_LENGTH`` answers from the
Content-Length without reading the body. Both are pure Python (any board), both have a fixed pool
of request threads; cheroot keeps idle keep-alive connections out of it (a selector).

Threads: cheroot's pool of ``web.max_viewers`` + ``_REQUEST_THREADS`` (each MJPEG viewer holds one
for as long as it watches; requests beyond the pool wait at the socket for a free thread); the
run, when there is one, on the main thread, so Ctrl-C and SIGTERM stop it exactly as they stop a
run.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
from typing import Optional

from cheroot import wsgi

from ..config import MIN_TOKEN_CHARS, Config
from .app import Service, create_app
from .command import TOKEN_ENV, WebError
from .live import LiveView

log = logging.getLogger(__name__)

__all__ = ["WebError", "WebServer", "resolve_token", "serve"]

# Request threads beside the viewers': photos (web.max_parallel_uploads decoding, more waiting
# their turn), the page, stats, health and metrics.
_REQUEST_THREADS = 10
# An idle keep-alive connection, or a stalled one (a viewer that stopped reading, a slow upload),
# is dropped after this.
_SOCKET_TIMEOUT_S = 30
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
    """cheroot's WSGI server, its messages in this module's log (cheroot writes them to stderr)."""

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
                                numthreads=service.config.web.max_viewers + _REQUEST_THREADS,
                                server_name="streamer", timeout=_SOCKET_TIMEOUT_S, shutdown_timeout=_SHUTDOWN_S)
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
    live = LiveView(config.web) if options is not None else None
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
