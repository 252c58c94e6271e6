"""The web service's Flask application: routes, the token check, limits and JSON errors (the
``web`` extra; streamer/web/server.py serves it with cheroot, streamer/web/command.py is the command).
The pages are Jinja templates in streamer/templates/ (inline CSS and JavaScript, nothing fetched
from elsewhere: the page must work on a network without internet).

Flask and Werkzeug do the HTTP work: routing, query and ``Accept`` parsing, multipart forms, the
body limit (``MAX_CONTENT_LENGTH``: a body declared too large is refused from its Content-Length,
unread), cookies, JSON answers and the MJPEG stream (a generator). What stays here is the
service's own: which photos are accepted (streamer/web/photo.py), the shared live view
(streamer/web/live.py), the token, and every error as JSON ``{"error": "..."}`` naming the
problem and the fix, never a stack trace.

Photos and the live run each have their own models (the photo analyzer detects at
``detector.photo_max_side_px`` like a photo run); photo model calls are serialised by a lock.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import logging
import time
from typing import IO, Any, Dict, Iterator, List, Mapping, Optional, Tuple

from flask import Flask, Request, Response, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from ..config import Config
from .cameras import CameraView
from .hosts import HostRule, cross_site_refusal
from .live import LiveView, ViewersFull, metrics_text
from .photo import PhotoService, UploadError, encode_jpeg

log = logging.getLogger(__name__)

COOKIE_NAME = "streamer_session"
BOUNDARY = "streamerframe"
# Paths anyone may ask for: a supervisor's health check has no token, and the login form gives one.
OPEN_PATHS = frozenset({"/healthz", "/login", "/favicon.svg", "/favicon.ico"})
# The tab's icon: a face in the page's accent colour (inline: nothing is served from disk).
FAVICON_SVG = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><rect width='32' height='32' rx='6' "
               "fill='#0072b2'/><circle cx='16' cy='16' r='10' fill='none' stroke='#fff' stroke-width='2.5'/>"
               "<circle cx='12.5' cy='14' r='1.6' fill='#fff'/><circle cx='19.5' cy='14' r='1.6' fill='#fff'/>"
               "<path d='M11.5 19.5q4.5 3.5 9 0' fill='none' stroke='#fff' stroke-width='2' stroke-linecap='round'/></svg>")
# A request waits this long for an upload slot (web.max_parallel_uploads) before 503: waiting costs
# a thread and a socket, not memory (the body is read once a slot is free).
_UPLOAD_WAIT_S = 120.0
# After a 413 the unread rest of an oversized body is read and dropped up to this many bytes (see
# too_large); past it the client sees the connection close.
_DISCARD_MAX_BYTES = 64 * 1024 * 1024
# Multipart framing around the image: boundaries, part headers (a long file name).
_MULTIPART_SLACK_BYTES = 64 * 1024
_PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp")


class Service:
    """What the routes share: config, token, photo analysis, the live view (or None)."""

    def __init__(self, config: Config, token: Optional[str], live: Optional[LiveView],
                 cameras: Optional[Dict[str, CameraView]] = None) -> None:
        """``live``: the one source's view (``serve --source``); ``cameras``: each camera's of a
        site (``serve --config site.yaml``), which may be filled in once its supervisor exists."""
        self.config = config
        self.token = token
        self.live = live
        self.cameras: Dict[str, CameraView] = dict(cameras or {})
        self.photos = PhotoService(config)
        self.max_body = int(config.web.max_upload_mb * 1024 * 1024)
        self.started_s = time.monotonic()
        # Without a token only this machine's names pass; with one, web.allowed_hosts when set.
        self.hosts = HostRule(config.web.allowed_hosts, enforced=token is None or bool(config.web.allowed_hosts))
        # The session cookie holds a value derived from the token, never the token itself.
        self.session = None if token is None else hmac.new(token.encode(), b"streamer session", hashlib.sha256).hexdigest()

    def authorised(self, bearer: Optional[str], cookie: Optional[str]) -> bool:
        """Whether a request with this bearer token and session cookie may pass (constant-time
        comparisons); always without a token."""
        if self.token is None:
            return True
        if bearer is not None and hmac.compare_digest(bearer.strip().encode(), self.token.encode()):
            return True
        return cookie is not None and self.session is not None and hmac.compare_digest(cookie.encode(),
                                                                                         self.session.encode())

    def close_streams(self) -> None:
        """End every MJPEG stream now (the server is stopping)."""
        for view in self.views():
            view.close_streams()

    def views(self) -> List[Any]:
        """Every live view: the one source's, or each camera's."""
        return list(self.cameras.values()) if self.cameras else [] if self.live is None else [self.live]

    def stats(self, view: Any = None) -> dict:
        """``/api/stats``: the live view's run figures (``view``, else the one source's), or with a
        site's cameras and no ``view``, each camera's card and the site's people now."""
        if view is None and self.cameras:
            cards = {name: camera.card() for name, camera in self.cameras.items()}
            counted = [card["people_in_view"] for card in cards.values() if card["people_in_view"] is not None]
            return {
                "cameras": cards,
                "site": {"people_in_view": sum(counted), "cameras": len(cards),
                         "cameras_up": sum(1 for card in cards.values() if card["status"] == "up")},
                "web": self._web_stats(sum(camera.viewers for camera in self.cameras.values()),
                                       sum(camera.stream_frames for camera in self.cameras.values())),
            }
        live = self.live if view is None else view
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
            if isinstance(live, CameraView):
                stats.update(camera=live.name, status=live.status(), restarts=live.restarts)
        stats["web"] = self._web_stats(0 if live is None else live.viewers, 0 if live is None else live.stream_frames)
        return stats

    def _web_stats(self, viewers: int, stream_frames: int) -> dict:
        return {"viewers": viewers, "stream_frames": stream_frames, "photos": self.photos.photos,
                "uptime_s": round(time.monotonic() - self.started_s, 1)}

    def health(self, view: Any = None) -> "tuple[dict, int]":
        """``/healthz``'s answer and status: 503 while the source starts or reconnects. A site's
        (no ``view``): 200 while any camera delivers, each camera's state in ``cameras``; a
        camera's own (``/api/<camera>/healthz``): 503 unless it is up (or ended)."""
        body: Dict[str, Any] = {"status": "ok", "uptime_s": round(time.monotonic() - self.started_s, 1)}
        if view is None and self.cameras:
            states = {name: camera.status() for name, camera in self.cameras.items()}
            body["cameras"] = states
            if not any(state in ("up", "ended") for state in states.values()):
                body["status"] = "starting" if all(state == "starting" for state in states.values()) else "down"
                return body, 503
            return body, 200
        live = self.live if view is None else view
        status = 200
        if isinstance(live, CameraView) and live.status() == "restarting":
            body["source"], body["status"] = "restarting", "worker down"
            return body, 503
        if live is not None:
            snapshot = live.snapshot()
            if live.ended:
                body["source"] = "ended"
            elif snapshot is None:
                body["source"], status, body["status"] = "starting", 503, "starting"
            elif snapshot.get("source_up", True):
                body["source"] = "up"
            else:
                body["source"], status, body["status"] = "reconnecting", 503, "source down"
        return body, status


