"""What a run's summary says: its counters (also read live by the web and MQTT), what is on disk,
and writing it as JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from .errors import StreamerError
from .outputs.files import write_bytes
from .outputs.recording import VideoSink
from .outputs.sinks import ImageSink, Sink
from .sources.capture import SourceInfo
from .worker import Worker

log = logging.getLogger(__name__)


def write_summary(summary: dict, path: Optional[Path], overwrite: bool, error: Optional[StreamerError]) -> None:
    """The summary as JSON at ``path``; a failure to write it is the run's error unless it has one."""
    if path is None:
        return
    try:
        write_bytes(path, (json.dumps(summary, indent=2) + "\n").encode("utf-8"), overwrite, "summary")
    except StreamerError as failure:
        if error is None:
            failure.summary = summary
            raise
        log.warning("%s", failure)


def recorded(info: SourceInfo, output: Optional[Path], pictures: Optional[Sink]) -> dict:
    """What is on disk, for the summary: frames in finished files, the segment files."""
    if isinstance(pictures, ImageSink):
        return {"frames_recorded": pictures.images_written}
    if isinstance(pictures, VideoSink):
        recorded: dict = {"frames_recorded": pictures.frames_in_file}
        if pictures.segments:
            recorded["segments"] = [str(path) for path in pictures.segments]
        if pictures.kept_at is not None:  # another output failed: not published as complete
            recorded["partial_output"] = str(pictures.kept_at)
        return recorded
    return {"frames_recorded": 0}


def counts(info: SourceInfo, capture_stats, worker: Worker, elapsed: float) -> dict:
    """The counters of the summary, also read live (``_LiveRun.snapshot``)."""
    stats = worker.stats
    return {
        "source": info.name,
        "kind": info.kind,
        "frames_read": capture_stats.frames_read,
        "frames_out": stats.frames_out,
        "analysed": stats.analysed,
        "skipped": stats.skipped,
        "dropped": capture_stats.dropped,
        "reconnects": capture_stats.reconnects,
        "undecodable": capture_stats.undecodable,
        "elapsed_s": round(elapsed, 3),
        "fps": round(stats.frames_out / elapsed, 2) if elapsed > 0 else 0.0,
        "faces_classified": stats.faces_classified,
        "stages": stats.percentiles(),
    }


def summary_of(info: SourceInfo, capture_stats, worker: Worker, stopped_by: str, elapsed: float, t_run: float,
             output: Optional[Path], events: Optional[Path]) -> dict:
    first = worker.stats.first_output_s
    summary = counts(info, capture_stats, worker, elapsed)
    summary.update(
        stopped_by=stopped_by,
        # From the start of the run (source opened, models loaded) to the first frame written.
        first_output_s=None if first is None else round(first - t_run, 3),
        output=None if output is None else str(output),
        events=None if events is None else str(events),
    )
    return summary
