"""What a camera's worker tells the supervisor besides its heartbeat: its live figures (people in
view, fps, the latest frame's faces) about once a second, and its annotated picture while someone
asks for it. The web service shows every camera from this (streamer/web/cameras.py); the site's
people count on MQTT adds it up (streamer/site/mqtt.py).

One one-way pipe per worker run (a new one at each restart: a worker killed in the middle of a
send leaves only its own pipe broken). The worker's side is ``RelaySink``, a sink of its run with
a sender thread: the frame loop only stores references, and a parent that reads slowly makes the
sender block, never the run. The supervisor's side is ``Relay``: one thread that reads every
camera's pipe and keeps each camera's latest ``Feed``.

Pictures cost an encode each: the worker encodes one (scaled to ``web.stream_max_side_px``) at most
``web.stream_fps`` a second while the supervisor's ``pictures_until`` (shared memory, a
``time.monotonic()`` time) is ahead of the clock (someone watches the stream), one a second while
only its ``stills_until`` is (the page's stills, ``latest.jpg``), none otherwise, and never in
aggregate privacy.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..audience.live import AudienceCounts
from ..config import Config
from ..outputs.sinks import Sink
from ..types import FrameResult, age_group_labels

log = logging.getLogger(__name__)

# Figures are sent this often when no picture is wanted.
FIGURES_PERIOD_S = 1.0
# Pictures are encoded this often while only stills are wanted (no stream viewer).
STILL_PERIOD_S = 1.0
# The sender's join at close().
_JOIN_S = 2.0


class RelaySink(Sink):
    """The worker's side: keeps the newest frame and result, and a sender thread sends the figures
    (and a JPEG when wanted) through ``connection``. ``pictures_until`` and ``stills_until``: the
    shared values the supervisor moves ahead while the stream, or only stills, are wanted."""

    def __init__(self, config: Config, connection: Connection, pictures_until: Any,
                 stills_until: Any = None) -> None:
        self._connection = connection
        self._pictures_until = pictures_until
        self._stills_until = stills_until
        self._web = config.web
        self._pictures = config.output.privacy != "aggregate"
        audience = config.audience
        self._audience: Optional[AudienceCounts] = None
        if audience.zones or audience.lines:
            self._audience = AudienceCounts(list(audience.zones), list(audience.lines),
                                            age_group_labels(config.classifier.age_groups))
        self._run: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._result: Optional[FrameResult] = None
        self._frame: Optional[np.ndarray] = None
        self._frame_seq = 0
        self._sent_seq = 0
        self._jpeg_s = 0.0
        self._people_seen = 0
        self._thread: Optional[threading.Thread] = None
        self._broken = False

    # -- the run's side -------------------------------------------------------------------------

    def start(self, run) -> None:
        self._run = run
        self._thread = threading.Thread(target=self._send_loop, name="relay", daemon=True)
        self._thread.start()

    def write(self, result: FrameResult, annotated: Optional[np.ndarray]) -> None:
        with self._lock:
            self._result = result
            self._frame = annotated if self._pictures else None
            self._frame_seq += 1

    def write_records(self, records: Sequence[dict]) -> None:
        with self._lock:
            self._people_seen += sum(1 for record in records if record.get("event") == "new")
            if self._audience is not None:
                self._audience.observe(records)

    def close(self) -> None:
        """Stop the sender (bounded) and send the last figures and picture; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_JOIN_S)
            if self._thread.is_alive():  # blocked in a send: the supervisor does not read
                self._broken = True
        self._send(final=True)
        self._connection.close()

    # -- the sender -----------------------------------------------------------------------------

    def _picture_period(self) -> Optional[float]:
        """Seconds between pictures now: the stream's while it is watched, STILL_PERIOD_S while
        only stills are asked for; None: no picture wanted."""
        if not self._pictures:
            return None
        now = time.monotonic()
        if self._pictures_until.value > now:
            return 1.0 / self._web.stream_fps
        if self._stills_until is not None and self._stills_until.value > now:
            return STILL_PERIOD_S
        return None

    def _send_loop(self) -> None:
        # Ticks at the stream's rate, so a wish for pictures is seen within a tick; a tick sends
        # when a picture or the figures are due.
        tick_s = 1.0 / self._web.stream_fps
        last_s = 0.0
        while not self._broken and not self._stop.wait(tick_s):
            now = time.monotonic()
            period = self._picture_period()
            picture = period is not None and now - self._jpeg_s >= period - tick_s / 2
            if picture or now - last_s >= FIGURES_PERIOD_S:
                self._send(picture=picture)
                last_s = now

    def _send(self, final: bool = False, picture: bool = False) -> None:
        if self._broken or self._run is None:
            return
        with self._lock:
            result, frame, seq = self._result, self._frame, self._frame_seq
            people_seen = self._people_seen
            audience = None if self._audience is None else self._audience.snapshot()
        jpeg = None
        if frame is not None and seq != self._sent_seq and (picture or (final and self._picture_period())):
            jpeg = encode_stream_jpeg(frame, self._web.stream_max_side_px, self._web.stream_jpeg_quality)
            self._sent_seq, self._jpeg_s = seq, time.monotonic()
        info = self._run.info
        figures = {
            "snapshot": self._run.snapshot(),
            "source": None if info is None else {"name": info.name, "kind": info.kind, "size_wh": list(info.size_wh)},
            "event": None if result is None else result.to_event(),
            "faces_in_frame": 0 if result is None else len(result.faces),
            "people_seen": people_seen,
            "audience": audience,
            "pictures": self._pictures,
            "final": final,
        }
        try:
            self._connection.send((figures, jpeg))
        except (OSError, ValueError):
            # The supervisor is gone or closed its end: the run goes on without relaying.
            self._broken = True


