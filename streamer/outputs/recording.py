"""Annotated video files: one finished file, a live recording in segments, a writer thread that
overlaps encoding with the next frame's work, and ``VideoSink``, the run's video output.

A video is written under a temporary name and moved into place only once it plays and holds every
frame written (``streamer.outputs.files``); a full disk or an encoder that cannot finish is a SinkError
saying how far it got.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import SinkError
from ..types import FrameResult
from .files import fsync_path, make_parent, os_reason, part_path, partial_path, publish, remove_quietly, size_text
from .sinks import Sink

log = logging.getLogger(__name__)

# The free space under a video is looked at every this many frames (one statvfs, microseconds):
# OpenCV's writer reports no error when the disk fills, so a full disk would only show at close.
_SPACE_CHECK_FRAMES = 25


class _Closing:
    """A context manager whose exit is ``close()``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def frames_in_file(path: Path) -> int:
    """Frames a finished video holds, from its index (a few ms); 0 when it does not open or its
    first frame does not decode."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened() or not capture.read()[0]:
            return 0
        return max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    finally:
        capture.release()


class VideoFileSink(_Closing):
    """An annotated video file: same size and fps as the source; codecs tried in order.

    ``write`` takes ``(H, W, 3)`` uint8 BGR frames of exactly ``size_wh``. The file is written under
    a temporary name; ``close`` checks that it plays and holds every frame written, then moves it
    into place (``frames_in_file``). A full disk, or a file that cannot be finished, is a SinkError
    saying how far it got, and leaves no file behind.
    """

    def __init__(self, path: Path, fps: float, size_wh: Tuple[int, int], codecs: Sequence[str],
                 overwrite: bool = False) -> None:
        self.path = Path(path)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.frames_written = 0
        self.frames_in_file = 0
        self._overwrite = overwrite
        self.incomplete: Optional[str] = None  # why the run's outputs are not complete (mark_incomplete)
        self.kept_at: Optional[Path] = None  # where the file went when it is not published as complete
        make_parent(self.path, "output video")
        self._part = part_path(self.path)
        self._writer: Optional[cv2.VideoWriter] = None
        self._closed = False
        self._resized = False
        tried: List[str] = []
        for codec in codecs:
            writer = cv2.VideoWriter(str(self._part), cv2.VideoWriter.fourcc(*codec), float(fps), self.size_wh)
            if writer.isOpened():
                self._writer, self.codec = writer, codec
                if tried:
                    log.warning("video codec(s) %s did not open for %s; using %s", ", ".join(tried), self.path, codec)
                break
            writer.release()
            remove_quietly(self._part)
            tried.append(codec)
        if self._writer is None:
            raise SinkError(
                f"cannot open output video {self.path} with any of the codecs {', '.join(codecs)}; "
                "use a .avi or .mp4 path in a writable folder, or set output.codecs in config.yaml"
            )

    def write(self, bgr: np.ndarray) -> None:
        if self._writer is None:
            raise SinkError(f"output video {self.path} is already closed")
        if (bgr.shape[1], bgr.shape[0]) != self.size_wh:
            # A stream that changes resolution mid-run: a file keeps one size, so scale (and say so once).
            if not self._resized:
                self._resized = True
                log.warning("%s: frames change size from %dx%d to %dx%d at frame %d; scaling them to the "
                            "first size (the aspect ratio may change)", self.path, *self.size_wh, bgr.shape[1],
                            bgr.shape[0], self.frames_written)
            bgr = cv2.resize(bgr, self.size_wh, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames_written += 1
        if self.frames_written % _SPACE_CHECK_FRAMES == 0 and self._disk_full():
            self._fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def _disk_full(self) -> bool:
        try:
            return os.statvfs(self._part.parent).f_bavail == 0
        except OSError:
            return False

    def _fail(self, error: BaseException, in_file: int = 0) -> None:
        try:
            encoded = self._part.stat().st_size
        except OSError:
            encoded = 0
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._closed = True
        remove_quietly(self._part)
        raise SinkError(
            f"output video {self.path} not written: {os_reason(error)} after {self.frames_written} frames "
            f"({size_text(encoded)} encoded, {in_file} frames in a playable file); the unfinished file was "
            "removed; free space or choose another --output"
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        in_file = frames_in_file(self._part)
        if in_file < self.frames_written:
            if self._disk_full():
                self._fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), in_file)
            self._fail(RuntimeError("the encoder could not finish the file"), in_file)
        try:
            fsync_path(self._part)
        except OSError as error:
            self._fail(error, in_file)
        if self.incomplete is not None:
            self.kept_at = partial_path(self.path)
            publish(self._part, self.kept_at, overwrite=True)  # a name only failed runs use
            log.warning("output video %s not published as complete: %s; its %d frames are kept at %s",
                        self.path, self.incomplete, in_file, self.kept_at)
            return
        publish(self._part, self.path, self._overwrite)
        self.frames_in_file = in_file
        log.info("wrote %d frames to %s", in_file, self.path)

    def mark_incomplete(self, reason: str) -> None:
        """At close, keep the file at ``partial_path`` instead of publishing it (another output failed)."""
        self.incomplete = reason


def segment_path(path: Path, number: int) -> Path:
    """The ``number``-th segment of a recording at ``path``: ``rec.mp4`` -> ``rec_00001.mp4``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_{number:05d}{path.suffix}")


