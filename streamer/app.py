"""The composition root: wires source -> worker -> sinks for one run and guarantees cleanup.

Photos and folders give annotated images; files and live sources give an annotated video (every
frame of a file; live frames as they come), events and a summary. Ctrl-C and SIGTERM stop the run
cleanly: outputs are finalised and the source is released.

Every output path is checked before the first frame (``streamer.outputs.plan``), and every ending (end
of input, a user stop, an error) finalises the sinks and writes the summary, which counts only
frames that are in a finished file. When an output fails (a full disk under the events file), the
others are not published as complete: the video is kept as ``<name>.partial.mp4`` and the summary
names it as ``partial_output``. The loop knows sinks only through the ``Sink`` protocol, so a
caller adds its own (the web stream, MQTT) with ``run(..., sinks=[...])``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence

from .audience import Audience
from .audience.tally import AudienceTally
from .config import Config
from .detectors import FaceDetector, build_mask_detector
from .errors import ConfigError, SinkError, StreamerError
from .outputs.files import write_bytes
from .outputs.plan import check_outputs, continue_live_outputs, default_output
from .outputs.recording import VideoSink
from .outputs.sinks import EventsSink, ImageSink, PreviewWindow, Sink, StopRun, display_available
from .picture.anonymize import build_anonymizer
from .picture.draw import LabelStyle
from .picture.regions import RegionOverlay
from .pipeline import FaceAnalyzer, build_analyzer
from .report.tally import PeopleTally
from .sources.capture import FrameSource, SourceInfo
from .sources.source import open_source, redact
from .stopping import StopSignals, pace
from .summary import counts, recorded, summary_of, write_summary
from .tracking.flow import BoxFlow
from .tracking.motion import MotionGate
from .tracking.tracker import Tracker
from .types import FrameResult, age_group_labels
from .worker import Finding, PictureSpec, Worker

if TYPE_CHECKING:
    from .report.build import ReportSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """What the command line asks of one run (config holds everything else)."""

    source: str
    output: Optional[Path] = None
    events: Optional[Path] = None
    window: bool = True
    summary_json: Optional[Path] = None
    progress: Optional[bool] = None  # None: a bar when stderr is a terminal
    report: Optional[Path] = None  # people report folder (tracked mode): streamer.report
    overwrite: bool = False  # replace existing output files (else they are refused before the run)
    paced: bool = False  # a video file is read at its own fps, not as fast as it decodes (serve's live view)
    default_output: bool = True  # no --output: write out/<name>_annotated.* (serve: write nothing)


def _progress_bar(total: Optional[int], enabled: Optional[bool]):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)


def _summary_path(config: Config, options: RunOptions) -> Optional[Path]:
    if options.summary_json is not None:
        return options.summary_json
    return Path(config.output.summary_json) if config.output.summary_json else None


def _first(error: Optional[StreamerError], failure: StreamerError) -> StreamerError:
    """The error the run ends with is the first; later ones (often the same full disk) are warnings."""
    if error is None:
        return failure
    log.warning("also: %s", failure)
    return error


class _LiveRun:
    """The run as sinks see it (``sinks.RunView``): the source's info and the summary so far."""

    def __init__(self, info: SourceInfo, source: FrameSource, worker: Worker, t_loop: float) -> None:
        self.info = info
        self._source, self._worker, self._t_loop = source, worker, t_loop
        self._elapsed_s: Optional[float] = None  # the loop's time once it is over
        self.people_in_view = 0

    def saw(self, result: FrameResult) -> None:
        self.people_in_view = len(result.faces)

    def end(self, elapsed_s: float) -> None:
        """The loop is over: nobody is in view any more, and the rates stay those of the run
        (not frames over a time that keeps growing while a service stays up)."""
        self._elapsed_s = elapsed_s
        self.people_in_view = 0

    def snapshot(self) -> dict:
        capture = self._source.stats
        elapsed = time.monotonic() - self._t_loop if self._elapsed_s is None else self._elapsed_s
        live = counts(self.info, capture, self._worker, elapsed)
        live.update(people_in_view=self.people_in_view, source_up=not capture.reconnecting)
        return live


def _write_all(sinks: Sequence[Sink], result: FrameResult, annotated, records: Sequence[dict],
               worker: Worker) -> Optional[str]:
    """One frame (and the records that came with it) to every sink; a sink's stop request (the
    window closed) is returned after every sink has the frame, so that the outputs agree."""
    user_stop = None
    t0 = time.perf_counter()
    try:
        for sink in sinks:
            try:
                sink.write(result, annotated)
                if records:
                    sink.write_records(records)
            except StopRun as stop:
                user_stop = user_stop or stop.reason
    finally:
        worker.stats.add_ms("output", (time.perf_counter() - t0) * 1000.0)
    return user_stop


