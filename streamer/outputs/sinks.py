"""Where a run's results go. One small protocol, ``Sink``, for every output: the annotated video
(``streamer.outputs.recording.VideoSink``), annotated images, the JSON Lines events, the preview window, and
whatever else a caller adds (the web stream, MQTT): the run loop knows only the protocol.

Only sinks touch files, windows and the network. Files are finished or absent (``streamer.outputs.files``),
except the events file, a log followed while it grows (see EventsSink).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, Callable, Optional, Protocol, Sequence, Tuple

import cv2
import numpy as np

from ..errors import SinkError
from ..sources.formats import OUTPUT_IMAGE_SUFFIXES
from ..types import FrameResult
from .files import is_special, make_parent, os_reason, remove_quietly, size_text, write_bytes

log = logging.getLogger(__name__)


class RunView(Protocol):
    """What a sink may read of the run it is part of: read-only, cheap, from any thread.

    ``info`` is the source's ``SourceInfo``; ``snapshot()`` the summary so far, with the keys of the
    end-of-run summary (``frames_read``, ``frames_out``, ``analysed``, ``skipped``, ``dropped``,
    ``reconnects``, ``fps``, ``elapsed_s``, ``stages``, ``faces_classified``) and two live ones:
    ``people_in_view`` (faces on the latest frame) and ``source_up`` (False while reconnecting).
    """

    @property
    def info(self): ...

    def snapshot(self) -> dict: ...


class StopRun(Exception):
    """Raised by a sink's ``write`` to end the run as a user stop (the preview window's q, Esc or
    close button); ``reason`` goes into the summary's ``stopped_by``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sink:
    """One output of a run. Every method is optional (a no-op here).

    Called on the run's thread, in this order: ``start`` once when the source is open, ``write``
    for every frame, ``write_records`` whenever track records arrive, ``close`` once however the
    run ends (also after an error or Ctrl-C). ``annotated`` is the drawn ``(H, W, 3)`` uint8 BGR
    frame, or None when the run keeps no pictures. Records are the tracked-mode ``new``,
    ``update`` and ``end`` objects of the events schema. A sink that does slow I/O (a network)
    must not block the run: it queues and sends from a thread of its own. ``close`` raises a
    StreamerError when what the sink wrote is not complete.
    """

    def start(self, run: RunView) -> None:
        pass

    def write(self, result: FrameResult, annotated: Optional[np.ndarray]) -> None:
        pass

    def write_records(self, records: Sequence[dict]) -> None:
        pass

    def close(self) -> None:
        pass

    def close_incomplete(self, reason: str) -> None:
        """``close`` when another output of the run failed (``reason``): a file that would be
        published as complete is kept under a ``.partial`` name instead (``files.partial_path``).
        Sinks whose files are complete piece by piece (images, the events log) just close."""
        self.close()

    def summary_fields(self) -> dict:
        """What this sink adds to the run's summary (after ``close``), e.g. messages sent."""
        return {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def image_output_path(kind: str, output: Path, frame_source: str) -> Path:
    """Where the annotated copy of the photo ``frame_source`` goes: ``output`` itself for one photo
    given a file name, else ``output/<photo's name>``."""
    if kind == "folder" or output.suffix.lower() not in OUTPUT_IMAGE_SUFFIXES:
        return output / Path(frame_source).name
    return output


class ImageSink(Sink):
    """Annotated photos: one image file per photo of an image or folder source."""

    def __init__(self, kind: str, output: Path, overwrite: bool = False) -> None:
        self.kind, self.output, self._overwrite = kind, Path(output), overwrite
        self.images_written = 0

    def write(self, result: FrameResult, annotated: Optional[np.ndarray]) -> None:
        if annotated is None:
            return
        write_image(image_output_path(self.kind, self.output, result.frame.source), annotated, self._overwrite)
        self.images_written += 1


def write_image(path: Path, bgr: np.ndarray, overwrite: bool = False) -> None:
    """Write one annotated ``(H, W, 3)`` uint8 BGR image (the suffix picks the format); the folder
    is created; the file appears complete or not at all; any failure is a SinkError."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_IMAGE_SUFFIXES:
        raise SinkError(f"output image {path} needs an image extension ({', '.join(OUTPUT_IMAGE_SUFFIXES)})")
    try:
        ok, encoded = cv2.imencode(path.suffix.lower(), bgr)
    except cv2.error:
        ok, encoded = False, None
    if not ok or encoded is None:
        raise SinkError(f"output image {path}: OpenCV could not encode a {bgr.shape[1]}x{bgr.shape[0]} image "
                        f"as {path.suffix}; choose .jpg or .png")
    write_bytes(path, encoded.tobytes(), overwrite, "output image")


class EventsSink(Sink):
    """JSON Lines, one object per frame (schema in README).

    Unlike the other files, this one is a log that others follow while the run goes on (a live
    run lasts months), so it is written in place rather than renamed into place at the end, and
    each line is written and flushed whole. A new file is created exclusively (two runs never
    interleave in it; ``overwrite`` removes an older file first). ``append`` (live sources: a
    service restarted after a stop, a crash or a reboot) continues an existing file instead: a
    torn last line (a power cut mid-write) is cut first and counted in ``torn_lines_cut``. A
    failed write is a SinkError saying how many lines are in the file, which is cut back to its
    last whole line. ``camera``: the run's camera name (a site's camera, ``mqtt.camera``), put in
    every object, so that events of several cameras read together (``streamer report a.jsonl
    b.jsonl``) say whose they are, as their MQTT messages do.
    """

    def __init__(self, path: Path, overwrite: bool = False, append: bool = False,
                 camera: Optional[str] = None) -> None:
        self.path = Path(path)
        self._camera = {"camera": camera} if camera else {}
        special = is_special(self.path)
        self.torn_lines_cut = 0
        self._start = 0  # bytes of an earlier run's lines that this run appends to
        if not special:
            make_parent(self.path, "events file")
            if overwrite and self.path.is_file():
                remove_quietly(self.path)
        try:
            if special:
                self._file: Optional[IO[bytes]] = open(self.path, "wb")
            elif append and self.path.is_file():
                self._file = open(self.path, "r+b")
                self._start = self._cut_torn_line(self._file)
            else:
                self._file = open(self.path, "xb")
            if not special:
                _lock(self._file, self.path)
        except FileExistsError:
            raise SinkError(f"events file {self.path} already exists; pass --overwrite to replace it, "
                            "or choose another path") from None
        except OSError as error:
            raise SinkError(f"cannot write events file {self.path}: {os_reason(error)}") from None
        self._seekable = not special
        self.lines = 0
        self._bytes = 0

    def _cut_torn_line(self, handle: IO[bytes]) -> int:
        """Cut a last line that has no newline (its writer died mid-line); the size kept."""
        size = end = handle.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            handle.seek(start)
            newline = handle.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            os.ftruncate(handle.fileno(), end)
            self.torn_lines_cut = 1
            log.warning("events file %s: its last line was torn (%s without a newline, an earlier run stopped "
                        "mid-write); cut it and appending after line %d", self.path, size_text(size - end),
                        _count_lines(handle, end))
        handle.seek(end)
        return end

    def write(self, result: FrameResult, annotated: Optional[np.ndarray] = None) -> None:
        self.write_record(result.to_event())

    def write_records(self, records: Sequence[dict]) -> None:
        for record in records:
            self.write_record(record)

    def write_record(self, record: dict) -> None:
        if self._file is None:
            raise SinkError(f"events file {self.path} is already closed")
        if self._camera:
            record = {**record, **self._camera}
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
                    os.ftruncate(handle.fileno(), self._start + self._bytes)  # no half line at the end
                    handle.seek(self._start + self._bytes)
                handle.close()
            except OSError:
                pass  # the same failure again, for the bytes it could not write
        held = ("which are all it holds" if not self._start
                else f"appended to {size_text(self._start)} of earlier runs, kept whole")
        raise SinkError(f"events file {self.path}: {os_reason(error)} after {self.lines} lines "
                        f"({size_text(self._bytes)}), {held}; free space or choose another --events path")

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

    def summary_fields(self) -> dict:
        return {"events_torn_lines_cut": self.torn_lines_cut} if self._start or self.torn_lines_cut else {}


def _lock(handle: IO[bytes], path: Path) -> None:
    """Hold an exclusive lock on the events file while the run writes it: a second run appending
    to the same file (a service started twice) would interleave its lines with ours."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; exclusive creation still guards new files
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SinkError(f"events file {path} is being written by another run; stop it first, or choose "
                        "another --events path") from None