def existing_segments(path: Path) -> List[Path]:
    """Segment files of a recording at ``path`` already on disk, in order."""
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"_\d{5,}" + re.escape(path.suffix) + "$")
    try:
        return sorted(p for p in path.parent.iterdir() if pattern.match(p.name))
    except OSError:
        return []


def next_segment_number(path: Path) -> int:
    """The number after the highest segment of a recording at ``path`` on disk (1 when none): a
    live recording restarted (a service after a crash or a reboot) continues the series."""
    numbers = [int(segment.stem[len(Path(path).stem) + 1:]) for segment in existing_segments(path)]
    return max(numbers, default=0) + 1


class SegmentedVideoSink(_Closing):
    """A live recording as a series of finished files (``rec_00001.mp4``, ``rec_00002.mp4`` ...),
    each ``segment_frames`` frames long, the way NVRs record: an MP4 plays only once its index is
    written at close, so a power cut or SIGKILL loses at most the segment being written.

    ``write`` takes ``(H, W, 3)`` uint8 BGR frames; ``paths`` lists the finished segments, numbered
    from ``first`` on.
    """

    def __init__(self, path: Path, fps: float, size_wh: Tuple[int, int], codecs: Sequence[str],
                 segment_frames: int, overwrite: bool = False, first: int = 1) -> None:
        self.path = Path(path)
        self._first = first
        self._args = (fps, size_wh, codecs)
        self._segment_frames = max(1, int(segment_frames))
        self._overwrite = overwrite
        self.paths: List[Path] = []
        self._finished_frames = 0
        self._kept_at: Optional[Path] = None
        self._incomplete: Optional[str] = None
        self._current: Optional[VideoFileSink] = self._open(first)
        self.codec = self._current.codec

    def _open(self, number: int) -> VideoFileSink:
        fps, size_wh, codecs = self._args
        return VideoFileSink(segment_path(self.path, number), fps, size_wh, codecs, self._overwrite)

    @property
    def frames_written(self) -> int:
        return self._finished_frames + (self._current.frames_written if self._current is not None else 0)

    @property
    def frames_in_file(self) -> int:
        return self._finished_frames

    def write(self, bgr: np.ndarray) -> None:
        if self._current is None:
            raise SinkError(f"recording {self.path} is already closed")
        if self._current.frames_written >= self._segment_frames:
            self._finish_current()
            self._current = self._open(self._first + len(self.paths))
        self._current.write(bgr)

    def close(self) -> None:
        if self._incomplete is not None and self._current is not None:
            self._current.mark_incomplete(self._incomplete)
        self._finish_current()

    def mark_incomplete(self, reason: str) -> None:
        """At close, the segment being written then is kept at its ``partial_path``; finished segments stay."""
        self._incomplete = reason

    @property
    def kept_at(self) -> Optional[Path]:
        return self._kept_at

    def _finish_current(self) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        try:
            current.close()
        finally:
            self._kept_at = current.kept_at or getattr(self, "_kept_at", None)
        if current.kept_at is None:
            self.paths.append(current.path)
            self._finished_frames += current.frames_in_file