def encode_stream_jpeg(frame: np.ndarray, max_side_px: int, quality: int) -> Optional[bytes]:
    """``frame`` scaled to ``max_side_px`` on its long side, as JPEG bytes (None if encoding fails)."""
    import cv2

    from ..picture.resize import shrink_to_long_side

    ok, encoded = cv2.imencode(".jpg", shrink_to_long_side(frame, max_side_px)[0],
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok else None


@dataclass
class Feed:
    """A camera as its workers last told it (the supervisor's side): ``figures`` (RelaySink's
    dict, None before the first message), the latest JPEG, its sequence number and when it came
    (``time.monotonic()``), and how many messages came. ``run``: the worker run whose pipe was attached last (1 for the
    first); ``figures_run``: the run that sent ``figures`` (a restarted worker's predecessor's
    figures stay until it tells its own)."""

    figures: Optional[Dict[str, Any]] = None
    run: int = 0
    figures_run: int = 0
    jpeg: Optional[bytes] = None
    jpeg_seq: int = 0
    jpeg_s: float = 0.0
    messages: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def current(self) -> Optional[Dict[str, Any]]:
        """The figures of the worker run now attached, None before it told any or once it told its
        final ones (its run ended)."""
        figures = self.figures
        if figures is None or figures.get("final") or self.figures_run != self.run:
            return None
        return figures

    def people(self) -> Optional[int]:
        """People in view now as the current run told it (``current``), else None."""
        figures = self.current()
        if figures is None:
            return None
        people = (figures.get("snapshot") or {}).get("people_in_view")
        return int(figures.get("faces_in_frame", 0) if people is None else people)


class Relay:
    """The supervisor's side: one thread reading every worker's pipe into its camera's ``Feed``.
    ``attach(name, connection)`` at each worker start; a pipe that ends (the worker exited or was
    killed) is dropped. ``want_pictures(name, seconds)`` asks a camera's workers for pictures:
    the stream's, or with ``stream=False`` a still a second."""

    def __init__(self, names: Sequence[str], pictures_until: Dict[str, Any],
                 stills_until: Optional[Dict[str, Any]] = None) -> None:
        self.feeds: Dict[str, Feed] = {name: Feed() for name in names}
        self._pictures_until = pictures_until
        self._stills_until = stills_until or pictures_until
        self._connections: Dict[Connection, Tuple[str, int]] = {}  # -> camera, its run
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def attach(self, name: str, connection: Connection) -> None:
        feed = self.feeds[name]
        with feed.changed:
            feed.run += 1
            run = feed.run
        with self._lock:
            self._connections[connection] = (name, run)
        if self._thread is None:
            self._thread = threading.Thread(target=self._read_loop, name="relay-reader", daemon=True)
            self._thread.start()

    def want_pictures(self, name: str, seconds: float, stream: bool = True) -> None:
        value = (self._pictures_until if stream else self._stills_until)[name]
        value.value = max(value.value, time.monotonic() + seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_JOIN_S)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        for feed in self.feeds.values():
            with feed.changed:
                feed.changed.notify_all()

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                connections = list(self._connections)
            if not connections:
                self._stop.wait(0.1)
                continue
            for connection in wait(connections, timeout=0.2):
                assert isinstance(connection, Connection)
                name, run = self._connections[connection]
                try:
                    figures, jpeg = connection.recv()
                except (EOFError, OSError, ValueError):
                    with self._lock:
                        self._connections.pop(connection, None)
                    connection.close()
                    continue
                self._store(self.feeds[name], run, figures, jpeg)

    @staticmethod
    def _store(feed: Feed, run: int, figures: Dict[str, Any], jpeg: Optional[bytes]) -> None:
        now = time.monotonic()
        with feed.changed:
            feed.figures, feed.figures_run = figures, run
            feed.messages += 1
            if jpeg is not None:
                feed.jpeg, feed.jpeg_s = jpeg, now
                feed.jpeg_seq += 1
            feed.changed.notify_all()


def people_now(feeds: Dict[str, Feed], up: Sequence[str]) -> Tuple[int, List[str]]:
    """The people in view across the cameras named in ``up`` (those whose worker runs), and which
    of them have told a count yet (their current run: ``Feed.people``)."""
    total, counted = 0, []
    for name in up:
        people = feeds[name].people()
        if people is None:
            continue
        total += people
        counted.append(name)
    return total, counted
