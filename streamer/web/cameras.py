"""The cameras of a site in the web service: ``serve --config site.yaml`` runs every camera in its
own supervised worker (streamer/site/) and shows them all. A ``CameraView`` is one camera as the
routes see it: the same questions a ``LiveView`` answers (figures, latest frame, MJPEG viewers),
answered from what the camera's worker relays to the supervisor (streamer/site/relay.py) instead
of from a run in this process.

Pictures are asked for, not pushed: a stream viewer moves the camera's ``pictures_until`` a few
seconds ahead (its worker encodes at the stream's rate while it is ahead), a ``latest.jpg``
request (the page's stills) its ``stills_until`` (a still a second), so a site nobody watches
encodes nothing and the page's cards cost one encode a second each. A camera in aggregate
privacy never sends one.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, Dict, Optional, Tuple

from ..config import WebConfig
from ..site.relay import Feed, Relay
from ..site.supervisor import CameraState, Supervisor, camera_status
from .live import Viewer, ViewersFull

# A picture is asked for this far ahead of each request or viewer's wait.
_WANT_S = 3.0
# latest.jpg: a JPEG older than this is stale (the worker stopped encoding when nobody watched;
# while stills are asked for it makes one a second): the request waits at most _FRESH_WAIT_S for
# a new one.
_STALE_S = 2.0
_FRESH_WAIT_S = 1.5
# A viewer that saw no new frame for this long is sent the last one again (as LiveView does).
_RESEND_S = 5.0


class _AudienceFigures:
    """The worker's audience snapshot, read as ``AudienceCounts.snapshot()`` is (for /metrics)."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed

    def snapshot(self) -> Dict[str, Any]:
        figures = self._feed.figures or {}
        return figures.get("audience") or {"zones": {}, "visits": [], "crossings": []}


class CameraView:
    """One camera of the site for the HTTP threads (every method may be called from any of them)."""

    def __init__(self, name: str, state: CameraState, relay: Relay, cfg: WebConfig) -> None:
        self.name = name
        self._state = state
        self._relay = relay
        self._feed = relay.feeds[name]
        self._cfg = cfg
        self._lock = threading.Lock()
        self._viewers = 0
        self._streams_closed = False
        config = state.job.config
        self.pictures = config is None or config.output.privacy != "aggregate"
        has_audience = config is not None and bool(config.audience.zones or config.audience.lines)
        self.audience = _AudienceFigures(self._feed) if has_audience else None

    # -- state ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Its worker runs now."""
        return self._state.process is not None

    @property
    def ended(self) -> bool:
        """Its run ended by itself (a file played to its end): not restarted."""
        return self._state.finished

    @property
    def restarts(self) -> int:
        return self._state.restarts

    def status(self) -> str:
        """As ``supervisor.camera_status``: up, reconnecting, starting, restarting or ended."""
        return camera_status(self._state, self._feed)

    @property
    def viewers(self) -> int:
        return self._viewers

    @property
    def stream_frames(self) -> int:
        return self._feed.jpeg_seq

    @property
    def people_seen(self) -> int:
        return int((self._feed.figures or {}).get("people_seen", 0))

    def snapshot(self) -> Optional[Dict]:
        figures = self._feed.figures
        return None if figures is None else figures.get("snapshot")

    def source_info(self):
        source = (self._feed.figures or {}).get("source")
        return None if source is None else SimpleNamespace(**source)

    def latest_event(self) -> Optional[dict]:
        return (self._feed.figures or {}).get("event")

    def latest_faces(self) -> int:
        return int((self._feed.figures or {}).get("faces_in_frame", 0))

    def people_now(self) -> Optional[int]:
        """People in view now (None while its worker does not run or has told nothing yet)."""
        if not self.running or self.status() not in ("up", "reconnecting"):
            return None
        return self._feed.people()

    # -- pictures ---------------------------------------------------------------------------------

    def latest_jpeg(self) -> Optional[bytes]:
        """The camera's latest picture (stream-sized), fresh when its worker runs: asking starts
        the worker encoding, so a first request after a quiet time waits briefly for one."""
        if not self.pictures:
            return None
        self._relay.want_pictures(self.name, _WANT_S, stream=False)
        feed = self._feed
        with feed.changed:
            if self.running and time.monotonic() - feed.jpeg_s > _STALE_S:
                seq = feed.jpeg_seq
                feed.changed.wait_for(lambda: feed.jpeg_seq != seq or not self.running, timeout=_FRESH_WAIT_S)
            return feed.jpeg

    def open_viewer(self) -> Viewer:
        """A viewer slot, until its ``close()``. ViewersFull when all ``web.max_viewers`` of this
        camera are taken."""
        with self._lock:
            if self._viewers >= self._cfg.max_viewers:
                raise ViewersFull()
            self._viewers += 1
        self._relay.want_pictures(self.name, _WANT_S)
        return Viewer(self.next_jpeg, self._leave, self.final_jpeg)

    def next_jpeg(self, last_seq: int) -> Tuple[Optional[bytes], int]:
        """As ``LiveView.next_jpeg``: the newest JPEG once newer than ``last_seq`` (or the same
        after ``_RESEND_S``; b"" before the first), None once the camera ended or streams close.
        A worker restart is not an end: the viewer waits for the new worker's frames."""
        feed = self._feed
        deadline = time.monotonic() + _RESEND_S
        with feed.changed:
            while True:
                self._relay.want_pictures(self.name, _WANT_S)
                if self._streams_closed or self.ended:
                    return None, last_seq
                left = deadline - time.monotonic()
                if feed.jpeg_seq != last_seq or left <= 0:
                    return (feed.jpeg if feed.jpeg is not None else b""), feed.jpeg_seq
                feed.changed.wait(min(left, 1.0))

    def final_jpeg(self) -> Optional[bytes]:
        """The last picture once the camera ended (None while it runs or the server stops)."""
        if not self.ended or self._streams_closed:
            return None
        return self._feed.jpeg

    def close_streams(self) -> None:
        feed = self._feed
        with feed.changed:
            self._streams_closed = True
            feed.changed.notify_all()

    def _leave(self) -> None:
        with self._lock:
            self._viewers -= 1

    # -- for the page and the API -----------------------------------------------------------------

    def card(self) -> Dict[str, Any]:
        """The camera's line in ``/api/stats``: its state, people now, fps and counters."""
        snapshot = self.snapshot() or {}
        info = self.source_info()
        return {
            "status": self.status(),
            "people_in_view": self.people_now(),
            "fps": snapshot.get("fps"),
            "frames_out": snapshot.get("frames_out"),
            "dropped": snapshot.get("dropped"),
            "reconnects": snapshot.get("reconnects"),
            "restarts": self.restarts,
            "restart_reasons": list(self._state.reasons[-3:]),
            "source": None if info is None else info.name,
            "kind": None if info is None else info.kind,
            "size_wh": None if info is None else info.size_wh,
            "pictures": self.pictures,
            "viewers": self.viewers,
        }


def camera_views(supervisor: Supervisor, cfg: WebConfig) -> Dict[str, CameraView]:
    """A view per camera of ``supervisor``, in the config's order."""
    return {name: CameraView(name, state, supervisor.relay, cfg) for name, state in supervisor.cameras.items()}