class BackgroundVideoWriter(_Closing):
    """A VideoFileSink written from its own thread, so encoding overlaps the next frame's work.

    Nothing is dropped: ``write`` waits while ``queue_size`` frames are pending (a file keeps
    every frame). An encoder error is re-raised on the caller's thread at the next ``write`` or
    at ``close``; ``close`` writes what is queued, joins the thread and releases the file.
    ``on_encode_ms`` (optional) is called on the writer thread with each frame's encode time.

    4 pending frames: tracked mode at 640x480 ran as fast as with 8 and peaked ~3 MB lower (2 was
    ~10 % slower: the burst of cheap frames after each detector run waited on the encoder).
    """

    _DONE = object()
    _POLL_S = 0.1  # every blocking call wakes this often to check the writer thread is alive
    _JOIN_S = 30.0  # generous: the queue holds a few frames, each encoded in milliseconds

    def __init__(self, sink, queue_size: int = 4, on_encode_ms=None) -> None:
        self.sink = sink
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._on_encode_ms = on_encode_ms
        self._error: Optional[BaseException] = None
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=self._POLL_S)
                except queue.Empty:
                    continue
                if item is self._DONE:
                    return
                t0 = time.perf_counter()
                self.sink.write(item)
                if self._on_encode_ms is not None:
                    self._on_encode_ms((time.perf_counter() - t0) * 1000.0)
        except BaseException as error:  # carried to the caller's thread
            self._error = error

    def _put(self, item) -> None:
        while True:
            self._raise_error()
            if not self._thread.is_alive():
                raise SinkError(f"the writer thread of {self.sink.path} has stopped")
            try:
                self._queue.put(item, timeout=self._POLL_S)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, SinkError):
                raise error
            raise SinkError(f"writing {self.sink.path} failed: {error}") from error

    def write(self, bgr: np.ndarray) -> None:
        if self._closed:
            raise SinkError(f"output video {self.sink.path} is already closed")
        self._put(bgr)

    @property
    def frames_written(self) -> int:
        return self.sink.frames_written

    @property
    def frames_in_file(self) -> int:
        """Frames in finished, playable files (all written ones after a successful ``close``)."""
        return self.sink.frames_in_file

    def close(self) -> None:
        """Write what is queued, end the thread and finish the file. An encoder that hangs longer
        than ``_JOIN_S`` is a SinkError; the file is then left to the thread (releasing it under
        a running encoder could crash the process) and is not moved into place."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            try:
                self._put(self._DONE)
            except SinkError:
                pass  # the thread failed or ended: its error is raised below
            self._thread.join(timeout=self._JOIN_S)
            if self._thread.is_alive():
                self._stop.set()
                raise SinkError(f"output video {self.sink.path}: the encoder did not finish within "
                                f"{self._JOIN_S:.0f} s; the file was not finished")
        try:
            self._raise_error()
        finally:
            self.sink.close()


# A live recording repeats the last picture over a gap of up to this long (a slow frame, a short
# stall); longer gaps (a camera reconnect) are cut, or the file would freeze for minutes.
_MAX_LIVE_FILL_S = 2.0
_WRITE_QUEUE_BYTES = 8 * 2**20


class VideoSink(Sink):
    """The run's annotated video: opened on the first frame (when its size is known), encoded on a
    writer thread, a live recording in segments of ``segment_frames`` (0: one file).

    A file source gets every frame once. A live recording gets each frame as often as keeps the
    file in step with the clock, so that it plays in real time although the worker took fewer
    frames than the camera gave; a long gap (a reconnect) is bridged by at most _MAX_LIVE_FILL_S
    of frozen picture.
    """

    def __init__(self, path: Path, fps: float, codecs: Sequence[str], live: bool = False,
                 segment_frames: int = 0, overwrite: bool = False, on_encode_ms=None) -> None:
        self.path, self._fps, self._codecs, self._live = Path(path), fps, codecs, live
        self._segment_frames = segment_frames
        self._overwrite, self._on_encode_ms = overwrite, on_encode_ms
        self._writer: Optional[BackgroundVideoWriter] = None
        self._segments: Optional[SegmentedVideoSink] = None
        self._live_t0_s: Optional[float] = None
        self._frames = 0

    def write(self, result: FrameResult, annotated: Optional[np.ndarray]) -> None:
        if annotated is None:
            return
        if self._writer is None:
            self._writer = self._open((annotated.shape[1], annotated.shape[0]))
        for _ in range(self._copies(result.frame.t_s)):
            self._writer.write(annotated)
            self._frames += 1

    def _open(self, size_wh: Tuple[int, int]) -> BackgroundVideoWriter:
        file: _Closing
        if self._segment_frames > 0:
            if self._overwrite:
                for old in existing_segments(self.path):
                    os.unlink(old)  # --overwrite: an older, longer recording must not trail this one
            file = self._segments = SegmentedVideoSink(self.path, self._fps, size_wh, self._codecs,
                                                       self._segment_frames, self._overwrite,
                                                       first=next_segment_number(self.path))
        else:
            file = VideoFileSink(self.path, self._fps, size_wh, self._codecs, self._overwrite)
        try:
            # Frames waiting for the encoder: 4, or what fits in 8 MB (one 1080p frame), as capture's read-ahead.
            queue_size = max(1, min(4, _WRITE_QUEUE_BYTES // (size_wh[0] * size_wh[1] * 3)))
            return BackgroundVideoWriter(file, queue_size=queue_size, on_encode_ms=self._on_encode_ms)
        except BaseException:
            file.close()
            raise

    def _copies(self, t_s: float) -> int:
        if not self._live:
            return 1
        if self._live_t0_s is None:
            self._live_t0_s = t_s
        due = int((t_s - self._live_t0_s) * self._fps) + 1
        behind = due - self._frames
        if behind > self._fps * _MAX_LIVE_FILL_S:
            # Skip the rest of the gap in the file's clock rather than freeze the picture for it.
            self._live_t0_s += (behind - 1) / self._fps
            return 1
        return max(1, behind)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def close_incomplete(self, reason: str) -> None:
        if self._writer is not None:
            self._writer.sink.mark_incomplete(reason)
            self._writer.close()

    @property
    def kept_at(self) -> Optional[Path]:
        """The ``.partial`` file kept when another output failed, or None."""
        return self._writer.sink.kept_at if self._writer is not None else None

    @property
    def frames_in_file(self) -> int:
        """Frames in finished, playable files."""
        return self._writer.frames_in_file if self._writer is not None else 0

    @property
    def segments(self) -> List[Path]:
        return list(self._segments.paths) if self._segments is not None else []