class _Request(Request):
    """Uploaded files stay in memory (bounded by MAX_CONTENT_LENGTH) instead of Werkzeug's
    temporary files past 500 kB: nothing of an upload is written to a board's SD card."""

    def _get_file_stream(self, total_content_length: Optional[int], content_type: Optional[str],
                         filename: Optional[str] = None, content_length: Optional[int] = None) -> IO[bytes]:
        return io.BytesIO()


def _error(status: int, message: str, headers: Optional[Mapping[str, str]] = None) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _upload_bytes(service: Service) -> bytes:
    """The image bytes of the request: the ``image`` file of a ``multipart/form-data`` body, or a
    raw body with an image content type. UploadError 400/413/415 otherwise."""
    if request.mimetype == "multipart/form-data":
        if "boundary" not in request.mimetype_params:
            raise UploadError(400, "a multipart/form-data body without a boundary; send it as a browser form does")
        upload = request.files.get("image")
        if upload is None:
            raise UploadError(400, "the form has no file field named 'image'; send the photo as the 'image' field")
        data = upload.read()
    elif request.mimetype.startswith("image/") or request.mimetype == "application/octet-stream":
        data = request.get_data(cache=False)
    else:
        raise UploadError(415, f"Content-Type '{request.mimetype or 'none'}' is neither multipart/form-data nor an "
                               f"image type; send a form with an 'image' field or a raw {', '.join(_PHOTO_TYPES)} body")
    if len(data) > service.max_body:
        raise UploadError(413, f"the image is {len(data) / 1e6:.1f} MB, above the limit of "
                               f"{service.config.web.max_upload_mb:g} MB (web.max_upload_mb)")
    return data


def _answer_then_discard(body: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    """The answer goes out first (cheroot sends each part at once); then the rest of the body the
    client is still sending is read and dropped, up to a bound, so that a client which sends
    everything before it reads (curl without 100-continue, Python's http.client) gets this answer
    instead of a connection reset. The connection is closed after it."""
    yield body
    left = _DISCARD_MAX_BYTES
    with contextlib.suppress(OSError, ValueError):
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)