def _close_all(sinks: List[Sink], failed: Optional[SinkError] = None) -> None:
    """Close every sink, each even when another failed; the first failure is raised. Once an
    output has failed (``failed``, or one failing here), the later ones are closed incomplete:
    a file that would be published as complete is kept as ``<name>.partial<suffix>``."""
    failures: List[StreamerError] = []
    while sinks:
        sink = sinks.pop(0)
        first_failed = failed or next((f for f in failures if isinstance(f, SinkError)), None)
        try:
            if first_failed is not None:
                sink.close_incomplete(f"{first_failed}")
            else:
                sink.close()
        except StreamerError as failure:
            failures.append(failure)
    for later in failures[1:]:
        log.warning("also: %s", later)
    if failures:
        raise failures[0]


def _close_quietly(sinks: List[Sink]) -> None:
    """The ExitStack's last resort (an unexpected exception): close what is still open."""
    try:
        _close_all(sinks)
    except StreamerError as failure:
        log.warning("%s", failure)


@dataclass
class _Shape:
    """What the opened source makes of the run: its outputs and whether it is a stream, tracked."""

    info: SourceInfo
    output: Optional[Path]
    stream: bool
    tracked: bool
    aggregate: bool  # output.privacy: aggregate: no picture anywhere


@dataclass
class _Outputs:
    """The run's sinks in write order (pictures, events, report, window, the caller's); each is on
    ``sinks`` as soon as it exists, so that it is closed however the run ends."""

    sinks: List[Sink] = field(default_factory=list)
    pictures: Optional[Sink] = None
    events: Optional[EventsSink] = None
    report: Optional[ReportSink] = None


@dataclass
class _Ending:
    """How the frame loop ended: ``stopped_by`` (end of input, interrupted, a window closed,
    error), the error to raise after the summary, and the loop's duration."""

    stopped_by: str = "end of input"
    error: Optional[StreamerError] = None
    elapsed_s: float = 0.0


def run(config: Config, options: RunOptions, analyzer: Optional[FaceAnalyzer] = None,
        sinks: Sequence[Sink] = ()) -> dict:
    """Process one source end to end and return the summary (also written as JSON when asked).
    ``sinks`` are outputs of the caller's (the web stream), written after the run's own; an
    MQTT sink is added when ``mqtt.enabled`` and the caller gave none (``streamer.outputs.mqtt``).
    Raises StreamerError subclasses on bad input, with the summary of what was done (written too)
    as ``error.summary``; a user stop is not an error. Ctrl-C is handled on the main thread only."""
    t_run = time.monotonic()
    early = _EarlyEnding(config, options, t_run)
    with early.summarised():  # an ending before the first frame (the source, a model, Ctrl-C) has its summary too
        sinks = [*sinks, *_mqtt_sinks(config, sinks)]  # mqtt.enabled (or --mqtt), whoever runs: run, serve
        aggregate = _aggregate_only(config, options)  # a picture asked of an aggregate run: refused before anything opens
    return _run(config, options, analyzer, sinks, aggregate, early)


def _run(config: Config, options: RunOptions, analyzer: Optional[FaceAnalyzer], sinks: Sequence[Sink],
         aggregate: bool, early: "_EarlyEnding") -> dict:
    t_run = early.t_run
    stop = StopSignals()
    # Two stacks: the signal handlers (outer) stay until the summary is written, so a late Ctrl-C
    # cannot cut the finishing short; the source and the sinks (inner) close before the summary.
    with contextlib.ExitStack() as outer:
        with contextlib.ExitStack() as stack:
            with early.summarised():
                source = stack.enter_context(open_source(options.source, config.capture))
                early.info = source.info
                shape = _shape(config, options, source, aggregate)
                analyzer = analyzer or build_analyzer(config, None, photos=shape.info.kind in ("image", "folder"))
            # From here on a stop request ends the run at a frame boundary (before: at once, as
            # Ctrl-C does, e.g. during a model download).
            outer.enter_context(stop.installed())
            worker = build_worker(config, analyzer, shape.stream, shape.tracked, shape.aggregate)
            outputs = _Outputs()
            stack.callback(_close_quietly, outputs.sinks)
            _open_sinks(outputs, config, options, shape, worker, stop, sinks)
            ending = _loop(source, worker, outputs.sinks, stop, stack, options.progress, options.paced)
            ending.error = _finish(worker, outputs.sinks, ending.error)
        summary = _summarise(shape, source, worker, ending, t_run, options, outputs, sinks)
        # A live run's summary is of the latest run: a restarted service renews it.
        write_summary(summary, _summary_path(config, options), _overwrite(config, options) or shape.info.kind == "live",
                       ending.error)
    if ending.error is not None:
        ending.error.summary = summary
        raise ending.error
    return summary


