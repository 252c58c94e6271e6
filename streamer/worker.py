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
from .types import Face, Frame, FrameResult, GateDecision

# The HUD's fps is over the last couple of seconds of frames, so it follows changes quickly.
_FPS_WINDOW = 60


@dataclass
class RunStats:
    """Counters and per-stage times (ms) for the HUD and the summary."""

    frames_in: int = 0
    frames_out: int = 0
    analysed: int = 0
    skipped: int = 0
    faces_seen: int = 0
    stage_ms: Dict[str, List[float]] = field(default_factory=dict)
    started_s: float = field(default_factory=time.monotonic)
    first_output_s: Optional[float] = None
    _in_times: Deque[float] = field(default_factory=lambda: deque(maxlen=_FPS_WINDOW))
    _out_times: Deque[float] = field(default_factory=lambda: deque(maxlen=_FPS_WINDOW))

    def add_ms(self, stage: str, ms: float) -> None:
        self.stage_ms.setdefault(stage, []).append(ms)

    def mark_in(self, t_s: float) -> None:
        self.frames_in += 1
        self._in_times.append(t_s)

    def mark_out(self) -> None:
        self.frames_out += 1
        now = time.monotonic()
        if self.first_output_s is None:
            self.first_output_s = now
        self._out_times.append(now)

    @staticmethod
    def _rate(times: Deque[float]) -> float:
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def fps_in(self) -> float:
        return self._rate(self._in_times)

    @property
    def fps_out(self) -> float:
        return self._rate(self._out_times)

    def percentiles(self) -> Dict[str, Dict[str, float]]:
        """Per stage: p50 and p95 in ms, and the number of samples."""
        table = {}
        for stage, values in self.stage_ms.items():
            arr = np.asarray(values, np.float64)
            table[stage] = {
                "p50_ms": round(float(np.percentile(arr, 50)), 2),
                "p95_ms": round(float(np.percentile(arr, 95)), 2),
                "n": int(arr.size),
            }
        return table


class Worker:
    """Runs the analyzer on the frames the gate lets through and draws every frame."""

    def __init__(self, analyzer: FaceAnalyzer, gate: Optional[MotionGate], hud: bool) -> None:
        self.analyzer = analyzer
        self.gate = gate
        self.hud = hud
        self.stats = RunStats()
        self._last_faces: Tuple[Face, ...] = ()
        self._last_analysed_index: Optional[int] = None

    def process(self, frame: Frame, dropped: int = 0) -> Tuple[FrameResult, np.ndarray]:
        """The result for ``frame`` and its annotated copy ((H, W, 3) uint8 BGR)."""
        stats = self.stats
        stats.mark_in(frame.t_s)
        timings: Dict[str, float] = {}
        decision: Optional[GateDecision] = None
        analyse = True
        if self.gate is not None:
            t0 = time.perf_counter()
            decision = self.gate.update(frame.bgr, frame.index)
            timings["gate"] = (time.perf_counter() - t0) * 1000.0
            analyse = decision.analyse
        if analyse or self._last_analysed_index is None:
            faces, model_ms = self.analyzer.analyse(frame.bgr)
            timings.update(model_ms)
            self._last_faces = faces
            self._last_analysed_index = frame.index
            stats.analysed += 1
            stale, since = False, 0
        else:
            faces = self._last_faces
            stats.skipped += 1
            stale, since = True, frame.index - self._last_analysed_index
        stats.faces_seen += len(faces) if not stale else 0
        t0 = time.perf_counter()
        annotated = draw_faces(frame.bgr, faces, stale=stale)
        if self.hud:
            draw_hud(annotated, self.hud_lines(timings, dropped))
        timings["draw"] = (time.perf_counter() - t0) * 1000.0
        for stage, ms in timings.items():
            stats.add_ms(stage, ms)
        result = FrameResult(
            frame=frame, faces=faces, stale=stale, frames_since_analysis=since, gate=decision, timings_ms=timings
        )
        return result, annotated

    def hud_lines(self, timings: Dict[str, float], dropped: int) -> List[str]:
        stats = self.stats
        total = stats.analysed + stats.skipped
        skipped_pct = 100.0 * stats.skipped / total if total else 0.0
        model_ms = timings.get("detect", 0.0) + timings.get("classify", 0.0)
        return [
            f"fps in {stats.fps_in:.1f} out {stats.fps_out:.1f}",
            f"model {model_ms:.0f}ms skip {skipped_pct:.0f}% drop {dropped}",
        ]