def create_app(service: Service) -> Flask:
    """The Flask application of ``service``: the page, the photo API and, with a live view, its
    stream, latest frame, statistics, health and metrics (README's API table)."""
    app = Flask(__name__, static_folder=None)  # nothing is served from disk
    app.request_class = _Request
    app.config["MAX_CONTENT_LENGTH"] = service.max_body + _MULTIPART_SLACK_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]  # README's and the events' key order
    web = service.config.web

    @app.before_request
    def guard() -> Optional[Response]:
        # Every body is bounded first, whatever the route: cheroot reads an unread body whole to keep
        # a connection alive after the answer, so an unread one must be small (or answered 413, which
        # closes the connection instead).
        if (request.content_length or 0) > app.config["MAX_CONTENT_LENGTH"]:
            raise RequestEntityTooLarge()
        refusal = service.hosts.refusal(request.headers.get("Host")) or cross_site_refusal(
            request.method, request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"),
            request.headers.get("Host"))
        if refusal is not None:
            log.warning("refused %s %s: %s", request.method, request.path, refusal)
            return _error(403, refusal)
        if request.path in OPEN_PATHS:
            return None
        auth = request.authorization
        bearer = auth.token if auth is not None and auth.type == "bearer" else None
        if service.authorised(bearer, request.cookies.get(COOKIE_NAME)):
            return None
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return Response(render_template("login.html"), 401, mimetype="text/html")
        return _error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' or log in at /login",
                      {"WWW-Authenticate": 'Bearer realm="streamer"'})

    @app.after_request
    def no_caching(response: Response) -> Response:
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # -- errors: all JSON ----------------------------------------------------------------------------

    @app.errorhandler(UploadError)
    def bad_upload(error: UploadError) -> Response:
        return _error(error.status, str(error))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> Response:
        length = request.content_length
        size = "" if length is None else f" is {length / 1e6:.1f} MB,"
        body = _error(413, f"the upload{size} above the limit of {web.max_upload_mb:g} MB (web.max_upload_mb); "
                           "send a smaller image").get_data()
        return Response(_answer_then_discard(body, request.environ["wsgi.input"]), 413, mimetype="application/json",
                        headers={"Content-Length": str(len(body))})

    @app.errorhandler(NotFound)
    def not_found(error: NotFound) -> Response:
        if request.method == "POST":
            return _error(404, f"no such endpoint: POST {request.path}; photos go to POST /api/analyze")
        return _error(404, f"no such page: {request.path}; see / for the page and the API list in README")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        return _error(error.code or 500, f"{error.name}: {error.description}", headers)

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.path, exc_info=error)
        return _error(500, "internal error; see the server log")

    # -- the page and the login -----------------------------------------------------------------------

    @app.get("/")
    def page() -> str:
        cameras = [{"name": name, "pictures": view.pictures} for name, view in service.cameras.items()]
        return render_template("page.html", live=service.live is not None, cameras=cameras,
                               live_pictures=service.live is not None and service.live.pictures,
                               pictures=service.photos.pictures,
                               anonymize=service.photos.anonymize, max_bytes=service.max_body,
                               max_upload_mb=f"{web.max_upload_mb:g}", max_image_mp=f"{web.max_image_mp:g}")

    @app.get("/favicon.svg")
    @app.get("/favicon.ico")  # asked for by browsers whatever the page says
    def favicon() -> Response:
        response = Response(FAVICON_SVG, mimetype="image/svg+xml")
        response.headers["Cache-Control"] = "max-age=86400"
        return response

    @app.get("/login")
    def login_form() -> str:
        return render_template("login.html")

    @app.post("/login")
    def login() -> ResponseReturnValue:
        if service.token is None or service.session is None:
            return redirect("/", 303)
        if not hmac.compare_digest(request.form.get("token", "").encode(), service.token.encode()):
            return Response(render_template("login.html", problem="wrong token"), 401, mimetype="text/html")
        response = redirect("/", 303)
        response.set_cookie(COOKIE_NAME, service.session, path="/", httponly=True, samesite="Strict")
        return response

    # -- photos ---------------------------------------------------------------------------------------

    @app.post("/api/analyze")
    def analyze() -> Response:
        best = request.accept_mimetypes.best_match(("application/json", "image/jpeg"))
        as_jpeg = request.args.get("format") == "jpeg" or best == "image/jpeg"
        with_image = request.args.get("image") == "1"  # the page: the annotated image in the same answer
        if (as_jpeg or with_image) and not service.photos.pictures:
            # Refused before the upload is read: the service was started to keep no pictures.
            body = _error(403, "this service runs with --privacy aggregate (output.privacy): it returns no "
                               "pictures, only the faces found; ask for JSON (no format=jpeg, no image=1)").get_data()
            return Response(_answer_then_discard(body, request.environ["wsgi.input"]), 403,
                            mimetype="application/json",
                            headers={"Content-Length": str(len(body)), "Connection": "close"})
        if not service.photos.turns.enter(_UPLOAD_WAIT_S):
            body = _error(503, "too many photos in progress; try again").get_data()
            return Response(_answer_then_discard(body, request.environ["wsgi.input"]), 503,
                            mimetype="application/json",
                            headers={"Content-Length": str(len(body)), "Retry-After": "2", "Connection": "close"})
        try:
            result = service.photos.analyse(_upload_bytes(service))
        finally:
            service.photos.turns.leave()
        answer = result.to_json()
        if as_jpeg or with_image:
            assert result.annotated is not None  # the service keeps pictures (checked above)
            jpeg = encode_jpeg(result.annotated)
            if as_jpeg:
                return Response(jpeg, mimetype="image/jpeg")
            answer["image_jpeg_base64"] = base64.b64encode(jpeg).decode("ascii")
        return jsonify(answer)

    # -- the live view ----------------------------------------------------------------------------
    # Each route twice: /api/<name> for the one source (serve --source), /api/<camera>/<name> for a
    # camera of a site (serve --config site.yaml).

    class _NoView(Exception):
        def __init__(self, response: Response) -> None:
            self.response = response

    @app.errorhandler(_NoView)
    def no_view(error: "_NoView") -> Response:
        return error.response

    def view_of(camera: Optional[str]) -> Any:
        """The live view a request asks for; _NoView (404, naming what there is) when none."""
        if camera is None:
            if service.cameras:
                raise _NoView(_error(404, f"this service shows {len(service.cameras)} cameras; ask "
                                          f"/api/<camera>/{request.path.rsplit('/', 1)[-1]} (cameras: "
                                          f"{', '.join(service.cameras)}), or /api/stats for all"))
            if service.live is None:
                raise _NoView(_error(404, "no live source: start the service with --source (or a config with "
                                          "cameras) to get a live view"))
            return service.live
        view = service.cameras.get(camera)
        if view is None:
            known = ", ".join(service.cameras) if service.cameras else "none (start the service with a config with cameras)"
            raise _NoView(_error(404, f"no camera named '{camera}'; cameras: {known}"))
        return view

    def picture_view(camera: Optional[str]) -> Any:
        view = view_of(camera)
        if not view.pictures:
            if camera is None:
                raise _NoView(_error(403, "this service runs with --privacy aggregate (output.privacy): it keeps "
                                          "no pictures; /api/latest.json and /api/stats have the counts"))
            raise _NoView(_error(403, f"camera {camera} runs with aggregate privacy (output.privacy): it keeps no "
                                      f"pictures; /api/{camera}/latest.json and /api/{camera}/stats have the counts"))
        return view

    @app.get("/healthz")
    def healthz() -> "tuple[Response, int]":
        body, status = service.health()
        return jsonify(body), status

    @app.get("/api/<camera>/healthz")
    def camera_healthz(camera: str) -> "tuple[Response, int]":
        body, status = service.health(view_of(camera))
        return jsonify(body), status

    @app.get("/api/stats")
    def stats() -> Response:
        return jsonify(service.stats())

    @app.get("/api/<camera>/stats")
    def camera_stats(camera: str) -> Response:
        return jsonify(service.stats(view_of(camera)))

    @app.get("/metrics")
    def metrics() -> Response:
        views: List[Tuple[Dict[str, str], Any]] = (
            [({"camera": name}, view) for name, view in service.cameras.items()] if service.cameras
            else [] if service.live is None else [({}, service.live)])
        text = metrics_text(views, {"photos": service.photos.photos, "photo_faces": service.photos.faces})
        return Response(text, content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/api/latest.json")
    @app.get("/api/<camera>/latest.json")
    def latest_json(camera: Optional[str] = None) -> Response:
        event = view_of(camera).latest_event()
        if event is None:
            return _error(404, "no frame yet; the source is starting")
        return jsonify(event)

    @app.get("/api/latest.jpg")
    @app.get("/api/<camera>/latest.jpg")
    def latest_jpg(camera: Optional[str] = None) -> Response:
        jpeg = picture_view(camera).latest_jpeg()
        if jpeg is None:
            return _error(404, "no frame yet; the source is starting")
        return Response(jpeg, mimetype="image/jpeg")

    @app.get("/api/stream.mjpeg")
    @app.get("/api/<camera>/stream.mjpeg")
    def stream(camera: Optional[str] = None) -> Response:
        view = picture_view(camera)
        try:
            viewer = view.open_viewer()
        except ViewersFull:
            return _error(503, f"{web.max_viewers} viewers already watch (web.max_viewers); try again later or "
                               "use latest.jpg", {"Retry-After": "5"})

        def parts():
            for jpeg in viewer.frames():
                yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                       + jpeg + b"\r\n")

        response = Response(parts(), content_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        # The server closes the response when the viewer leaves (a failed send), the run ends or it
        # stops; also for a HEAD, whose generator never starts.
        response.call_on_close(viewer.close)
        return response

    return app
