"""The capture thread: frames from an opened ``cv2.VideoCapture`` read ahead on their own thread.

:class:`CaptureSource` is the :class:`FrameSource` of video files and live sources (what a
``--source`` string means and how it is opened is :mod:`streamer.sources.source`). Frames are
:class:`~streamer.types.Frame` objects (BGR uint8 ``(H, W, 3)``) read by a capture thread into a
bounded queue:

- live sources (webcams, streams) keep only the newest frame: a slow consumer gets the latest
  picture and the frames it could not take are dropped and counted, never queued up;
- files lose nothing: the reader blocks while the queue is full, so every frame arrives in order.

The thread ends with an explicit end-of-stream marker, or with its exception, which is re-raised in
the consumer's thread. A network stream that drops or goes silent is reopened with exponential
backoff; the gap is logged and counted in ``stats``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple, TypeVar

import cv2
import numpy as np

from ..config import CaptureConfig
from ..errors import SourceError
from ..types import Frame

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # what a webcam or stream usually runs at, used when the container says 0
MAX_SANE_FPS = 1000.0  # above this the container reports a time base (90000 for RTP), not a rate
POLL_S = 0.1  # every blocking queue call wakes this often to look at the stop event
JOIN_GRACE_S = 2.0  # stop() waits this long beyond the read timeout for the thread to finish
# A damaged stretch inside a file: OpenCV's read() gives up on a frame after a number of packets
# that do not decode (OPENCV_FFMPEG_DECODE_ATTEMPTS, 64), but the next read() goes on past them.
# 64 KB of garbage in a 10 s clip cost up to 88 failed reads in a row; at the real end of a file
# a failed read takes microseconds, so trying this many more costs nothing noticeable.
MAX_FILE_READ_FAILURES = 1000
# A network read that took this share of capture.read_timeout_s was cut by the timeout. Measured on
# a silent RTSP stall (server stopped, connection kept): such reads still return the frames the
# H.264 decoder was holding, one per timeout, before the first failure; those frames are stale.
STALLED_READ_SHARE = 0.9
# What a file source may hold read ahead of the worker, at most capture.queue_size frames: four
# 640x480 frames (3.5 MB) fit, one 1080p frame (6.2 MB); one frame ahead already keeps decoding
# and analysis overlapped, more only absorbs jitter, and big frames make it cost memory.
READ_AHEAD_BYTES = 8 * 2**20


@dataclass(frozen=True)
class SourceInfo:
    """What a source is. ``kind``: "image", "folder", "file" or "live"; ``name``: path or URL
    (password removed); ``fps``: frames per second (DEFAULT_FPS when unknown); ``size_wh``: frame
    width and height in pixels (of the first image for a folder); ``frame_count``: frames or
    images expected, None for live sources and unknown lengths."""

    kind: str
    name: str
    fps: float
    size_wh: Tuple[int, int]
    frame_count: Optional[int]


@dataclass(frozen=True)
class CaptureStats:
    """Counters since the source opened: frames read from the source, frames dropped because the
    consumer was slower than a live source, successful reconnects, seconds without frames
    between losing a stream and getting it back, and frames of a file that could not be decoded."""

    frames_read: int = 0
    dropped: int = 0
    reconnects: int = 0
    gap_s: float = 0.0
    undecodable: int = 0  # frames of a file that could not be decoded (announced minus read)
    reconnecting: bool = False  # a live stream is lost and being reopened right now


class FrameSource:
    """An iterator of Frames and a context manager; ``stop()`` is idempotent and releases all."""

    info: SourceInfo

    def read(self) -> Optional[Frame]:
        """The next frame, or None at the end of the source (or after ``stop()``)."""
        raise NotImplementedError

    @property
    def stats(self) -> CaptureStats:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        frame = self.read()
        if frame is None:
            raise StopIteration
        return frame

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Backends may hand back grey or BGRA frames; the contract is 3-channel BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


_END = object()  # the capture thread's last item when the source ended normally
_NOTHING = object()


class _LatestSlot:
    """A one-frame mailbox for live sources: ``put`` replaces what the consumer has not taken.

    Replacing happens under one lock, so the slot is never empty between the drop and the put
    (with ``queue.Queue``'s get_nowait + put_nowait a fast producer starves the consumer).
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._item: object = _NOTHING

    def put(self, item: object) -> bool:
        """Store ``item``; True when it replaced a frame nobody took."""
        with self._ready:
            replaced = isinstance(self._item, Frame)
            self._item = item
            self._ready.notify()
        return replaced

    def get(self, timeout: float) -> object:
        with self._ready:
            if self._item is _NOTHING:
                self._ready.wait(timeout)
            return self.get_nowait()

    def get_nowait(self) -> object:
        with self._ready:
            item, self._item = self._item, _NOTHING
        if item is _NOTHING:
            raise queue.Empty
        return item

    def qsize(self) -> int:
        return 0 if self._item is _NOTHING else 1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


Reopen = Callable[[], Optional["cv2.VideoCapture"]]


# A constant-rate file whose next frame comes more than this many frame intervals after the last
# one has lost the frames between (1.5: above rounding of millisecond positions, below one frame).
_GAP_FRAMES = 1.5


class CaptureSource(FrameSource):
    """Frames from an opened ``cv2.VideoCapture`` (or anything with ``read/get/release``), read by
    a capture thread that starts on the first ``read()``.

    ``kind`` "file": nothing is lost, the thread blocks while ``cfg.queue_size`` frames wait;
    ``kind`` "live": only the newest frame waits, older ones are dropped and counted.
    ``reopen`` (network sources) returns a freshly opened capture or None; given, a stream that
    stops is reopened with backoff. The first frame is read here, so a source that opens but
    delivers nothing fails at once with ``no_frame_hint`` in the message. ``constant_rate`` (an AVI
    file: one frame every 1/fps by design): a jump of the file position over missing frames is
    damaged data there, counted as such.
    """

    def __init__(
        self,
        capture: "cv2.VideoCapture",
        *,
        kind: str,
        name: str,
        cfg: CaptureConfig,
        reopen: Optional[Reopen] = None,
        no_frame_hint: str = "check the source plays in another player",
        constant_rate: bool = False,
    ) -> None:
        if kind not in ("file", "live"):
            raise ValueError(f"kind must be 'file' or 'live', got {kind!r}")
        self._cap = capture
        self._kind = kind
        self._name = name
        self._cfg = cfg
        self._reopen = reopen
        self._stop_event = threading.Event()
        self._stop_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self._finished = False
        self._frames_read = 0
        self._dropped = 0
        self._reconnects = 0
        self._gap_s = 0.0
        self._reconnecting = False
        self._undecodable = 0
        self._damaged_after: List[Tuple[int, float]] = []  # (last good frame, its position s) per bad stretch
        self._constant_rate = constant_rate
        self._last_t_s = time.monotonic()
        self._last_pos_s = 0.0
        try:
            # A camera or stream can take up to capture.read_timeout_s to give its first frame.
            ok, image = interruptible(capture.read, release=lambda _: capture.release())
        except cv2.error as error:
            ok, image = False, None
            logger.debug("%s: first read raised %s", name, error)
        if not ok or image is None:
            capture.release()
            raise SourceError(f"{name}: opened, but expected a first frame and got none; {no_frame_hint}")
        self._pending: Optional[Tuple[np.ndarray, float]] = (image, time.monotonic())
        self._queue: "queue.Queue[object] | _LatestSlot" = (
            _LatestSlot() if kind == "live" else queue.Queue(read_ahead_frames(cfg.queue_size, image.nbytes))
        )
        self.info = SourceInfo(kind, name, self._fps(), self._size_wh(image), self._frame_count())

    # -- info ------------------------------------------------------------------------------
    def _fps(self) -> float:
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0.0 < fps <= MAX_SANE_FPS):
            logger.debug("%s: container fps %s is not usable; assuming %s", self._name, fps, DEFAULT_FPS)
            return DEFAULT_FPS
        return fps

    @staticmethod
    def _size_wh(image: np.ndarray) -> Tuple[int, int]:
        return int(image.shape[1]), int(image.shape[0])

    def _frame_count(self) -> Optional[int]:
        if self._kind == "live":
            return None
        count = float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        return int(count) if count > 0 else None

    @property
    def stats(self) -> CaptureStats:
        with self._stats_lock:
            return CaptureStats(self._frames_read, self._dropped, self._reconnects, self._gap_s, self._undecodable,
                                self._reconnecting)

    # -- consumer side ---------------------------------------------------------------------
    def read(self) -> Optional[Frame]:
        if self._finished or self._stop_event.is_set():
            return None
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"capture:{self._name}", daemon=True)
            self._thread.start()
        while not self._stop_event.is_set():
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                self._finished = True
                return None
            if isinstance(item, _Failure):
                self._finished = True
                if isinstance(item.error, SourceError):
                    raise item.error
                raise SourceError(
                    f"{self._name}: the capture thread failed with {type(item.error).__name__}: {item.error}; "
                    "its traceback is chained to this error"
                ) from item.error
            return item  # type: ignore[return-value]
        return None

    def stop(self) -> None:
        """Stop the thread (bounded wait), release the capture and drop queued frames. Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop_event.set()
        thread = self._thread
        if thread is None:
            self._cap.release()
        else:
            thread.join(timeout=self._cfg.read_timeout_s + JOIN_GRACE_S)
            if thread.is_alive():
                # A read blocked inside the backend; the thread releases the capture when it returns.
                logger.warning("%s: capture thread still blocked in a read after stop(); leaving it", self._name)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    # -- capture thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            image, t_s = self._pending  # type: ignore[misc]
            self._pending = None
            if not self._emit(image, t_s):
                return
            while not self._stop_event.is_set():
                t_read = time.monotonic()
                ok, image = self._cap.read()
                if self._reopen is not None and (
                    time.monotonic() - t_read >= STALLED_READ_SHARE * self._cfg.read_timeout_s
                ):
                    # Honour the read timeout once: what a timed-out read returns is a frame the
                    # decoder still held, not news from the camera; reconnect now.
                    ok, image = False, None
                if (not ok or image is None) and self._kind == "file":
                    ok, image = self._read_past_damage()
                if not ok or image is None:
                    if self._stop_event.is_set():
                        return
                    if self._reopen is None:
                        self._log_end()
                        break
                    image = self._reconnect()
                    if image is None:
                        return
                if not self._emit(image, time.monotonic()):
                    return
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - carried to the consumer, re-raised there
            self._put(_Failure(error))
        finally:
            self._cap.release()

    def _read_past_damage(self) -> Tuple[bool, Optional[np.ndarray]]:
        """After a failed read in a file: read on through undecodable packets (bounded); the next
        good frame, or (False, None) at the end of the file."""
        for _ in range(MAX_FILE_READ_FAILURES):
            if self._stop_event.is_set():
                break
            ok, image = self._cap.read()
            if ok and image is not None:
                self._damaged_after.append((self.stats.frames_read - 1, self._last_pos_s))
                return True, image
        return False, None

    def _emit(self, image: np.ndarray, t_s: float) -> bool:
        pos_s = None
        if self._kind == "file":
            # A file frame's position is its timestamp in the file (FFmpeg's pts), so frames after
            # a damaged stretch carry their true time, past the frames that were lost.
            read = self.stats.frames_read
            pos_ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
            pos_s = pos_ms / 1000.0 if (pos_ms > 0 or read == 0) else read / self.info.fps
            if self._damaged_after and read > 0 and pos_s <= self._last_pos_s:
                # Past damage the decoder can hand back a frame from before the last one (its
                # references were lost): emitted, it would send event times backwards. Left out,
                # it counts as undecodable.
                logger.debug("%s: dropped a frame at %.3f s decoded out of order after damaged data",
                             self._name, pos_s)
                return True
            if (self._constant_rate and read > 0 and pos_s - self._last_pos_s > _GAP_FRAMES / self.info.fps
                    and not (self._damaged_after and self._damaged_after[-1][0] == read - 1)):
                self._damaged_after.append((read - 1, self._last_pos_s))  # frames between were lost
            self._last_pos_s = pos_s
        self._last_t_s = t_s
        with self._stats_lock:
            index = self._frames_read
            self._frames_read += 1
        frame = Frame(bgr=as_bgr(image), index=index, t_s=t_s, source=self._name, pos_s=pos_s)
        return self._put(frame)

    def _put(self, item: object) -> bool:
        """Queue ``item``; False when stop() came first. Live: replace the oldest; file: wait."""
        if isinstance(self._queue, _LatestSlot):
            if self._stop_event.is_set():
                return False
            if self._queue.put(item):
                with self._stats_lock:
                    self._dropped += 1
            return True
        while not self._stop_event.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _log_end(self) -> None:
        expected = self.info.frame_count
        read = self.stats.frames_read
        lost = max(0, expected - read) if (self._kind == "file" and expected is not None) else 0
        with self._stats_lock:
            self._undecodable = lost
        if self._damaged_after:
            where = ", ".join(f"after frame {frame} ({pos_s:.1f} s)" for frame, pos_s in self._damaged_after[:3])
            more = f" and {len(self._damaged_after) - 3} more places" if len(self._damaged_after) > 3 else ""
            logger.warning(
                "%s: %s frames could not be decoded (damaged data %s%s); the other %d frames were read",
                self._name,
                lost if expected is not None else "some",
                where,
                more,
                read,
            )
        elif lost:
            logger.warning(
                "%s: %d frames could not be decoded at the end (after frame %d, %.1f s): the file is cut short "
                "or damaged there; the %d frames before were read",
                self._name,
                lost,
                read - 1,
                self._last_pos_s,
                read,
            )
        else:
            logger.info("%s: end of stream after %d frames", self._name, read)

    def _reconnect(self) -> Optional[np.ndarray]:
        """Reopen a stream that stopped; the first new image, None on stop(), SourceError when out of tries."""
        assert self._reopen is not None
        lost_at = self._last_t_s  # the silence before the read timed out is part of the gap
        retries = self._cfg.reconnect_retries
        logger.warning(
            "%s: stream stopped after frame %d; reconnecting (up to %d attempts)",
            self._name,
            self.stats.frames_read - 1,
            retries,
        )
        self._cap.release()
        self._reconnecting = True
        try:
            return self._reopen_with_backoff(lost_at, retries)
        finally:
            self._reconnecting = False

    def _reopen_with_backoff(self, lost_at: float, retries: int) -> Optional[np.ndarray]:
        assert self._reopen is not None
        for attempt, delay in enumerate(backoff_delays(self._cfg), start=1):
            if self._stop_event.wait(delay):
                return None
            try:
                capture = self._reopen()
            except cv2.error as error:
                logger.info("%s: reconnect attempt %d/%d raised %s", self._name, attempt, retries, error)
                continue
            if capture is None:
                logger.info("%s: reconnect attempt %d/%d failed to open", self._name, attempt, retries)
                continue
            ok, image = capture.read()
            if not ok or image is None:
                capture.release()
                logger.info("%s: reconnect attempt %d/%d opened but gave no frame", self._name, attempt, retries)
                continue
            self._cap = capture
            gap_s = time.monotonic() - lost_at
            with self._stats_lock:
                self._reconnects += 1
                self._gap_s += gap_s
            logger.warning("%s: reconnected on attempt %d after a %.1f s gap", self._name, attempt, gap_s)
            return image
        raise SourceError(
            f"{self._name}: stream stopped and {retries} reconnect attempts over "
            f"{time.monotonic() - lost_at:.1f} s failed; check that the camera or server is up and "
            "reachable from this machine, or raise capture.reconnect_retries / capture.reconnect_backoff_max_s"
        )


def read_ahead_frames(queue_size: int, frame_bytes: int) -> int:
    """Frames a file source reads ahead: ``queue_size``, fewer when they would pass READ_AHEAD_BYTES, at least 1."""
    return max(1, min(queue_size, READ_AHEAD_BYTES // max(1, frame_bytes)))


def backoff_delays(cfg: CaptureConfig) -> List[float]:
    """Seconds to wait before each reconnect attempt: doubling from ``reconnect_backoff_s``, capped
    at ``reconnect_backoff_max_s``, ``reconnect_retries`` of them."""
    delays, delay = [], cfg.reconnect_backoff_s
    for _ in range(cfg.reconnect_retries):
        delays.append(min(delay, cfg.reconnect_backoff_max_s))
        delay *= 2.0
    return delays



T = TypeVar("T")


def interruptible(call: Callable[[], T], release: Callable[[T], None]) -> T:
    """``call()``, run on a helper thread while this thread waits in short steps.

    For blocking calls inside OpenCV (an FFmpeg open waits up to capture.open_timeout_s, a first
    read up to capture.read_timeout_s): Python only sees Ctrl-C between bytecodes of the main
    thread, so a call made there stops the run only after its timeout. Here KeyboardInterrupt (or
    any exception) reaches the caller at once; the abandoned call finishes on its own and hands what
    it returned to ``release`` (close the capture it opened), since nobody else will.
    """
    done = threading.Event()
    lock = threading.Lock()
    abandoned = False
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as error:  # noqa: BLE001 - re-raised on the caller's thread
            result["error"] = error
        with lock:
            done.set()
            orphan = abandoned and "value" in result
        if orphan:
            release(result["value"])

    threading.Thread(target=target, name="interruptible", daemon=True).start()
    try:
        while not done.wait(POLL_S):
            pass
    except BaseException:
        with lock:
            abandoned = True
            finished = done.is_set() and "value" in result
        if finished:
            release(result["value"])
        raise
    if "error" in result:
        raise result["error"]
    return result["value"]
