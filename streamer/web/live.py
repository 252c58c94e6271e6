"""The live side of the web service: a sink of the run that keeps its latest frame and result,
and serves them to any number of HTTP threads without ever making the run wait.

The run's thread only stores a reference to the newest annotated frame and wakes an encoder
thread (microseconds). The encoder turns that frame into one JPEG at most ``web.stream_fps``
times a second, scaled to ``web.stream_max_side_px``, and only while someone watches; every MJPEG
viewer is sent that same JPEG (one encode, N sends). A viewer that is slow simply gets fewer
frames (it always takes the newest), one that leaves ends its thread at the next send, and
viewers beyond ``web.max_viewers`` are refused.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..audience.live import AudienceCounts
from ..config import AudienceConfig, WebConfig
from ..outputs.sinks import Sink
from ..picture.resize import shrink_to_long_side
from ..stats import resident_bytes
from ..types import FrameResult, age_group_labels

log = logging.getLogger(__name__)

# A viewer whose stream saw no new frame for this long (a camera reconnecting) is sent the last
# frame again: browsers keep the picture, and a viewer that has gone is noticed by the failed send.
_RESEND_S = 5.0
# close(): the encoder thread gets this long to finish an encode in progress.
_JOIN_S = 2.0


class ViewersFull(Exception):
    """Every viewer slot (``web.max_viewers``) is taken."""


class LiveView(Sink):
    """The web service's sink: latest frame, result and run statistics for the HTTP threads.

    Run-thread methods (``start``, ``write``, ``write_records``, ``close``) never block on a
    viewer; HTTP-thread methods (``open_viewer``, ``latest_jpeg``, ``latest_event``, ``snapshot``)
    read under a lock. Frames are ``(H, W, 3)`` uint8 BGR, kept by reference: the run hands
    every sink a frame it no longer changes.
    """

    def __init__(self, cfg: WebConfig, audience: Optional[AudienceConfig] = None,
                 age_groups: Sequence[Tuple[int, int]] = (), pictures: bool = True) -> None:
        """``audience``: the run's zones and lines, counted from its records for ``/metrics``;
        ``pictures`` False: the run keeps no pictures (aggregate privacy), none is served."""
        self._cfg = cfg
        self.pictures = pictures
        self.audience: Optional[AudienceCounts] = None
        if audience is not None and (audience.zones or audience.lines):
            self.audience = AudienceCounts(list(audience.zones), list(audience.lines), age_group_labels(age_groups))
        self._run = None
        self._lock = threading.Lock()
        self._new_frame = threading.Event()
        self._published = threading.Condition()
        self._stop = threading.Event()
        self._encoder: Optional[threading.Thread] = None
        self._result: Optional[FrameResult] = None
        self._frame: Optional[np.ndarray] = None
        self._frame_seq = 0
        self._jpeg: Optional[bytes] = None
        self._jpeg_seq = 0
        self._full_jpeg: Optional[bytes] = None
        self._full_jpeg_seq = 0
        self._viewers = 0
        self._streams_closed = False
        self.ended = False
        self.stream_frames = 0
        self.people_seen = 0

    # -- the run's side -------------------------------------------------------------------------

    def start(self, run) -> None:
        self._run = run
        self._encoder = threading.Thread(target=self._encode_loop, name="web-encoder", daemon=True)
        self._encoder.start()

    def write(self, result: FrameResult, annotated: Optional[np.ndarray]) -> None:
        with self._lock:
            self._result = result
            self._frame = annotated
            self._frame_seq += 1
        self._new_frame.set()

    def write_records(self, records: Sequence[dict]) -> None:
        self.people_seen += sum(1 for record in records if record.get("event") == "new")
        if self.audience is not None:
            self.audience.observe(records)

    def close(self) -> None:
        """The run ended: end the encoder (bounded join); every viewer's stream, and a viewer's who
        comes later, ends with the last frame (the picture stays in the page). Idempotent."""
        self._stop.set()
        self._new_frame.set()
        if self._encoder is not None:
            self._encoder.join(_JOIN_S)
            if self._encoder.is_alive():
                log.warning("web stream encoder did not stop within %.0f s", _JOIN_S)
        with self._published:
            self.ended = True
            self._published.notify_all()

    def _encode_loop(self) -> None:
        period_s = 1.0 / self._cfg.stream_fps
        next_due = 0.0
        params = [cv2.IMWRITE_JPEG_QUALITY, self._cfg.stream_jpeg_quality]
        while not self._stop.is_set():
            if not self._new_frame.wait(0.5):
                continue
            self._new_frame.clear()
            if self._viewers == 0:
                continue  # nobody watches: no encoding at all
            wait_s = next_due - time.monotonic()
            if wait_s > 0 and self._stop.wait(wait_s):
                break
            with self._lock:
                frame, seq = self._frame, self._frame_seq
            if frame is None or seq == self._jpeg_seq:
                continue
            next_due = time.monotonic() + period_s
            ok, encoded = cv2.imencode(".jpg", shrink_to_long_side(frame, self._cfg.stream_max_side_px)[0], params)
            if not ok:
                log.warning("could not encode a live frame as JPEG; skipped")
                continue
            with self._published:
                self._jpeg, self._jpeg_seq = encoded.tobytes(), seq
                self.stream_frames += 1
                self._published.notify_all()

    # -- the HTTP threads' side -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """A run has started and not ended."""
        return self._run is not None and not self.ended

    @property
    def viewers(self) -> int:
        return self._viewers

    def snapshot(self) -> Optional[Dict]:
        """The run's live summary (RunView.snapshot()), or None before the run starts."""
        return None if self._run is None else self._run.snapshot()

    def source_info(self):
        return None if self._run is None else self._run.info

    def latest_event(self) -> Optional[dict]:
        """The last frame's events-file object, or None before the first frame."""
        with self._lock:
            result = self._result
        return None if result is None else result.to_event()

    def latest_faces(self) -> int:
        with self._lock:
            return 0 if self._result is None else len(self._result.faces)

    def latest_jpeg(self) -> Optional[bytes]:
        """The last annotated frame as a full-size JPEG (encoded once per frame, on demand), or None."""
        with self._lock:
            frame, seq = self._frame, self._frame_seq
            if frame is None:
                return None
            if seq == self._full_jpeg_seq:
                return self._full_jpeg
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self._cfg.stream_jpeg_quality])
        if not ok:
            return None
        with self._lock:
            self._full_jpeg, self._full_jpeg_seq = encoded.tobytes(), seq
        return self._full_jpeg

    def open_viewer(self) -> "Viewer":
        """A viewer slot, until its ``close()``. ViewersFull when all ``web.max_viewers`` are taken."""
        with self._lock:
            if self._viewers >= self._cfg.max_viewers:
                raise ViewersFull()
            self._viewers += 1
        self._new_frame.set()  # a first viewer gets a frame now, not at the next one
        return Viewer(self.next_jpeg, self._leave, self.final_jpeg)

    def next_jpeg(self, last_seq: int) -> Tuple[Optional[bytes], int]:
        """The newest stream JPEG once it is newer than ``last_seq`` (waiting at most ``_RESEND_S``,
        then the same one again; b"" before the first) and its sequence number; None once the
        run has ended (``final_jpeg`` then) or the streams are closed."""
        with self._published:
            self._published.wait_for(lambda: self._jpeg_seq != last_seq or self._streams_closed or self.ended,
                                     timeout=_RESEND_S)
            if self._streams_closed or self.ended:
                return None, last_seq
            return (self._jpeg if self._jpeg is not None else b""), self._jpeg_seq

    def final_jpeg(self) -> Optional[bytes]:
        """The run's last frame as a stream JPEG (encoded now if the encoder had not), once the run
        has ended; None before, while nothing was ever shown, or when the server stops."""
        with self._lock:
            frame, seq = self._frame, self._frame_seq
        with self._published:
            if not self.ended or self._streams_closed or frame is None:
                return None
            if self._jpeg_seq == seq and self._jpeg is not None:
                return self._jpeg
        params = [cv2.IMWRITE_JPEG_QUALITY, self._cfg.stream_jpeg_quality]
        ok, encoded = cv2.imencode(".jpg", shrink_to_long_side(frame, self._cfg.stream_max_side_px)[0], params)
        if not ok:
            return None
        with self._published:
            if self._jpeg_seq != seq:
                self._jpeg, self._jpeg_seq = encoded.tobytes(), seq
                self.stream_frames += 1
            return self._jpeg

    def close_streams(self) -> None:
        """End every viewer's stream now (the server stops); idempotent."""
        with self._published:
            self._streams_closed = True
            self._published.notify_all()

    def _leave(self) -> None:
        with self._lock:
            self._viewers -= 1