class _EarlyEnding:
    """The summary of a run that ends before its first frame: the source did not open (an empty
    file, a camera that is not there, a stream that fails or stalls), a model did not load, an
    output was refused, or Ctrl-C came while opening. README: the summary is written at every
    ending, errors included; it then says what was asked, that nothing was done, and why."""

    def __init__(self, config: Config, options: RunOptions, t_run: float) -> None:
        self.config, self.options, self.t_run = config, options, t_run
        self.info: Optional[SourceInfo] = None

    @contextlib.contextmanager
    def summarised(self) -> Iterator[None]:
        try:
            yield
        except StreamerError as error:
            self._write("error", error)
            raise
        except KeyboardInterrupt:
            self._write("interrupted", None)
            raise

    def _write(self, stopped_by: str, error: Optional[StreamerError]) -> None:
        path = _summary_path(self.config, self.options)
        if path is None:
            return
        summary: dict = {
            "source": self.info.name if self.info is not None else redact(self.options.source),
            "kind": self.info.kind if self.info is not None else None,
            "frames_read": 0, "frames_out": 0, "analysed": 0, "skipped": 0, "dropped": 0, "reconnects": 0,
            "undecodable": 0, "elapsed_s": 0.0, "fps": 0.0, "faces_classified": 0, "stages": {},
            "stopped_by": stopped_by, "first_output_s": None, "output": None,
            "events": None, "frames_recorded": 0,
        }
        if error is not None:
            summary["error"] = str(error)
        overwrite = _overwrite(self.config, self.options) or (self.info is not None and self.info.kind == "live")
        try:
            write_bytes(path, (json.dumps(summary, indent=2) + "\n").encode("utf-8"), overwrite, "summary")
        except StreamerError as failure:
            # The run's own error is the one line to show; the summary path may be what was refused.
            log.info("no summary written: %s", failure)
        if error is not None:
            error.summary = None  # nothing was done: the command line prints no summary block


def _mqtt_sinks(config: Config, given: Sequence[Sink]) -> List[Sink]:
    """The MQTT sink ``mqtt.enabled`` asks for (``streamer.outputs.mqtt.build_sinks``), its module
    imported only then: paho, TLS and the message builders are start-up time a run without MQTT
    does not need (start to first annotated frame)."""
    if not config.mqtt.enabled:
        return []
    from .outputs.mqtt import build_sinks

    return list(build_sinks(config, given))


def _overwrite(config: Config, options: RunOptions) -> bool:
    return options.overwrite or config.output.overwrite


def _shape(config: Config, options: RunOptions, source: FrameSource, aggregate: bool) -> _Shape:
    """Decide the outputs from what the source turned out to be, and check them all before the
    first frame (``check_outputs``: StreamerError on an output that could not be written)."""
    info = source.info
    output = None if aggregate else options.output or (
        default_output(info.kind, info.name) if options.default_output else None)
    stream = info.kind in ("file", "live")
    tracked = stream and config.tracking.enabled
    report_files = []
    if options.report is not None:  # the report's module only when one is asked for (start-up time)
        from .report.build import report_paths

        report_files = report_paths(options.report)
    if options.report is not None and not tracked:
        log.warning("--report needs tracked mode on a video or stream (tracking.enabled); no report written")
        report_files = []  # nothing will be written there: do not make its folder either
    summary_path = _summary_path(config, options)
    segmented = info.kind == "live" and config.output.segment_s > 0
    if info.kind == "live" and not _overwrite(config, options):
        output = continue_live_outputs(output, segmented, report_files)
    check_outputs(info.kind, options.source, getattr(source, "paths", ()), output,
                  [(options.events, "events file"), (summary_path, "summary"),
                   *[(path, "report") for path in report_files]], _overwrite(config, options), segmented,
                  kept=[options.events, summary_path] if info.kind == "live" else [])
    return _Shape(info, output, stream, tracked, aggregate)