# How much of an events file's end is read at a time when looking for its last newline.
_TAIL_CHUNK = 64 * 1024


def _count_lines(handle: IO[bytes], end: int) -> int:
    """Newlines in the first ``end`` bytes of ``handle`` (read in chunks: a months-long log)."""
    handle.seek(0)
    count, left = 0, end
    while left > 0:
        chunk = handle.read(min(left, 1 << 20))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def display_available() -> bool:
    """True when a window can be shown: always on Windows/macOS, with DISPLAY/WAYLAND_DISPLAY on Linux."""
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class PreviewWindow(Sink):
    """A preview window. ``show`` returns False when the user pressed q or Esc or closed it; as a
    sink, ``write`` then raises StopRun.

    Video and live frames are shown as they come. A photo (``hold=True``) stays up until a key:
    any key goes on to the next photo, q or Esc stop. ``stop_requested`` (a Ctrl-C noted by the
    run) ends the wait for a key.
    """

    _QUIT_KEYS = (ord("q"), ord("Q"), 27)
    MAX_INITIAL_WH = (1280, 720)
    _HOLD_POLL_MS = 100  # how often a held photo looks for a key, a closed window or a stop request

    def __init__(self, name: str, hold: bool = False,
                 stop_requested: Callable[[], bool] = lambda: False) -> None:
        self.name = name
        self._hold, self._stop_requested = hold, stop_requested
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

    def write(self, result: FrameResult, annotated: Optional[np.ndarray]) -> None:
        if annotated is not None and not self.show(annotated, self._hold, self._stop_requested):
            raise StopRun("window closed")

    def show(self, bgr: np.ndarray, hold: bool = False, stop_requested: Callable[[], bool] = lambda: False) -> bool:
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
