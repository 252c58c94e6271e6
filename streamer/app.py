"""The composition root: wires source -> worker -> sinks for one run and guarantees cleanup.

Photos and folders give annotated images; files and live sources give an annotated video (every
frame of a file; live frames as they come), events and a summary. Ctrl-C and SIGTERM stop the run
cleanly: outputs are finalised and the source is released.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from .capture import open_source
from .config import Config
from .flow import BoxFlow
from .motion import MotionGate
from .pipeline import FaceAnalyzer, build_analyzer
from .sinks import (
    IMAGE_EXTENSIONS,
    BackgroundVideoWriter,
    EventsSink,
    PreviewWindow,
    VideoFileSink,
    display_available,
    write_image,
)
from .track import Tracker, summarise, write_report
from .types import Frame
from .worker import Worker

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = Path("out")
# A live recording repeats the last picture over a gap of up to this long (a slow frame, a short
# stall); longer gaps (a camera reconnect) are cut, or the file would freeze for minutes.
_MAX_LIVE_FILL_S = 2.0


@dataclass(frozen=True)
class RunOptions:
    """What the command line asks of one run (config holds everything else)."""

    source: str
    output: Optional[Path] = None
    events: Optional[Path] = None
    window: bool = True
    summary_json: Optional[Path] = None
    progress: Optional[bool] = None  # None: a bar when stderr is a terminal
    report: Optional[Path] = None  # people report: writes <report>.json and <report>.csv (tracking)


def _default_output(kind: str, name: str) -> Optional[Path]:
    stem = Path(name).stem or "source"
    if kind == "image":
        suffix = Path(name).suffix.lower()
        return DEFAULT_OUT_DIR / f"{stem}_annotated{suffix if suffix in IMAGE_EXTENSIONS else '.jpg'}"
    if kind == "folder":
        return DEFAULT_OUT_DIR / f"{Path(name).name or 'images'}_annotated"
    if kind == "file":
        return DEFAULT_OUT_DIR / f"{stem}_annotated.mp4"
    return None  # live: record only when asked, a camera can fill a disk


def _image_output_path(kind: str, output: Path, frame_source: str) -> Path:
    if kind == "folder" or output.suffix.lower() not in IMAGE_EXTENSIONS:
        return output / Path(frame_source).name
    return output


class _StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM ask the run to stop at the next frame boundary, so that the
    video, the events and the summary always agree on the frames written. While the loop waits
    for a frame (a stalled camera, a reconnect) the signal interrupts the wait at once, and a
    second signal interrupts whatever runs (a stage that hangs)."""

    def __init__(self) -> None:
        self.requested = False
        self.waiting = False

    def _handler(self, signum, _frame) -> None:
        # A second signal stops at once: the way out of a stage that hangs.
        if self.waiting or self.requested:
            self.requested = True
            raise KeyboardInterrupt(f"signal {signum}")
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator["_StopSignals"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals are only delivered to the main thread; nothing to install
            return
        previous = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def next_frame(self, frames: Iterator):
        """The next frame, or None at the end of the source; KeyboardInterrupt on a stop request."""
        if self.requested:
            raise KeyboardInterrupt("stop requested")
        self.waiting = True
        try:
            return next(frames, None)
        finally:
            self.waiting = False


def _progress_bar(total: Optional[int], enabled: Optional[bool]):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)


class _Outputs:
    """The file outputs of one run: annotated images or video (opened on the first frame, when
    its size is known) and the events file. Registered on the run's ExitStack, so they are
    finalised however the run ends."""

    def __init__(self, stack: contextlib.ExitStack, kind: str, fps: float, output: Optional[Path],
                 events: Optional[Path], codecs: Sequence[str], on_encode_ms=None) -> None:
        self._stack, self._kind, self._fps, self._codecs = stack, kind, fps, codecs
        self._on_encode_ms = on_encode_ms
        self.output = output
        self.events = stack.enter_context(EventsSink(events)) if events else None
        self._video: Optional[BackgroundVideoWriter] = None
        self._live_t0_s: Optional[float] = None
        self._video_frames = 0

    def write_frame(self, frame: Frame, annotated) -> None:
        if self.output is None:
            return
        if self._kind in ("image", "folder"):
            write_image(_image_output_path(self._kind, self.output, frame.source), annotated)
            return
        if self._video is None:
            size_wh = (annotated.shape[1], annotated.shape[0])
            sink = self._stack.enter_context(VideoFileSink(self.output, self._fps, size_wh, self._codecs))
            self._video = self._stack.enter_context(BackgroundVideoWriter(sink, on_encode_ms=self._on_encode_ms))
        for _ in range(self._copies(frame)):
            self._video.write(annotated)
            self._video_frames += 1

    def _copies(self, frame: Frame) -> int:
        """How many times to write this frame. A file: once (every frame is there). A live
        recording: as often as keeps the file in step with the clock, so that it plays in real
        time although the worker took fewer frames than the camera gave (the others were
        dropped); a long gap (a reconnect) is bridged by at most _MAX_LIVE_FILL_S of frozen frame."""
        if self._kind != "live":
            return 1
        if self._live_t0_s is None:
            self._live_t0_s = frame.t_s
        due = int((frame.t_s - self._live_t0_s) * self._fps) + 1
        behind = due - self._video_frames
        if behind > self._fps * _MAX_LIVE_FILL_S:
            # Skip the rest of the gap in the file's clock rather than freeze the picture for it.
            self._live_t0_s += (behind - 1) / self._fps
            return 1
        return max(1, behind)

    def write_records(self, records) -> None:
        if self.events is not None:
            for record in records:
                self.events.write_record(record)