def build_worker(config: Config, analyzer: FaceAnalyzer, stream: bool, tracked: bool, aggregate: bool,
                 mask_detector: Optional[FaceDetector] = None) -> Worker:
    """The worker a run of this config needs: gate, tracker and flow for streams, the picture spec
    from ``output`` (masks, labels, HUD; nothing drawn in aggregate mode), the people tally when tracked.
    ``mask_detector``: one already built (the web service's photos keep theirs), else
    ``build_mask_detector(config)``. A photo run and the web service's photos use the same one
    (stream and tracked False), so their pictures agree."""
    tracker = Tracker(config.tracking, config.classifier.age_groups) if tracked else None
    finding = Finding(
        analyzer=analyzer,
        gate=MotionGate(config.motion) if stream else None,
        tracker=tracker,
        flow=BoxFlow() if tracker is not None and config.tracking.flow else None,
        region_grow=config.tracking.region_grow,
    )
    out = config.output
    anonymizer = build_anonymizer(out.anonymize, out.anonymize_shape, out.anonymize_scale,
                                  # Photos are unrelated pictures: a face box of one is nothing to hold on the next.
                                  out.anonymize_hold_frames if stream else 0)
    picture = PictureSpec(
        hud=out.hud and stream, label_style=LabelStyle.from_config(config.classifier), labels=out.labels,
        pictures=not aggregate, anonymizer=anonymizer,
        mask_detector=mask_detector if mask_detector is not None else build_mask_detector(config),
        mask_interval_s=out.anonymize_detector_interval_s if stream else 0.0, mask_grow=out.anonymize_detector_grow,
        regions=RegionOverlay(config.audience) if tracked and config.audience.draw and (
            config.audience.zones or config.audience.lines) else None,
        # A stream's frames come fresh from the capture thread and are kept by nobody after the
        # worker: drawing on them saves a frame copy (and the memory of one) per frame.
        in_place=stream,
    )
    people = PeopleTally(config.report, config.classifier.age_groups) if tracked else None
    audience = config.audience if tracked and config.audience.enabled else None
    if not tracked and (config.audience.zones or config.audience.lines):
        log.warning("audience zones and lines need tracked mode on a video or stream (--mode tracked); "
                    "not measured in this run")
    return Worker(finding=finding, picture=picture, people=people,
                  audience=None if audience is None else Audience(audience),
                  audience_tally=None if audience is None else AudienceTally(
                      list(audience.zones), list(audience.lines), age_group_labels(config.classifier.age_groups),
                      audience.attention, config.report.min_seen_s))


def _open_sinks(outputs: _Outputs, config: Config, options: RunOptions, shape: _Shape, worker: Worker,
                stop: StopSignals, callers: Sequence[Sink]) -> None:
    """Open the run's sinks onto ``outputs`` in write order: pictures, events, report, window, the caller's."""
    overwrite = _overwrite(config, options)
    outputs.pictures = _picture_sink(config, shape.info, shape.output, overwrite, worker)
    if outputs.pictures is not None:
        outputs.sinks.append(outputs.pictures)
    if options.events is not None:
        # A live run continues the file: a service restarted after a stop, a crash or a reboot.
        outputs.events = EventsSink(options.events, overwrite, append=shape.info.kind == "live",
                                    camera=config.mqtt.camera)
        outputs.sinks.append(outputs.events)
    if options.report is not None and shape.tracked:
        from .report.build import ReportSink

        outputs.report = ReportSink(config.report, config.classifier.age_groups, options.report, overwrite,
                                    audience=config.audience)
        outputs.sinks.append(outputs.report)
    window = None if shape.aggregate else _open_window(config, options, shape.info, stop)
    if window is not None:
        outputs.sinks.append(window)
    outputs.sinks.extend(callers)


def _loop(source: FrameSource, worker: Worker, sinks: List[Sink], stop: StopSignals,
          stack: contextlib.ExitStack, progress: Optional[bool], paced: bool = False) -> _Ending:
    """Frames from the source through the worker to every sink, until the source ends, a sink asks
    to stop (the window closed), a stop signal comes, or an error (returned, not raised: what can
    be finished still is). ``paced``: a file is read at its own fps (serve's live view)."""
    info = source.info
    bar = _progress_bar(info.frame_count, progress if info.kind == "file" else False)
    if bar is not None:
        stack.callback(bar.close)
    ending = _Ending()
    t_loop = time.monotonic()
    live = _LiveRun(info, source, worker, t_loop)
    for sink in sinks:
        sink.start(live)
    frames = iter(source)
    try:
        while True:
            frame = stop.next_frame(frames)
            if frame is None:
                break
            if paced and info.kind == "file":
                pace(frame, t_loop, stop)
            result, annotated = worker.process(frame, dropped=source.stats.dropped)
            live.saw(result)
            user_stop = _write_all(sinks, result, annotated, worker.pop_records(), worker)
            worker.stats.mark_out()
            if bar is not None:
                bar.update(1)
            if user_stop is not None:
                ending.stopped_by = user_stop
                break
    except KeyboardInterrupt:
        ending.stopped_by = "interrupted"
        log.warning("stopping: interrupted; finalising outputs")
    except StreamerError as failure:
        # A source that is lost for good or an output that failed: finish what can be finished
        # (open tracks get their end records) and report it, then fail.
        ending.error, ending.stopped_by = failure, "error"
    ending.elapsed_s = time.monotonic() - t_loop
    live.end(ending.elapsed_s)
    stop.finishing = True
    return ending


