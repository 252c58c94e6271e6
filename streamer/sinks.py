"""Where annotated frames and results go: video file, images, JSON Lines events, preview window.

Only this module touches files and windows; every sink is a context manager that releases in
``close()`` (idempotent), also when the run stops early or Ctrl-C arrives.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import IO, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import SinkError
from .types import FrameResult

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class VideoFileSink(_Closing):
    """An annotated video file: same size and fps as the source; codecs tried in order.

    ``write`` takes ``(H, W, 3)`` uint8 BGR frames of exactly ``size_wh``.
    """

    def __init__(self, path: Path, fps: float, size_wh: Tuple[int, int], codecs: Sequence[str]) -> None:
        self.path = Path(path)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.frames_written = 0
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: Optional[cv2.VideoWriter] = None
        tried = []
        for codec in codecs:
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), float(fps), self.size_wh)
            if writer.isOpened():
                self._writer, self.codec = writer, codec
                if tried:
                    log.warning("video codec(s) %s did not open for %s; using %s", ", ".join(tried), self.path, codec)
                break
            writer.release()
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
            # A stream that changes resolution mid-run: keep the file consistent.
            bgr = cv2.resize(bgr, self.size_wh, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("wrote %d frames to %s", self.frames_written, self.path)


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

    def __init__(self, sink: VideoFileSink, queue_size: int = 4, on_encode_ms=None) -> None:
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
            raise SinkError(f"writing {self.sink.path} failed: {error}") from error

    def write(self, bgr: np.ndarray) -> None:
        if self._closed:
            raise SinkError(f"output video {self.sink.path} is already closed")
        self._put(bgr)

    @property
    def frames_written(self) -> int:
        return self.sink.frames_written

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


def write_image(path: Path, bgr: np.ndarray) -> None:
    """Write one annotated image; the folder is created; failure is a SinkError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise SinkError(f"output image {path} needs an image extension ({', '.join(IMAGE_EXTENSIONS)})")
    if not cv2.imwrite(str(path), bgr):
        raise SinkError(f"could not write image {path}; check the folder is writable")


class EventsSink(_Closing):
    """JSON Lines, one object per frame (schema in README); each line is flushed as written so a
    crash loses nothing already analysed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file: Optional[IO[str]] = open(self.path, "w", encoding="utf-8")
        except OSError as error:
            raise SinkError(f"cannot write events file {self.path}: {error.strerror}") from None
        self.lines = 0

    def write(self, result: FrameResult) -> None:
        self.write_record(result.to_event())

    def write_record(self, record: dict) -> None:
        if self._file is None:
            raise SinkError(f"events file {self.path} is already closed")
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
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
