"""What a run counts: frames in and out, analysed and skipped, and per-stage times, for the HUD,
the end-of-run summary and the sinks' live view."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Optional, Tuple

import numpy as np

# The HUD's fps is over the last couple of seconds of frames, so it follows changes quickly.
_FPS_WINDOW = 60
# Per-stage timings kept for the summary's p50/p95: the most recent ones only, so that a camera
# watched for days does not grow memory by a float per stage per frame (~5 min at 30 fps). Kept
# in a preallocated float32 ring (40 KB a stage) rather than a deque of Python floats (~32 bytes
# each): the deques took the first 5.5 minutes of a live run to fill, ~1.4 MB of resident growth
# that a soak run (bench/soak.py) read as a leak.
_STAGE_SAMPLES = 10_000



class _Ring:
    """The last ``size`` values appended, in a fixed float32 buffer."""

    def __init__(self, size: int) -> None:
        self._buffer = np.empty(size, np.float32)
        self._count = 0

    def append(self, value: float) -> None:
        self._buffer[self._count % len(self._buffer)] = value
        self._count += 1

    def values(self) -> np.ndarray:
        return self._buffer[: min(self._count, len(self._buffer))]

    def __len__(self) -> int:
        return min(self._count, len(self._buffer))


@dataclass
class RunStats:
    """Counters and per-stage times (ms) for the HUD and the summary."""

    frames_in: int = 0
    frames_out: int = 0
    analysed: int = 0
    skipped: int = 0
    faces_classified: int = 0
    stage_ms: Dict[str, _Ring] = field(default_factory=dict)
    stage_runs: Dict[str, int] = field(default_factory=dict)
    stage_total_ms: Dict[str, float] = field(default_factory=dict)
    first_output_s: Optional[float] = None
    _in_times: Deque[Tuple[int, float]] = field(default_factory=lambda: deque(maxlen=_FPS_WINDOW))
    _out_times: Deque[float] = field(default_factory=lambda: deque(maxlen=_FPS_WINDOW))
    # Stage times come from the run's thread and the video writer's; the table is read from any
    # thread (a sink's live view).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_ms(self, stage: str, ms: float) -> None:
        with self._lock:
            ring = self.stage_ms.get(stage)
            if ring is None:
                ring = self.stage_ms[stage] = _Ring(_STAGE_SAMPLES)
            ring.append(ms)
            self.stage_runs[stage] = self.stage_runs.get(stage, 0) + 1
            self.stage_total_ms[stage] = self.stage_total_ms.get(stage, 0.0) + ms

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
        """Per stage: p50 and p95 in ms (over the last _STAGE_SAMPLES runs), how often it ran, and
        its total ms over the whole run (what share of the run it took)."""
        with self._lock:
            samples = {stage: (ring.values().astype(np.float64), self.stage_runs[stage], self.stage_total_ms[stage])
                       for stage, ring in self.stage_ms.items()}
        table = {}
        for stage, (arr, runs, total_ms) in samples.items():
            table[stage] = {
                "p50_ms": round(float(np.percentile(arr, 50)), 2),
                "p95_ms": round(float(np.percentile(arr, 95)), 2),
                "n": runs,
                "total_ms": round(total_ms, 1),
            }
        return table


def resident_bytes() -> int:
    """Resident memory of this process now, in bytes (Linux ``/proc``; the peak elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
