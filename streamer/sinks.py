"""Where annotated frames and results go: video file, images, JSON Lines events, preview window.

Only this module touches files and windows; every sink is a context manager that releases in
``close()`` (idempotent), also when the run stops early or Ctrl-C arrives.

Files are finished or absent (house rule 13c): each is written under a temporary name in its own
folder (``.<stem>.part-<pid>-<n><suffix>``), every write is checked, and only a complete file is
moved into place, so a reader never sees half a file and two runs never interleave in one. An
existing file is replaced only with ``overwrite`` (``--overwrite``). Devices and FIFOs
(``/dev/null``, ``/dev/full``) are written in place: they cannot be renamed over. The events file is
the exception: a log followed while it grows (see EventsSink).
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path
from typing import IO, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import SinkError
from .types import FrameResult

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Containers OpenCV's FFmpeg writer picks from the suffix and that hold the codecs in output.codecs.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
# The free space under a video is looked at every this many frames (one statvfs, microseconds):
# OpenCV's writer reports no error when the disk fills, so a full disk would only show at close.
_SPACE_CHECK_FRAMES = 25
_part_numbers = itertools.count(1)


def part_path(final: Path) -> Path:
    """The temporary name ``final`` is written under: the same folder (so ``os.replace`` is atomic)
    and the same suffix (OpenCV chooses the container from it), hidden, unique to this process."""
    final = Path(final)
    return final.with_name(f".{final.stem}.part-{os.getpid()}-{next(_part_numbers)}{final.suffix}")


def is_special(path: Path) -> bool:
    """True for an existing device or FIFO (``/dev/null``, ``/dev/full``): written in place."""
    try:
        path = Path(path)
        return path.exists() and not path.is_file() and not path.is_dir()
    except OSError:
        return False


def size_text(n_bytes: int) -> str:
    """``1234567`` -> ``"1.2 MB"``, for messages."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def os_reason(error: BaseException) -> str:
    """A short reason for an OSError, for one-line messages."""
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            return "the disk is full (No space left on device)"
        return error.strerror or str(error)
    return str(error)


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_path(path: Path) -> None:
    """Data on disk before the rename: after a power cut the file is whole or absent, never empty."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_parent(path: Path, what: str) -> None:
    """Create ``path``'s folder; a SinkError naming ``what`` when it cannot be made."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SinkError(f"{what} {path}: cannot create its folder, a file is in the way; "
                        "choose another path") from None
    except OSError as error:
        raise SinkError(f"{what} {path}: cannot create its folder ({os_reason(error)}); "
                        "choose a path in a writable folder") from None


def publish(part: Path, final: Path, overwrite: bool) -> None:
    """Move the finished ``part`` to ``final``. Without ``overwrite`` an existing ``final`` (made
    meanwhile by another run) is kept and the SinkError says where this run's file is."""
    appeared = (f"{final} appeared while this run was writing it (another run?); it was left as it is and "
                f"this run's file kept at {part}; pass --overwrite to replace it")
    try:
        if overwrite:
            os.replace(part, final)
            return
        try:
            os.link(part, final)  # atomic "create if absent"
        except FileExistsError:
            raise SinkError(appeared) from None
        except OSError:  # no hard links here (FAT, some network shares): check, then rename
            if os.path.lexists(final):
                raise SinkError(appeared) from None
            os.replace(part, final)
            return
        os.unlink(part)
    except OSError as error:
        raise SinkError(f"{final}: could not move the finished file into place ({os_reason(error)}); "
                        f"it is at {part}") from None