def _finish(worker: Worker, sinks: List[Sink], error: Optional[StreamerError]) -> Optional[StreamerError]:
    """The open tracks' end records to every sink, then every sink closed; the run's error (the
    first of the loop's and these)."""
    final = worker.finish()
    for sink in list(sinks):
        try:
            if final:
                sink.write_records(final)
        except StreamerError as failure:
            error = _first(error, failure)
    try:
        _close_all(sinks, error if isinstance(error, SinkError) else None)
    except StreamerError as failure:
        error = _first(error, failure)
    return error


def _summarise(shape: _Shape, source: FrameSource, worker: Worker, ending: _Ending, t_run: float,
               options: RunOptions, outputs: _Outputs, callers: Sequence[Sink]) -> dict:
    """The run's summary: counts, stages, what is on disk, people, the error."""
    summary = summary_of(shape.info, source.stats, worker, ending.stopped_by, ending.elapsed_s, t_run, shape.output,
                       options.events)
    summary.update(recorded(shape.info, shape.output, outputs.pictures))
    if outputs.events is not None:
        summary.update(outputs.events.summary_fields())
    for sink in callers:  # a caller's sink may count its own (MQTT: messages published, dropped)
        summary.update(sink.summary_fields())
    if isinstance(ending.error, SinkError) and (not summary["frames_recorded"] or "partial_output" in summary):
        summary["output"] = None  # not there (it failed, or is kept as .partial): the summary must not point at it
    if worker.people is not None:
        summary["people"] = worker.people.counts()
        if outputs.report is not None and outputs.report.written is not None:
            summary["report"] = str(options.report)
    if worker.audience_tally is not None:
        summary["audience"] = worker.audience_tally.summary()
    if ending.error is not None:
        summary["error"] = str(ending.error)
    return summary


def _picture_sink(config: Config, info: SourceInfo, output: Optional[Path], overwrite: bool,
                  worker: Worker) -> Optional[Sink]:
    """The annotated images (photos, folders) or video (files, live) of the run, when it has an output."""
    if output is None:
        return None
    if info.kind in ("image", "folder"):
        return ImageSink(info.kind, output, overwrite)
    live = info.kind == "live"
    segment_frames = int(round(config.output.segment_s * info.fps)) if live and config.output.segment_s > 0 else 0
    return VideoSink(output, info.fps, config.output.codecs, live=live, segment_frames=segment_frames,
                     overwrite=overwrite, on_encode_ms=lambda ms: worker.stats.add_ms("encode", ms))


def _aggregate_only(config: Config, options: RunOptions) -> bool:
    """True for ``output.privacy: aggregate`` (said once in the log); ConfigError when the run
    is also asked for a picture."""
    if config.output.privacy != "aggregate":
        return False
    if options.output is not None:
        raise ConfigError(f"--output {options.output}: --privacy aggregate (output.privacy) writes no pictures; "
                          "drop --output, or run without aggregate privacy")
    if config.output.anonymize is not None:
        raise ConfigError(f"output.anonymize {config.output.anonymize} hides faces in pictures, but --privacy "
                          "aggregate (output.privacy) writes none; drop one of the two")
    log.info("privacy: aggregate only: no video, images, window or stream frames, no face crops kept; "
             "writing counts, tracks, labels, events and reports only")
    return True


def _open_window(config: Config, options: RunOptions, info: SourceInfo,
                 stop: "StopSignals") -> Optional[PreviewWindow]:
    if not (options.window and config.output.window):
        return None
    if not display_available():
        log.warning("no display found (DISPLAY is not set): running without a preview window")
        return None
    return PreviewWindow(config.output.window_name, hold=info.kind in ("image", "folder"),
                         stop_requested=lambda: stop.requested)


