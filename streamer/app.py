"""The composition root: wires source -> worker -> sinks for one run and guarantees cleanup.

Photos and folders give annotated images; files and live sources give an annotated video (every
frame of a file; live frames as they come), events and a summary. Ctrl-C and SIGTERM stop the run
cleanly: outputs are finalised and the source is released.

Every output path is checked before the first frame (not the source, not an existing file unless
``--overwrite``, the right type, a writable folder), and every ending (end of input, a user stop,
an error) finalises the outputs and writes the summary, which counts only frames that are in a
finished file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .sources import open_source
from .config import Config
from .draw import LabelStyle
from .errors import SinkError, StreamerError
from .flow import BoxFlow
from .motion import MotionGate
from .pipeline import FaceAnalyzer, build_analyzer
from .sinks import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    BackgroundVideoWriter,
    EventsSink,
    PreviewWindow,
    SegmentedVideoSink,
    VideoFileSink,
    display_available,
    existing_segments,
    is_special,
    make_parent,
    os_reason,
    part_path,
    publish,
    segment_path,
    write_bytes,
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
    overwrite: bool = False  # replace existing output files (else they are refused before the run)


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


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_writable(path: Path, what: str, overwrite: bool, folder: bool = False) -> None:
    """Before the first frame: ``path`` can be written (its folder exists or can be made, and
    takes a new file) and does not replace anything without ``overwrite``. SinkError otherwise."""
    if is_special(path):
        try:
            with open(path, "ab"):
                pass
        except OSError as error:
            raise SinkError(f"{what} {path}: cannot be opened for writing ({os_reason(error)})") from None
        return
    if path.is_dir() and not folder:
        raise SinkError(f"{what} {path} is a folder; expected a file path")
    if path.exists() and not path.is_dir():
        if folder:
            raise SinkError(f"{what} {path} is a file; expected a folder (or a path that does not exist yet)")
        if not overwrite:
            raise SinkError(f"{what} {path} already exists; pass --overwrite to replace it, or choose another path")
        if not os.stat(path).st_mode & 0o222:
            raise SinkError(f"{what} {path} is read-only; make it writable or choose another path")
    make_parent(path / "x" if folder else path, what)
    probe = part_path((path if folder else path.parent) / "write-test")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.unlink(probe)
    except OSError as error:
        raise SinkError(f"{what} {path}: cannot write in {probe.parent} ({os_reason(error)}); "
                        "choose a path in a writable folder") from None


def _planned_files(kind: str, output: Optional[Path], image_paths: Sequence[Path],
                   segmented: bool) -> List[Tuple[Path, str]]:
    """The annotated files a run will write, with what to call them in messages."""
    if output is None:
        return []
    if kind in ("file", "live"):
        if output.suffix.lower() not in VIDEO_EXTENSIONS:
            got = "an image path" if output.suffix.lower() in IMAGE_EXTENSIONS else f"'{output.suffix or 'no suffix'}'"
            raise SinkError(f"--output {output}: this run writes a video, but got {got}; "
                            f"use one of {', '.join(VIDEO_EXTENSIONS)}")
        return [(segment_path(output, 1) if segmented else output, "output video")]
    if kind == "image" and output.suffix and output.suffix.lower() not in IMAGE_EXTENSIONS:
        raise SinkError(f"--output {output}: this run writes an image, but got '{output.suffix}'; "
                        f"use one of {', '.join(IMAGE_EXTENSIONS)} (or a folder)")
    if kind == "folder" and output.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
        raise SinkError(f"--output {output}: a folder of photos writes a folder of images, but got a file "
                        "name; pass a folder path")
    return [(_image_output_path(kind, output, str(path)), "output image") for path in image_paths]


def check_outputs(kind: str, source: str, image_paths: Sequence[Path], output: Optional[Path],
                  others: Sequence[Tuple[Optional[Path], str]], overwrite: bool, segmented: bool) -> None:
    """Refuse, before any work, outputs that would destroy the source or each other, replace a file
    without ``overwrite``, have the wrong type, or sit where nothing can be written."""
    source_path = Path(source).expanduser()
    local = source_path.exists()
    inputs = list(image_paths) or ([source_path] if local else [])
    files = _planned_files(kind, output, image_paths, segmented)
    files += [(path, what) for path, what in others if path is not None]
    if kind == "folder" and output is not None and local and _same_file(output, source_path):
        raise SinkError(f"--output {output} is the source folder; its photos would be overwritten; choose another folder")
    seen: Dict[Path, str] = {}
    for path, what in files:
        for src in inputs:
            if _same_file(path, src):
                raise SinkError(f"{what} {path} is the source {src}; writing it would destroy the input; "
                                "choose another path")
        key = path.resolve()
        if key in seen and not is_special(path):
            raise SinkError(f"{what} {path} is also the {seen[key]}; give each output its own path")
        seen[key] = what
    if kind == "folder" and output is not None:
        _check_writable(output, "output folder", overwrite, folder=True)
    for path, what in files:
        _check_writable(path, what, overwrite)
    if segmented and output is not None and not overwrite:
        old = existing_segments(output)
        if old:
            raise SinkError(f"output video {output}: segments of an earlier recording exist ({old[0].name} ...); "
                            "pass --overwrite to replace them, or choose another path")


class _StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM ask the run to stop at the next frame boundary, so that the
    video, the events and the summary always agree on the frames written. While the loop waits
    for a frame (a stalled camera, a reconnect) the signal interrupts the wait at once, and a
    second signal interrupts whatever runs (a stage that hangs). Once the loop is over
    (``finishing``), signals are noted but interrupt nothing: finishing the files and the summary
    is bounded work, and cutting it short would lose them."""

    def __init__(self) -> None:
        self.requested = False
        self.waiting = False
        self.finishing = False

    def _handler(self, signum, _frame) -> None:
        if self.finishing:
            if not self.requested:
                log.warning("already finishing the outputs; stopping when they are written")
            self.requested = True
            return
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
    its size is known; a live recording in segments of ``segment_s``) and the events file.
    Registered on the run's ExitStack, so they are finalised however the run ends; ``close``
    finishes them where a failure can still be reported."""

    def __init__(self, stack: contextlib.ExitStack, kind: str, fps: float, output: Optional[Path],
                 events: Optional[Path], codecs: Sequence[str], on_encode_ms=None, overwrite: bool = False,
                 segment_s: float = 0.0) -> None:
        self._stack, self._kind, self._fps, self._codecs = stack, kind, fps, codecs
        self._on_encode_ms = on_encode_ms
        self._overwrite = overwrite
        self._segment_frames = int(round(segment_s * fps)) if kind == "live" and segment_s > 0 else 0
        self.output = output
        self.events = stack.enter_context(EventsSink(events, overwrite)) if events else None
        self._video: Optional[BackgroundVideoWriter] = None
        self._segments: Optional[SegmentedVideoSink] = None
        self._live_t0_s: Optional[float] = None
        self._video_frames = 0
        self.images_written = 0

    @property
    def segmented(self) -> bool:
        return self._segment_frames > 0

    def write_frame(self, frame: Frame, annotated) -> None:
        if self.output is None:
            return
        if self._kind in ("image", "folder"):
            write_image(_image_output_path(self._kind, self.output, frame.source), annotated, self._overwrite)
            self.images_written += 1
            return
        if self._video is None:
            size_wh = (annotated.shape[1], annotated.shape[0])
            if self.segmented:
                if self._overwrite:
                    for old in existing_segments(self.output):
                        os.unlink(old)  # --overwrite: an older, longer recording must not trail this one
                sink = self._segments = SegmentedVideoSink(self.output, self._fps, size_wh, self._codecs,
                                                           self._segment_frames, self._overwrite)
            else:
                sink = VideoFileSink(self.output, self._fps, size_wh, self._codecs, self._overwrite)
            self._stack.enter_context(sink)
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

    def close(self) -> None:
        """Finish every file, each even when another failed; the first failure is raised."""
        failures = []
        for sink in (self._video, self.events):
            if sink is not None:
                try:
                    sink.close()
                except StreamerError as failure:
                    failures.append(failure)
        for failure in failures[1:]:
            log.warning("also: %s", failure)
        if failures:
            raise failures[0]

    def recorded(self) -> dict:
        """What is on disk, for the summary: frames in finished video files, the segment files."""
        if self._kind in ("image", "folder"):
            return {"frames_recorded": self.images_written if self.output is not None else 0}
        recorded = {"frames_recorded": self._video.frames_in_file if self._video is not None else 0}
        if self._segments is not None:
            recorded["segments"] = [str(path) for path in self._segments.paths]
        return recorded


def _summary_path(config: Config, options: RunOptions) -> Optional[Path]:
    if options.summary_json is not None:
        return options.summary_json
    return Path(config.output.summary_json) if config.output.summary_json else None


def _report_paths(options: RunOptions) -> Tuple[Optional[Path], Optional[Path]]:
    if options.report is None:
        return None, None
    return options.report.with_suffix(".json"), options.report.with_suffix(".csv")


def _write_report(tracks, paths: Tuple[Path, Path], age_groups, overwrite: bool) -> None:
    """The people report through temporary names, so both files appear finished or not at all."""
    parts = (part_path(paths[0]), part_path(paths[1]))
    try:
        write_report(tracks, parts[0], parts[1], age_groups)
        for part, path in zip(parts, paths):
            publish(part, path, overwrite)
    finally:
        for part in parts:
            if part.exists():
                part.unlink()


def _first(error: Optional[StreamerError], failure: StreamerError) -> StreamerError:
    """The error the run ends with is the first; later ones (often the same full disk) are warnings."""
    if error is None:
        return failure
    log.warning("also: %s", failure)
    return error


def run(config: Config, options: RunOptions, analyzer: Optional[FaceAnalyzer] = None) -> dict:
    """Process one source end to end and return the summary (also written as JSON when asked).
    Raises StreamerError subclasses on bad input, with the summary of what was done (written too)
    as ``error.summary``; a user stop is not an error."""
    t_run = time.monotonic()
    overwrite = options.overwrite or config.output.overwrite
    summary_path = _summary_path(config, options)
    report_paths = _report_paths(options)
    error: Optional[StreamerError] = None
    stop = _StopSignals()
    # Two stacks: the signal handlers (outer) stay until the summary is written, so a late Ctrl-C
    # cannot cut the finishing short; the source and the files (inner) close before the summary.
    with contextlib.ExitStack() as outer:
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(open_source(options.source, config.capture))
            info = source.info
            output = options.output or _default_output(info.kind, info.name)
            segmented = info.kind == "live" and config.output.segment_s > 0
            check_outputs(info.kind, options.source, getattr(source, "paths", ()), output,
                          [(options.events, "events file"), (summary_path, "summary"),
                           (report_paths[0], "report"), (report_paths[1], "report")], overwrite, segmented)
            analyzer = analyzer or build_analyzer(config, None, photos=info.kind in ("image", "folder"))
            # From here on a stop request ends the run at a frame boundary (before: at once, as
            # Ctrl-C does, e.g. during a model download).
            outer.enter_context(stop.installed())
            stream = info.kind in ("file", "live")
            tracker = Tracker(config.tracking, config.classifier.age_groups) if stream and config.tracking.enabled else None
            if options.report is not None and tracker is None:
                log.warning("--report needs tracked mode on a video or stream (tracking.enabled); no report written")
            flow = BoxFlow() if tracker is not None and config.tracking.flow else None
            worker = Worker(analyzer, MotionGate(config.motion) if stream else None, config.output.hud and stream,
                            tracker, flow, config.tracking.region_grow, LabelStyle.from_config(config.classifier))
            outputs = _Outputs(stack, info.kind, info.fps, output, options.events, config.output.codecs,
                               lambda ms: worker.stats.add_ms("encode", ms), overwrite, config.output.segment_s)
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
            except StreamerError as failure:
                # A source that is lost for good or an output that failed: finish what can be finished
                # (open tracks get their end records) and report it, then fail.
                error, stopped_by = failure, "error"
            elapsed = time.monotonic() - t_loop
            stop.finishing = True
            try:
                outputs.write_records(worker.finish())
            except StreamerError as failure:
                error = _first(error, failure)
            try:
                outputs.close()
            except StreamerError as failure:
                error = _first(error, failure)
        summary = _summary(info, source.stats, worker, stopped_by, elapsed, t_run, output, options.events)
        summary.update(outputs.recorded())
        if isinstance(error, SinkError) and not summary["frames_recorded"]:
            summary["output"] = None  # the output that failed is not there: the summary must not point at it
        if tracker is not None:
            people = summarise(worker.ended_tracks, config.classifier.age_groups)
            summary["people"] = {key: people[key] for key in ("people", "by_gender", "by_age_group")}
            if options.report is not None:
                try:
                    _write_report(worker.ended_tracks, report_paths, config.classifier.age_groups, overwrite)
                    summary["report"] = [str(path) for path in report_paths]
                except StreamerError as failure:
                    error = _first(error, failure)
        if error is not None:
            summary["error"] = str(error)
        if summary_path is not None:
            try:
                write_bytes(summary_path, (json.dumps(summary, indent=2) + "\n").encode("utf-8"), overwrite, "summary")
            except StreamerError as failure:
                if error is None:
                    failure.summary = summary
                    raise
                log.warning("%s", failure)
    if error is not None:
        error.summary = summary
        raise error
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
        "undecodable": capture_stats.undecodable,
        "elapsed_s": round(elapsed, 3),
        "fps": round(stats.frames_out / elapsed, 2) if elapsed > 0 else 0.0,
        # From the start of the run (source opened, models loaded) to the first frame written.
        "first_output_s": None if stats.first_output_s is None else round(stats.first_output_s - t_run, 3),
        "faces_classified": stats.faces_classified,
        "stages": stats.percentiles(),
        "output": None if output is None else str(output),
        "events": None if events is None else str(events),
    }