def write_bytes(path: Path, data: bytes, overwrite: bool, what: str) -> None:
    """Write ``data`` as the whole of ``path`` (temporary name, fsync, rename); a SinkError naming
    ``what`` and how much was to be written when any step fails (nothing is left behind then)."""
    path = Path(path)
    if is_special(path):
        try:
            with open(path, "wb") as handle:
                handle.write(data)
        except OSError as error:
            raise SinkError(f"{what} {path}: could not write {size_text(len(data))} ({os_reason(error)})") from None
        return
    make_parent(path, what)
    part = part_path(path)
    try:
        with open(part, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        _remove(part)
        raise SinkError(f"{what} {path} not written: {os_reason(error)} ({size_text(len(data))} to write); "
                        "nothing was left there; free space or choose another path") from None
    publish(part, path, overwrite)


class _Closing:
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
        make_parent(self.path, "output video")
        self._part = part_path(self.path)
        self._writer: Optional[cv2.VideoWriter] = None
        self._closed = False
        self._resized = False
        tried = []
        for codec in codecs:
            writer = cv2.VideoWriter(str(self._part), cv2.VideoWriter_fourcc(*codec), float(fps), self.size_wh)
            if writer.isOpened():
                self._writer, self.codec = writer, codec
                if tried:
                    log.warning("video codec(s) %s did not open for %s; using %s", ", ".join(tried), self.path, codec)
                break
            writer.release()
            _remove(self._part)
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
        _remove(self._part)
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
            _fsync_path(self._part)
        except OSError as error:
            self._fail(error, in_file)
        publish(self._part, self.path, self._overwrite)
        self.frames_in_file = in_file
        log.info("wrote %d frames to %s", in_file, self.path)


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


class SegmentedVideoSink(_Closing):
    """A live recording as a series of finished files (``rec_00001.mp4``, ``rec_00002.mp4`` ...),
    each ``segment_frames`` frames long, the way NVRs record: an MP4 plays only once its index is
    written at close, so a power cut or SIGKILL loses at most the segment being written.

    ``write`` takes ``(H, W, 3)`` uint8 BGR frames; ``paths`` lists the finished segments.
    """

    def __init__(self, path: Path, fps: float, size_wh: Tuple[int, int], codecs: Sequence[str],
                 segment_frames: int, overwrite: bool = False) -> None:
        self.path = Path(path)
        self._args = (fps, size_wh, codecs)
        self._segment_frames = max(1, int(segment_frames))
        self._overwrite = overwrite
        self.paths: List[Path] = []
        self._finished_frames = 0
        self._current: Optional[VideoFileSink] = self._open(1)
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
            self._current = self._open(len(self.paths) + 1)
        self._current.write(bgr)

    def _finish_current(self) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        current.close()
        self.paths.append(current.path)
        self._finished_frames += current.frames_in_file

    def close(self) -> None:
        self._finish_current()


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

    def __init__(self, sink, queue_size: int = 4, on_encode_ms=None) -> None:
        self.sink = sink
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._on_encode_ms = on_encode_ms
        self._error: Optional[BaseException] = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
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
        if self._closed:
            return
        self._closed = True
        try:
            if self._thread.is_alive():
                self._put(self._DONE)
                # Generous: the queue holds a few frames, each encoded in milliseconds.
                self._thread.join(timeout=30.0)
            self._raise_error()
        finally:
            self.sink.close()


def write_image(path: Path, bgr: np.ndarray, overwrite: bool = False) -> None:
    """Write one annotated ``(H, W, 3)`` uint8 BGR image (the suffix picks the format); the folder
    is created; the file appears complete or not at all; any failure is a SinkError."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise SinkError(f"output image {path} needs an image extension ({', '.join(IMAGE_EXTENSIONS)})")
    try:
        ok, encoded = cv2.imencode(path.suffix.lower(), bgr)
    except cv2.error:
        ok, encoded = False, None
    if not ok:
        raise SinkError(f"output image {path}: OpenCV could not encode a {bgr.shape[1]}x{bgr.shape[0]} image "
                        f"as {path.suffix}; choose .jpg or .png")
    write_bytes(path, encoded.tobytes(), overwrite, "output image")


class EventsSink(_Closing):
    """JSON Lines, one object per frame (schema in README).

    Unlike the other files, this one is a log that others follow while the run goes on (a live
    run lasts months), so it is written in place rather than renamed into place at the end: it
    is created exclusively (two runs never interleave in it; ``overwrite`` removes an older file
    first), and each line is written and flushed whole. A failed write is a SinkError saying how
    many lines are in the file, which is cut back to its last whole line.
    """

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        self.path = Path(path)
        special = is_special(self.path)
        if not special:
            make_parent(self.path, "events file")
            if overwrite and self.path.is_file():
                _remove(self.path)
        try:
            self._file: Optional[IO[bytes]] = open(self.path, "wb" if special else "xb")
        except FileExistsError:
            raise SinkError(f"events file {self.path} already exists; pass --overwrite to replace it, "
                            "or choose another path") from None
        except OSError as error:
            raise SinkError(f"cannot write events file {self.path}: {os_reason(error)}") from None
        self._seekable = not special
        self.lines = 0
        self._bytes = 0

    def write(self, result: FrameResult) -> None:
        self.write_record(result.to_event())

    def write_record(self, record: dict) -> None:
        if self._file is None:
            raise SinkError(f"events file {self.path} is already closed")
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as error:
            self._fail(error)
        self.lines += 1
        self._bytes += len(line)

    def _fail(self, error: OSError) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            try:
                if self._seekable:
                    os.ftruncate(handle.fileno(), self._bytes)  # no half line at the end
                    handle.seek(self._bytes)
                handle.close()
            except OSError:
                pass  # the same failure again, for the bytes it could not write
        raise SinkError(f"events file {self.path}: {os_reason(error)} after {self.lines} lines "
                        f"({size_text(self._bytes)}), which are all it holds; free space or choose another "
                        "--events path")

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
            if self._seekable:
                os.fsync(self._file.fileno())
            self._file.close()
        except OSError as error:
            self._fail(error)
        self._file = None


def display_available() -> bool:
    """True when a window can be shown: always on Windows/macOS, with DISPLAY/WAYLAND_DISPLAY on Linux."""
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class PreviewWindow(_Closing):
    """A preview window. ``show`` returns False when the user pressed q or Esc or closed it.

    Video and live frames are shown as they come. A photo (``hold=True``) stays up until a key:
    any key goes on to the next photo, q or Esc stop.
    """

    _QUIT_KEYS = (ord("q"), ord("Q"), 27)
    MAX_INITIAL_WH = (1280, 720)
    _HOLD_POLL_MS = 100  # how often a held photo looks for a key, a closed window or a stop request

    def __init__(self, name: str) -> None:
        self.name = name
        self._open = False
        self._shape_hw: Optional[Tuple[int, int]] = None
        try:
            # GUI_NORMAL: no Qt toolbar over the picture; NORMAL: the user may resize it.
            cv2.namedWindow(name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as error:
            raise SinkError(f"cannot open a preview window ({error.err}); run with --no-window") from None
        self._open = True

    def _visible(self) -> bool:
        try:
            return cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def show(self, bgr: np.ndarray, hold: bool = False, stop_requested=lambda: False) -> bool:
        if not self._open:
            return False
        if bgr.shape[:2] != self._shape_hw:
            # Native size, but a 4K photo or camera still fits on a laptop screen.
            h, w = bgr.shape[:2]
            fit = min(1.0, self.MAX_INITIAL_WH[0] / w, self.MAX_INITIAL_WH[1] / h)
            cv2.resizeWindow(self.name, max(1, int(w * fit)), max(1, int(h * fit)))
            self._shape_hw = bgr.shape[:2]
        cv2.imshow(self.name, bgr)
        # waitKey is the GUI event pump: it lives here and nowhere else.
        key = cv2.waitKey(1) & 0xFF
        while hold and key == 0xFF and self._visible() and not stop_requested():
            key = cv2.waitKey(self._HOLD_POLL_MS) & 0xFF
        if key in self._QUIT_KEYS:
            return False
        return self._visible()

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.name)
                cv2.waitKey(1)
            except cv2.error:
                pass
