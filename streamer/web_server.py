"""The web service's HTTP side: routes, limits, token, and the server thread (``streamer serve``,
streamer/web.py, is the command). An upload page and JSON API for photos, and, with a source, a
live view of a run (MJPEG stream, latest frame and result, statistics, health, Prometheus metrics).

Why the standard library's ``http.server`` and not Flask + waitress (the original design's
stack): the limits must be enforced before a body is read, with a JSON answer, and waitress
reads every request body whole (to a temporary file past 512 kB) before the application sees
it, and answers its own size limit in plain text; an MJPEG viewer holds one thread for as long as
it watches, which a fixed WSGI thread pool of 4 would give to the first 4 viewers; and the
service costs no dependency and ~10 MB less resident memory on a Pi. What the libraries would
do here is small and comes from the standard library too: ``email`` parses multipart bodies,
``http.cookies`` the login cookie, ``hmac`` compares tokens in constant time.

Threads: the HTTP server runs in a background thread (one short-lived thread per connection, at
most ``_MAX_CONNECTIONS`` at once, each with a socket timeout); the run, when there is one, on the
main thread, so Ctrl-C and SIGTERM stop it exactly as they stop a run. Photos and the live run
each have their own models (the photo analyzer detects at ``detector.photo_max_side_px`` like a
photo run); photo model calls are serialised by a lock.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
import threading
import time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from .config import MIN_TOKEN_CHARS, Config
from .errors import StreamerError
from .web import TOKEN_ENV
from .web_live import LiveView, ViewersFull, metrics_text
from .web_page import login_page, main_page
from .web_photo import PhotoService, UploadError, encode_jpeg, image_from_body

log = logging.getLogger(__name__)

COOKIE_NAME = "streamer_session"
BOUNDARY = "streamerframe"
# Connections served at once (threads); one more gets 503 at once. Viewers, uploads waiting for
# a slot and keep-alive connections all count.
_MAX_CONNECTIONS_EXTRA = 32
# An idle or stalled connection (a viewer that stopped reading, a slow upload) is dropped after this.
_SOCKET_TIMEOUT_S = 30.0
# A request waits this long for an upload slot (web.max_parallel_uploads) before 503: waiting costs
# a thread and a socket, not memory (the body is read once a slot is free).
_UPLOAD_WAIT_S = 120.0
# After a 413 the unread rest of an oversized body is discarded (not kept) up to this many bytes,
# so that the client, still sending, reads the answer instead of a connection reset.
_DRAIN_MAX_BYTES = 64 * 1024 * 1024
# Multipart framing around the image: boundaries, part headers (a long file name).
_MULTIPART_SLACK_BYTES = 64 * 1024


class WebError(StreamerError):
    """The web service cannot start (address in use, no token for a network address, ...)."""


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


class Service:
    """What the request handlers share: config, token, photo analysis, the live view (or None)."""

    def __init__(self, config: Config, token: Optional[str], live: Optional[LiveView]) -> None:
        self.config = config
        self.token = token
        self.live = live
        self.photos = PhotoService(config)
        self.max_body = int(config.web.max_upload_mb * 1024 * 1024)
        self.started_s = time.monotonic()
        # The session cookie holds a value derived from the token, never the token itself.
        self.session = None if token is None else hmac.new(token.encode(), b"streamer session", hashlib.sha256).hexdigest()

    def authorised(self, headers) -> bool:
        if self.token is None:
            return True
        auth = headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        try:
            cookie = SimpleCookie(headers.get("Cookie", ""))
        except CookieError:
            return False
        morsel = cookie.get(COOKIE_NAME)
        return (morsel is not None and self.session is not None
                and hmac.compare_digest(morsel.value.encode(), self.session.encode()))

    def stats(self) -> dict:
        live = self.live
        stats: Dict[str, Any] = {"source": None}
        if live is not None:
            snapshot = live.snapshot()
            info = live.source_info()
            stats = dict(snapshot or {})
            stats["source"] = None if info is None else info.name
            stats["kind"] = None if info is None else info.kind
            stats["size_wh"] = None if info is None else list(info.size_wh)
            stats["run"] = "ended" if live.ended else ("running" if live.running else "starting")
            stats["faces_in_frame"] = live.latest_faces()
        stats["web"] = {
            "viewers": 0 if live is None else live.viewers,
            "stream_frames": 0 if live is None else live.stream_frames,
            "photos": self.photos.photos,
            "uptime_s": round(time.monotonic() - self.started_s, 1),
        }
        return stats


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "streamer"
    sys_version = ""
    timeout = _SOCKET_TIMEOUT_S
    service: Service  # set on the subclass made per server

    # -- plumbing -------------------------------------------------------------------------------

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self._send(status, (json.dumps(data) + "\n").encode(), "application/json", headers)

    def _error(self, status: int, message: str, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self._json(status, {"error": message}, headers)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """http.server's own errors (bad request line, header too long, 501) as JSON too."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._error(code, message or phrase)

    def _path_query(self) -> Tuple[str, dict]:
        parts = urlsplit(self.path)
        return parts.path, parse_qs(parts.query)

    def _discard_body(self, length: int) -> None:
        """Read and drop up to ``length`` bytes (bounded) so the client sees our answer."""
        left = min(length, _DRAIN_MAX_BYTES)
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _content_length(self) -> Tuple[Optional[int], Optional[Tuple[int, str]]]:
        """The declared body length, or the error to answer (411 none, 400 bad, 413 too large)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None, (411, "chunked uploads are not accepted; send a Content-Length (curl and browsers do)")
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None, (411, "a Content-Length header is needed for uploads")
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            return None, (400, f"bad Content-Length {raw[:20]!r}")
        limit = self.service.max_body + _MULTIPART_SLACK_BYTES
        if length > limit:
            return length, (413, f"the upload is {length / 1e6:.1f} MB, above the limit of "
                                 f"{self.service.config.web.max_upload_mb:g} MB (web.max_upload_mb); send a smaller image")
        return length, None

    def _unauthorised(self, path: str) -> None:
        if path == "/" and self.command in ("GET", "HEAD"):
            self._send(401, login_page().encode(), "text/html; charset=utf-8")
            return
        self._error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' or log in at /login",
                    (("WWW-Authenticate", 'Bearer realm="streamer"'),))

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` (curl, for bodies over 1 MB): refuse an unauthorised or oversized
        upload before the client sends its body at all."""
        path, _ = self._path_query()
        if path not in ("/login",) and not self.service.authorised(self.headers):
            self.close_connection = True
            self._unauthorised(path)
            return False
        _, problem = self._content_length()
        if problem is not None:
            self.close_connection = True
            self._error(*problem)
            return False
        return super().handle_expect_100()

    # -- routes ---------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        try:
            self._get()
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception:  # a bug must not show a traceback to the client, nor kill the server
            log.exception("internal error on GET %s", self.path)
            self.close_connection = True
            self._error(500, "internal error; see the server log")

    def do_POST(self) -> None:
        try:
            self._post()
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception:
            log.exception("internal error on POST %s", self.path)
            self.close_connection = True
            self._error(500, "internal error; see the server log")

    def _get(self) -> None:
        path, query = self._path_query()
        service, live = self.service, self.service.live
        if path == "/healthz":
            self._healthz()
            return
        if path == "/login":
            self._send(200, login_page().encode(), "text/html; charset=utf-8")
            return
        if not service.authorised(self.headers):
            self._unauthorised(path)
            return
        if path == "/":
            html = main_page(service.config, live is not None)
            self._send(200, html.encode(), "text/html; charset=utf-8")
        elif path == "/api/stats":
            self._json(200, service.stats())
        elif path == "/metrics":
            text = metrics_text(live.snapshot() if live else None, live,
                                {"photos": service.photos.photos, "photo_faces": service.photos.faces})
            self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path in ("/api/latest.json", "/api/latest.jpg", "/api/stream.mjpeg"):
            if live is None:
                self._error(404, "no live source: start the service with --source to get a live view")
            elif path == "/api/latest.json":
                event = live.latest_event()
                if event is None:
                    self._error(404, "no frame yet; the source is starting")
                else:
                    self._json(200, event)
            elif path == "/api/latest.jpg":
                jpeg = live.latest_jpeg()
                if jpeg is None:
                    self._error(404, "no frame yet (or the run keeps no pictures)")
                else:
                    self._send(200, jpeg, "image/jpeg")
            else:
                self._stream(live)
        else:
            self._error(404, f"no such page: {path}; see / for the page and the API list in README")

    def _healthz(self) -> None:
        live = self.service.live
        body = {"status": "ok", "uptime_s": round(time.monotonic() - self.service.started_s, 1)}
        status = 200
        if live is not None:
            snapshot = live.snapshot()
            up = bool(snapshot.get("source_up", True)) if snapshot else False
            if live.ended:
                body["source"] = "ended"
            elif snapshot is None:
                body["source"], status, body["status"] = "starting", 503, "starting"
            else:
                body["source"] = "up" if up else "reconnecting"
                if not up:
                    status, body["status"] = 503, "source down"
        self._json(status, body)

    def _stream(self, live: LiveView) -> None:
        try:
            slot = live.viewer()
            next_jpeg = slot.__enter__()
        except ViewersFull:
            self._error(503, f"{self.service.config.web.max_viewers} viewers already watch (web.max_viewers); "
                             "try again later or use /api/latest.jpg", (("Retry-After", "5"),))
            return
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            while True:
                jpeg = next_jpeg()
                if jpeg is None:
                    break  # the run ended
                if not jpeg:
                    continue  # no frame yet
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg + b"\r\n"
                )
                self.wfile.flush()
        except (ConnectionError, socket.timeout, OSError):
            pass  # the viewer went away: its slot is freed below, its thread ends here
        finally:
            slot.__exit__(None, None, None)

    def _post(self) -> None:
        path, query = self._path_query()
        service = self.service
        if path == "/login":
            self._login()
            return
        if not service.authorised(self.headers):
            self.close_connection = True
            self._unauthorised(path)
            length, problem = self._content_length()
            if length and problem is None:
                self._discard_body(length)  # so that the client, still sending, reads the 401
            return
        if path != "/api/analyze":
            self.close_connection = True
            self._error(404, f"no such endpoint: POST {path}; photos go to POST /api/analyze")
            length, problem = self._content_length()
            if length and problem is None:
                self._discard_body(length)
            return
        length, problem = self._content_length()
        if problem is not None:
            self.close_connection = True
            self._error(*problem)
            if length:
                self._discard_body(length)
            return
        if not service.photos.slots.acquire(timeout=_UPLOAD_WAIT_S):
            self.close_connection = True
            self._error(503, "too many photos in progress; try again", (("Retry-After", "2"),))
            return
        assert length is not None  # _content_length gives a length or a problem
        try:
            body = self.rfile.read(length)
            if len(body) < length:
                self.close_connection = True
                self._error(400, f"the body ended after {len(body)} of {length} bytes; send the whole file")
                return
            try:
                data = image_from_body(self.headers.get("Content-Type", ""), body)
                del body
                if len(data) > service.max_body:
                    raise UploadError(413, f"the image is {len(data) / 1e6:.1f} MB, above the limit of "
                                           f"{service.config.web.max_upload_mb:g} MB (web.max_upload_mb)")
                result = service.photos.analyse(data)
            except UploadError as error:
                self._error(error.status, str(error))
                return
        finally:
            service.photos.slots.release()
        wants_jpeg = query.get("format", [""])[0] == "jpeg" or (
            "image/jpeg" in self.headers.get("Accept", "") and "application/json" not in self.headers.get("Accept", "")
        )
        if wants_jpeg:
            self._send(200, encode_jpeg(result.annotated), "image/jpeg")
            return
        answer = result.to_json()
        if query.get("image", [""])[0] == "1":  # the page: the annotated image in the same answer
            import base64

            answer["image_jpeg_base64"] = base64.b64encode(encode_jpeg(result.annotated)).decode("ascii")
        self._json(200, answer)

    def _login(self) -> None:
        service = self.service
        length, problem = self._content_length()
        if problem is not None or length is None or length > 4096:
            self.close_connection = True
            self._error(*(problem or (413, "login form too large")))
            return
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        given = form.get("token", [""])[0]
        if service.token is None:
            self._send(303, b"", "text/plain", (("Location", "/"),))
            return
        if not hmac.compare_digest(given.encode(), service.token.encode()):
            self._send(401, login_page("wrong token").encode(), "text/html; charset=utf-8")
            return
        cookie = f"{COOKIE_NAME}={service.session}; Path=/; HttpOnly; SameSite=Strict"
        self._send(303, b"", "text/plain", (("Location", "/"), ("Set-Cookie", cookie)))


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once (one more is answered 503 and
    closed at once: a flood of connections cannot grow threads and memory without bound)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, handler, max_connections: int) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            body = b'{"error": "too many connections; try again"}\n'
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: 2\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class WebServer:
    """The HTTP server in a background thread: ``start()``, ``url``, ``stop()`` (idempotent,
    bounded). A context manager."""

    def __init__(self, service: Service, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"service": service})
        max_connections = service.config.web.max_viewers + _MAX_CONNECTIONS_EXTRA
        try:
            self._server = _Server((host, port), handler, max_connections)
        except OSError as error:
            reason = "the port is in use (another serve?); pick another with --port" if error.errno == 98 else (
                error.strerror or str(error))
            raise WebError(f"cannot listen on {host}:{port}: {reason}") from None
        self._thread: Optional[threading.Thread] = None
        bound_host, bound_port = str(self._server.server_address[0]), int(self._server.server_address[1])
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/"

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="web-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._server.server_close()

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
        from .app import run

        assert live is not None
        summary = run(config, options, sinks=[live])
        if summary.get("stopped_by") == "end of input":
            log.info("source %s ended; still serving photos and its last frame on %s; Ctrl-C to stop",
                     summary.get("source"), server.url)
            _wait_for_stop()
    return summary