class Viewer:
    """One MJPEG viewer's slot (``LiveView.open_viewer()``): ``frames()`` yields each new stream
    JPEG until the run ends (then the last frame, unless it was the last sent) or the streams
    close; ``close()`` frees the slot (idempotent)."""

    def __init__(self, next_jpeg: Callable[[int], Tuple[Optional[bytes], int]], leave: Callable[[], None],
                 final_jpeg: Callable[[], Optional[bytes]]) -> None:
        self._next_jpeg = next_jpeg
        self._leave = leave
        self._final_jpeg = final_jpeg
        self._closed = False

    def frames(self) -> Iterator[bytes]:
        seq, sent = 0, None
        while not self._closed:
            jpeg, seq = self._next_jpeg(seq)
            if jpeg is None:
                final = self._final_jpeg()
                if final is not None and final is not sent:
                    yield final
                return
            if jpeg:
                sent = jpeg
                yield jpeg

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._leave()


class _Exposition:
    """Prometheus text exposition (format 0.0.4): samples gathered per metric, each metric's HELP
    and TYPE written once however many label sets (cameras) it has."""

    def __init__(self) -> None:
        self._metrics: Dict[str, Tuple[str, str, List[Tuple[Dict[str, str], float]]]] = {}

    def __call__(self, name: str, kind: str, help_text: str, samples) -> None:
        self._metrics.setdefault(name, (kind, help_text, []))[2].extend(samples)

    def text(self) -> str:
        lines: List[str] = []
        for name, (kind, help_text, samples) in self._metrics.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                label_text = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
                number = float(value)
                lines.append(f"{name}{label_text} {int(number) if number.is_integer() else round(number, 4)}")
        return "\n".join(lines) + "\n"