def run(config: Config, options: RunOptions, analyzer: Optional[FaceAnalyzer] = None) -> dict:
    """Process one source end to end and return the summary (also written as JSON when asked).
    Raises StreamerError subclasses on bad input; a user stop is not an error."""
    t_run = time.monotonic()
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(options.source, config.capture))
        info = source.info
        analyzer = analyzer or build_analyzer(config, None, photos=info.kind in ("image", "folder"))
        # From here on a stop request ends the run at a frame boundary (before: at once, as
        # Ctrl-C does, e.g. during a model download).
        stop = stack.enter_context(_StopSignals().installed())
        stream = info.kind in ("file", "live")
        tracker = Tracker(config.tracking, config.classifier.age_groups) if stream and config.tracking.enabled else None
        if options.report is not None and tracker is None:
            log.warning("--report needs tracked mode on a video or stream (tracking.enabled); no report written")
        flow = BoxFlow() if tracker is not None and config.tracking.flow else None
        worker = Worker(analyzer, MotionGate(config.motion) if stream else None, config.output.hud and stream, tracker,
                        flow, config.tracking.region_grow)
        outputs = _Outputs(stack, info.kind, info.fps, options.output or _default_output(info.kind, info.name),
                           options.events, config.output.codecs, lambda ms: worker.stats.add_ms("encode", ms))
        window = _open_window(stack, config, options)
        bar = _progress_bar(info.frame_count, options.progress if info.kind == "file" else False)
        if bar is not None:
            stack.callback(bar.close)
        stopped_by = "end of input"
        t_loop = time.monotonic()
        frames = iter(source)
        try:
            while True:
                frame = stop.next_frame(frames)
                if frame is None:
                    break
                result, annotated = worker.process(frame, dropped=source.stats.dropped)
                t0 = time.perf_counter()
                outputs.write_frame(frame, annotated)
                worker.stats.add_ms("output", (time.perf_counter() - t0) * 1000.0)
                if outputs.events is not None:
                    outputs.events.write(result)
                outputs.write_records(worker.pop_records())
                worker.stats.mark_out()
                if bar is not None:
                    bar.update(1)
                if window is not None and not window.show(
                    annotated, hold=info.kind in ("image", "folder"), stop_requested=lambda: stop.requested
                ):
                    stopped_by = "window closed"
                    break
        except KeyboardInterrupt:
            stopped_by = "interrupted"
            log.warning("stopping: interrupted; finalising outputs")
        elapsed = time.monotonic() - t_loop
        outputs.write_records(worker.finish())
    summary = _summary(info, source.stats, worker, stopped_by, elapsed, t_run, outputs.output, options.events)
    if tracker is not None:
        people = summarise(worker.ended_tracks, config.classifier.age_groups)
        summary["people"] = {key: people[key] for key in ("people", "by_gender", "by_age_group")}
        if options.report is not None:
            paths = (options.report.with_suffix(".json"), options.report.with_suffix(".csv"))
            write_report(worker.ended_tracks, paths[0], paths[1], config.classifier.age_groups)
            summary["report"] = [str(path) for path in paths]
    summary_path = options.summary_json or (Path(config.output.summary_json) if config.output.summary_json else None)
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _open_window(stack: contextlib.ExitStack, config: Config, options: RunOptions) -> Optional[PreviewWindow]:
    if not (options.window and config.output.window):
        return None
    if not display_available():
        log.warning("no display found (DISPLAY is not set): running without a preview window")
        return None
    return stack.enter_context(PreviewWindow(config.output.window_name))


def _summary(info, capture_stats, worker: Worker, stopped_by: str, elapsed: float, t_run: float,
             output: Optional[Path], events: Optional[Path]) -> dict:
    stats = worker.stats
    return {
        "source": info.name,
        "kind": info.kind,
        "stopped_by": stopped_by,
        "frames_read": capture_stats.frames_read,
        "frames_out": stats.frames_out,
        "analysed": stats.analysed,
        "skipped": stats.skipped,
        "dropped": capture_stats.dropped,
        "reconnects": capture_stats.reconnects,
        "elapsed_s": round(elapsed, 3),
        "fps": round(stats.frames_out / elapsed, 2) if elapsed > 0 else 0.0,
        # From the start of the run (source opened, models loaded) to the first frame written.
        "first_output_s": None if stats.first_output_s is None else round(stats.first_output_s - t_run, 3),
        "faces_classified": stats.faces_classified,
        "stages": stats.percentiles(),
        "output": None if output is None else str(output),
        "events": None if events is None else str(events),
    }
