"""The worker: motion gate -> analysis (or reuse, marked stale) -> overlay, for one frame at a time.

It owns no thread and no window: ``app.run`` feeds it frames from the capture queue and hands its
output to the sinks. ``RunStats`` collects what the HUD and the end-of-run summary report.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from .draw import draw_faces, draw_hud
from .motion import MotionGate
from .pipeline import FaceAnalyzer
from .track import Track, Tracker
from .types import Face, Frame, FrameResult, GateDecision

# The HUD's fps is over the last couple of seconds of frames, so it follows changes quickly.
_FPS_WINDOW = 60
# Per-stage timings kept for the summary's p50/p95: the most recent ones only, so that a camera
# watched for days does not grow memory by a float per stage per frame (~5 min at 30 fps).
_STAGE_SAMPLES = 10_000
# A tracked face's box grown by this share of its size per side still counts as "that face
# moving" for the motion gate: a head turn or nod stays within it.
_TRACKED_MOTION_MARGIN = 0.25


@dataclass
class RunStats:
    """Counters and per-stage times (ms) for the HUD and the summary."""

    frames_in: int = 0
    frames_out: int = 0
    analysed: int = 0
    skipped: int = 0
    faces_classified: int = 0
    stage_ms: Dict[str, Deque[float]] = field(default_factory=dict)
    stage_runs: Dict[str, int] = field(default_factory=dict)
    first_output_s: Optional[float] = None
    _in_times: Deque[Tuple[int, float]] = field(default_factory=lambda: deque(maxlen=_FPS_WINDOW))
    _out_times: Deque[float] = field(default_factory=lambda: deque(maxlen=_FPS_WINDOW))

    def add_ms(self, stage: str, ms: float) -> None:
        self.stage_ms.setdefault(stage, deque(maxlen=_STAGE_SAMPLES)).append(ms)
        self.stage_runs[stage] = self.stage_runs.get(stage, 0) + 1

    def mark_in(self, index: int, t_s: float) -> None:
        self.frames_in += 1
        # The first frame of a video or stream is read when the source opens, before the models
        # load: its timestamp would make the input rate look like a fraction of a frame a second.
        if index > 0:
            self._in_times.append((index, t_s))

    def mark_out(self) -> None:
        self.frames_out += 1
        now = time.monotonic()
        if self.first_output_s is None:
            self.first_output_s = now
        self._out_times.append(now)

    @property
    def fps_in(self) -> float:
        """Frames the source delivered per second, counting the ones a live source dropped
        (frame indices count every frame read)."""
        samples = self._in_times
        if len(samples) < 2 or samples[-1][1] <= samples[0][1]:
            return 0.0
        return (samples[-1][0] - samples[0][0]) / (samples[-1][1] - samples[0][1])

    @property
    def fps_out(self) -> float:
        """Frames the worker finished per second."""
        times = self._out_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def percentiles(self) -> Dict[str, Dict[str, float]]:
        """Per stage: p50 and p95 in ms (over the last _STAGE_SAMPLES runs), and how often it ran."""
        table = {}
        for stage, values in self.stage_ms.items():
            arr = np.asarray(values, np.float64)
            table[stage] = {
                "p50_ms": round(float(np.percentile(arr, 50)), 2),
                "p95_ms": round(float(np.percentile(arr, 95)), 2),
                "n": self.stage_runs[stage],
            }
        return table


class Worker:
    """Runs the models on the frames that need them and draws every frame.

    Without a tracker, every frame the gate lets through is analysed in full (detect + classify
    each face) and the others reuse the last faces, marked stale. With a tracker, the detector
    runs on gated frames (and every few frames while faces are in view), boxes in between come
    from the tracker, and each person is classified only on its schedule; labels are smoothed
    per track.
    """

    def __init__(
        self, analyzer: FaceAnalyzer, gate: Optional[MotionGate], hud: bool, tracker: Optional[Tracker] = None
    ) -> None:
        self.analyzer = analyzer
        self.gate = gate
        self.tracker = tracker
        self.hud = hud
        self.stats = RunStats()
        self.ended_tracks: List[Track] = []
        self._records: List[dict] = []
        self._last_faces: Tuple[Face, ...] = ()
        self._last_analysed_index: Optional[int] = None
        self._last_model_ms = 0.0  # shown on the HUD until the models run again

    def process(self, frame: Frame, dropped: int = 0) -> Tuple[FrameResult, np.ndarray]:
        """The result for ``frame`` and its annotated copy ((H, W, 3) uint8 BGR)."""
        stats = self.stats
        stats.mark_in(frame.index, frame.t_s)
        timings: Dict[str, float] = {}
        decision: Optional[GateDecision] = None
        gate_open = True
        if self.gate is not None:
            t0 = time.perf_counter()
            ignore = None
            if self.tracker is not None:
                # Motion on a face already tracked (talking, nodding) is the tracker's job; only
                # motion elsewhere (someone new) needs the detector before its schedule.
                ignore = self.tracker.shown_boxes(grow=_TRACKED_MOTION_MARGIN)
            decision = self.gate.update(frame.bgr, frame.index, ignore)
            timings["gate"] = (time.perf_counter() - t0) * 1000.0
            gate_open = decision.analyse
        if self.tracker is not None:
            faces, analysed = self._tracked(frame, gate_open, timings)
        elif gate_open or self._last_analysed_index is None:
            faces, model_ms = self.analyzer.analyse(frame.bgr)
            timings.update(model_ms)
            stats.faces_classified += sum(face.classified for face in faces)
            self._last_faces, analysed = faces, True
        else:
            faces, analysed = self._last_faces, False
        if analysed:
            self._last_analysed_index = frame.index
            stats.analysed += 1
        else:
            stats.skipped += 1
        stale = not analysed
        since = 0 if analysed else frame.index - (self._last_analysed_index or 0)
        if "detect" in timings:
            self._last_model_ms = timings["detect"] + timings.get("classify", 0.0)
        t0 = time.perf_counter()
        annotated = draw_faces(frame.bgr, faces, stale=stale)
        if self.hud:
            draw_hud(annotated, self.hud_lines(dropped))
        timings["draw"] = (time.perf_counter() - t0) * 1000.0
        for stage, ms in timings.items():
            stats.add_ms(stage, ms)
        result = FrameResult(
            frame=frame, faces=faces, stale=stale, frames_since_analysis=since, gate=decision, timings_ms=timings
        )
        return result, annotated

    def _tracked(self, frame: Frame, gate_open: bool, timings: Dict[str, float]) -> Tuple[Tuple[Face, ...], bool]:
        """Faces from the tracker; True when the detector ran on this frame."""
        tracker, analyzer = self.tracker, self.analyzer
        assert tracker is not None
        # File time when there is one: decoding faster than real time must not shrink the
        # tracker's seconds-based limits.
        t_s = frame.pos_s if frame.pos_s is not None else frame.t_s
        detected = tracker.detect_due(frame.index, t_s, gate_open)
        if detected:
            t0 = time.perf_counter()
            detections = analyzer.detector.detect(frame.bgr)
            timings["detect"] = (time.perf_counter() - t0) * 1000.0
            tracks = tracker.update(detections, frame.index, t_s)
            due = [
                tr for tr in tracks
                if tr.det_index is not None and tracker.needs_classification(tr, frame.index, t_s)
            ]
            if due:
                rows = np.asarray([tr.det_index for tr in due], np.int64)
                big = analyzer.classifiable(detections[rows])
                due, rows = [tr for tr, ok in zip(due, big) if ok], rows[big]
            if due:
                t0 = time.perf_counter()
                labels = analyzer.classifier.predict(frame.bgr, detections[rows])
                timings["classify"] = (time.perf_counter() - t0) * 1000.0
                self.stats.faces_classified += len(due)
                for i, track in enumerate(due):
                    x1, y1, x2, y2 = track.xyxy
                    track.add_sample(
                        float(labels.p_male[i]), float(labels.age_years[i]), float(min(x2 - x1, y2 - y1)), track.score
                    )
        else:
            tracks = tracker.predict(frame.index, t_s)
        self._collect_records(frame, t_s)
        h, w = frame.bgr.shape[:2]
        faces = []
        for track in tracks:
            x1, y1, x2, y2 = (float(v) for v in track.xyxy)
            box = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
            ready = track.label_ready
            small = not ready and min(box[2] - box[0], box[3] - box[1]) < analyzer.min_face_px
            faces.append(
                Face(
                    xyxy=box,
                    score=track.score,
                    gender=track.gender if ready else None,
                    gender_p=track.gender_p if ready else None,
                    age=track.age_years if ready else None,
                    age_group=track.age_group if ready else None,
                    classified=ready,
                    track=track.id,
                    too_small=small,
                )
            )
        return tuple(faces), detected

    def _collect_records(self, frame: Frame, t_s: float) -> None:
        tracker = self.tracker
        assert tracker is not None
        base = {"source": frame.source, "frame": frame.index, "t_s": round(t_s, 4)}
        for track in tracker.pop_new():
            self._records.append({"event": "new", **base, "track": track.id})
        for track in tracker.pop_ended():
            self.ended_tracks.append(track)
            self._records.append({"event": "end", **base, **track.to_record()})

    def pop_records(self) -> List[dict]:
        """Track ``new`` / ``end`` records since the last call, for the events file."""
        records, self._records = self._records, []
        return records

    def finish(self) -> List[dict]:
        """End every open track (end of run); their ``end`` records."""
        if self.tracker is None:
            return []
        for track in self.tracker.end_all():
            self.ended_tracks.append(track)
            self._records.append({"event": "end", "track": track.id, **track.to_record()})
        return self.pop_records()

    def hud_lines(self, dropped: int) -> List[str]:
        stats = self.stats
        total = stats.analysed + stats.skipped
        skipped_pct = 100.0 * stats.skipped / total if total else 0.0
        return [
            f"fps in {stats.fps_in:.1f} out {stats.fps_out:.1f}",
            f"model {self._last_model_ms:.0f}ms skip {skipped_pct:.0f}% drop {dropped}",
        ]