_COUNTERS = (
    ("frames_read", "Frames read from the source."),
    ("frames_out", "Frames the run produced."),
    ("analysed", "Frames the models ran on."),
    ("skipped", "Frames whose faces were reused (motion gate closed)."),
    ("dropped", "Frames dropped because the worker was slower than the live source."),
    ("reconnects", "Successful reconnects of the live source."),
    ("faces_classified", "Faces given gender and age labels."),
)


def metrics_text(views: Sequence[Tuple[Dict[str, str], Any]], web: Dict[str, float]) -> str:
    """The Prometheus text exposition (format 0.0.4) of each live view's run counters (``views``:
    ``(labels, view)``: ``({}, live)`` for one source, ``({"camera": name}, view)`` for each
    camera of a site), the web service's own and the process's resident memory. A camera's
    restarts and state come with a site's views (``restarts``, ``running``)."""
    metric = _Exposition()
    for labels, view in views:
        snapshot = view.snapshot()
        if snapshot is not None:
            for key, help_text in _COUNTERS:
                metric(f"streamer_{key}_total", "counter", help_text, [(labels, snapshot.get(key, 0) or 0)])
            metric("streamer_fps", "gauge", "Frames per second of the run.", [(labels, snapshot.get("fps", 0) or 0)])
            metric("streamer_source_up", "gauge", "1 while the source delivers, 0 while it reconnects.",
                   [(labels, 1 if snapshot.get("source_up", True) else 0)])
            if snapshot.get("people_in_view") is not None:
                metric("streamer_people_in_view", "gauge", "People tracked in view now.",
                       [(labels, snapshot["people_in_view"])])
            stages = snapshot.get("stages") or {}
            metric("streamer_stage_ms", "gauge", "Per-stage time per frame in milliseconds (recent frames).",
                   [({**labels, "stage": stage, "quantile": q}, row[key]) for stage, row in sorted(stages.items())
                    for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"))])
        if hasattr(view, "restarts"):
            metric("streamer_worker_up", "gauge", "1 while the camera's worker process runs.",
                   [(labels, 1 if view.running else 0)])
            metric("streamer_worker_restarts_total", "counter", "Restarts of the camera's worker process.",
                   [(labels, view.restarts)])
        metric("streamer_faces_in_frame", "gauge", "Faces in the latest frame.", [(labels, view.latest_faces())])
        metric("streamer_people_seen_total", "counter", "People (tracks) that appeared.", [(labels, view.people_seen)])
        metric("streamer_web_viewers", "gauge", "Live stream viewers now.", [(labels, view.viewers)])
        metric("streamer_web_stream_frames_total", "counter", "Live stream frames encoded.",
               [(labels, view.stream_frames)])
        if view.audience is not None:
            _audience_metrics(metric, labels, view.audience.snapshot())
    metric("streamer_web_photos_total", "counter", "Photos analysed through the API.", [({}, web["photos"])])
    metric("streamer_web_photo_faces_total", "counter", "Faces found in photos analysed through the API.",
           [({}, web["photo_faces"])])
    metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes (this process; a site's "
           "workers are processes of their own).", [({}, resident_bytes())])
    return metric.text()


def _audience_metrics(metric: Callable, labels: Dict[str, str], audience: dict) -> None:
    """Zone occupancy, visits (by the labels at the exit), dwell, watchers and line crossings."""
    metric("streamer_zone_people", "gauge", "People in the zone now (past its inertia).",
           [({**labels, "zone": zone}, n) for zone, n in audience["zones"].items()])
    visits = audience["visits"]
    for name, column, help_text in (
        ("streamer_zone_visits_total", 3, "Zone visits that ended, by age group and gender."),
        ("streamer_zone_dwell_seconds_total", 4, "Seconds spent in the zone by the visits that ended."),
        ("streamer_zone_watchers_total", 5, "Zone visits during which the person looked at the camera."),
        ("streamer_zone_attention_seconds_total", 6, "Seconds zone visitors spent looking at the camera."),
    ):
        metric(name, "counter", help_text,
               [({**labels, "zone": row[0], "age_group": row[1], "gender": row[2]}, row[column]) for row in visits])
    metric("streamer_line_crossings_total", "counter", "Line crossings, by direction, age group and gender.",
           [({**labels, "line": row[0], "direction": row[1], "age_group": row[2], "gender": row[3]}, row[4])
            for row in audience["crossings"]])
