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
from typing import Iterator, Optional

from .capture import open_source
from .config import Config
from .motion import MotionGate
from .pipeline import FaceAnalyzer, build_analyzer
from .sinks import IMAGE_EXTENSIONS, EventsSink, PreviewWindow, VideoFileSink, display_available, write_image
from .track import Tracker, summarise, write_report
from .worker import Worker

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = Path("out")


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


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress_bar(total: Optional[int], enabled: Optional[bool]):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)


def run(config: Config, options: RunOptions, analyzer: Optional[FaceAnalyzer] = None) -> dict:
    """Process one source end to end and return the summary (also logged, and written as JSON
    when asked). Raises StreamerError subclasses on bad input; a user stop is not an error."""
    summary_path = options.summary_json or (Path(config.output.summary_json) if config.output.summary_json else None)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_as_interrupt())
        source = stack.enter_context(open_source(options.source, config.capture))
        info = source.info
        analyzer = analyzer or build_analyzer(config, None)
        stream = info.kind in ("file", "live")
        gate = MotionGate(config.motion) if stream else None
        tracker = Tracker(config.tracking, config.classifier.age_groups) if stream and config.tracking.enabled else None
        worker = Worker(analyzer, gate, hud=config.output.hud and stream, tracker=tracker)
        output = options.output or _default_output(info.kind, info.name)
        events = stack.enter_context(EventsSink(options.events)) if options.events else None
        window = None
        if options.window and config.output.window:
            if display_available():
                window = stack.enter_context(PreviewWindow(config.output.window_name))
            else:
                log.warning("no display found (DISPLAY is not set): running without a preview window")
        bar = _progress_bar(info.frame_count, options.progress if info.kind == "file" else False)
        if bar is not None:
            stack.callback(bar.close)
        video: Optional[VideoFileSink] = None
        stopped_by = "end of input"
        t_start = time.monotonic()
        try:
            for frame in source:
                result, annotated = worker.process(frame, dropped=source.stats.dropped)
                t0 = time.perf_counter()
                if output is not None:
                    if info.kind in ("image", "folder"):
                        write_image(_image_output_path(info.kind, output, frame.source), annotated)
                    else:
                        if video is None:
                            video = stack.enter_context(
                                VideoFileSink(output, info.fps, (frame.bgr.shape[1], frame.bgr.shape[0]), config.output.codecs)
                            )
                        video.write(annotated)
                worker.stats.add_ms("encode", (time.perf_counter() - t0) * 1000.0)
                if events is not None:
                    events.write(result)
                    for record in worker.pop_records():
                        events.write_record(record)
                worker.stats.mark_out()
                if bar is not None:
                    bar.update(1)
                if window is not None and not window.show(annotated):
                    stopped_by = "window closed"
                    break
        except KeyboardInterrupt:
            stopped_by = "interrupted"
            log.warning("stopping: interrupted; finalising outputs")
        elapsed = time.monotonic() - t_start
        for record in worker.finish():
            if events is not None:
                events.write_record(record)
    stats = worker.stats
    summary = {
        "source": info.name,
        "kind": info.kind,
        "stopped_by": stopped_by,
        "frames_read": source.stats.frames_read,
        "frames_out": stats.frames_out,
        "analysed": stats.analysed,
        "skipped": stats.skipped,
        "dropped": source.stats.dropped,
        "reconnects": source.stats.reconnects,
        "elapsed_s": round(elapsed, 3),
        "fps": round(stats.frames_in / elapsed, 2) if elapsed > 0 else 0.0,
        "first_output_s": None if stats.first_output_s is None else round(stats.first_output_s - stats.started_s, 3),
        "faces_classified": stats.faces_classified,
        "stages": stats.percentiles(),
        "output": None if output is None else str(output),
        "events": None if options.events is None else str(options.events),
    }
    if tracker is not None:
        people = summarise(worker.ended_tracks, config.classifier.age_groups)
        summary["people"] = {key: people[key] for key in ("people", "by_gender", "by_age_group")}
        if options.report is not None:
            write_report(worker.ended_tracks, options.report.with_suffix(".json"), options.report.with_suffix(".csv"),
                         config.classifier.age_groups)
            summary["report"] = [str(options.report.with_suffix(".json")), str(options.report.with_suffix(".csv"))]
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
