"""Frame sources: webcams, RTSP/HTTP streams, video files, images and folders of images.

``open_source(spec, cfg)`` returns a :class:`FrameSource`, a context manager that iterates
:class:`~streamer.types.Frame` objects (BGR uint8 ``(H, W, 3)``). Video files and live sources are
read by a capture thread into a bounded queue:

- live sources (webcams, streams) keep only the newest frame: a slow consumer gets the latest
  picture and the frames it could not take are dropped and counted, never queued up;
- files lose nothing: the reader blocks while the queue is full, so every frame arrives in order.

The thread ends with an explicit end-of-stream marker, or with its exception, which is re-raised in
the consumer's thread. A network stream that drops or goes silent is reopened with exponential
backoff; the gap is logged and counted in ``stats``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from .config import CaptureConfig
from .errors import SourceError
from .types import Frame

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
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
IMAGE_SUFFIXES = frozenset(
    ".bmp .dib .jpeg .jpg .jpe .jp2 .png .webp .avif .pbm .pgm .ppm .pxm .pnm .pfm .sr .ras "
    ".tiff .tif .exr .hdr .pic".split()
)


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


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Backends may hand back grey or BGRA frames; the contract is 3-channel BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


class ImageSource(FrameSource):
    """One Frame per image file, in the given order; ``Frame.source`` is the image path."""

    def __init__(self, paths: Sequence[Path], kind: str, name: str) -> None:
        self._paths = list(paths)
        self._next = 0
        self._decoded = 0
        self._unreadable = 0
        self._stopped = False
        self._pending: Optional[np.ndarray] = None
        while self._pending is None:
            try:
                self._pending = self._load(self._paths[0])
            except SourceError as error:
                if kind != "folder" or len(self._paths) == 1:
                    raise
                logger.warning("skipping %s", error)
                self._unreadable += 1
                self._paths.pop(0)
        height, width = self._pending.shape[:2]
        self.info = SourceInfo(kind, name, DEFAULT_FPS, (int(width), int(height)), len(self._paths))

    @staticmethod
    def _load(path: Path) -> np.ndarray:
        # IMREAD_COLOR turns grey, palette and RGBA images into 3-channel BGR.
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(
                f"{path}: expected a readable image, got data OpenCV cannot decode; "
                "check that the file is complete and really an image, or remove it"
            )
        return image

    def read(self) -> Optional[Frame]:
        while not self._stopped and self._next < len(self._paths):
            path = self._paths[self._next]
            index = self._next
            self._next += 1
            try:
                image = self._pending if self._pending is not None else self._load(path)
            except SourceError as error:
                if self.info.kind != "folder":
                    raise
                # One bad file must not end a batch of photos: say which, go on.
                logger.warning("skipping %s", error)
                self._unreadable += 1
                continue
            finally:
                self._pending = None
            self._decoded += 1
            # A photo has no time axis: its position is 0, its capture time when it was read.
            return Frame(bgr=image, index=index, t_s=time.monotonic(), source=str(path), pos_s=0.0)
        return None

    @property
    def paths(self) -> Tuple[Path, ...]:
        """The image files this source will read (unreadable ones are skipped when read)."""
        return tuple(self._paths)

    @property
    def stats(self) -> CaptureStats:
        """Images decoded so far, and images that could not be (skipped, each with a warning)."""
        return CaptureStats(frames_read=self._decoded, undecodable=self._unreadable)

    def stop(self) -> None:
        self._stopped = True
        self._pending = None


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


class CaptureSource(FrameSource):
    """Frames from an opened ``cv2.VideoCapture`` (or anything with ``read/get/release``), read by
    a capture thread that starts on the first ``read()``.

    ``kind`` "file": nothing is lost, the thread blocks while ``cfg.queue_size`` frames wait;
    ``kind`` "live": only the newest frame waits, older ones are dropped and counted.
    ``reopen`` (network sources) returns a freshly opened capture or None; given, a stream that
    stops is reopened with backoff. The first frame is read here, so a source that opens but
    delivers nothing fails at once with ``no_frame_hint`` in the message.
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
    ) -> None:
        if kind not in ("file", "live"):
            raise ValueError(f"kind must be 'file' or 'live', got {kind!r}")
        self._cap = capture
        self._kind = kind
        self._name = name
        self._cfg = cfg
        self._reopen = reopen
        self._queue: "queue.Queue[object] | _LatestSlot" = (
            _LatestSlot() if kind == "live" else queue.Queue(cfg.queue_size)
        )
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
        self._undecodable = 0
        self._damaged_after: List[Tuple[int, float]] = []  # (last good frame, its position s) per bad stretch
        self._last_t_s = time.monotonic()
        self._last_pos_s = 0.0
        try:
            ok, image = capture.read()
        except cv2.error as error:
            ok, image = False, None
            logger.debug("%s: first read raised %s", name, error)
        if not ok or image is None:
            capture.release()
            raise SourceError(f"{name}: opened, but expected a first frame and got none; {no_frame_hint}")
        self._pending: Optional[Tuple[np.ndarray, float]] = (image, time.monotonic())
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
            return CaptureStats(self._frames_read, self._dropped, self._reconnects, self._gap_s, self._undecodable)

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
        self._last_t_s = t_s
        with self._stats_lock:
            index = self._frames_read
            self._frames_read += 1
        pos_s = None
        if self._kind == "file":
            pos_ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
            pos_s = pos_ms / 1000.0 if (pos_ms > 0 or index == 0) else index / self.info.fps
            self._last_pos_s = pos_s
        frame = Frame(bgr=_as_bgr(image), index=index, t_s=t_s, source=self._name, pos_s=pos_s)
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


def backoff_delays(cfg: CaptureConfig) -> List[float]:
    """Seconds to wait before each reconnect attempt: doubling from ``reconnect_backoff_s``, capped
    at ``reconnect_backoff_max_s``, ``reconnect_retries`` of them."""
    delays, delay = [], cfg.reconnect_backoff_s
    for _ in range(cfg.reconnect_retries):
        delays.append(min(delay, cfg.reconnect_backoff_max_s))
        delay *= 2.0
    return delays


# -- opening -------------------------------------------------------------------------------


def _redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _ffmpeg_options(transport: str) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS with ``rtsp_transport`` set and the user's other options kept."""
    raw = os.environ.get(FFMPEG_OPTIONS_ENV, "")
    kept = [pair for pair in raw.split("|") if pair and not pair.startswith("rtsp_transport;")]
    return "|".join([f"rtsp_transport;{transport}"] + kept)


def _open_network(url: str, cfg: CaptureConfig) -> Optional["cv2.VideoCapture"]:
    if url.lower().startswith("rtsp"):
        # OpenCV reads this variable on every FFmpeg open; UDP loses packets behind NAT and Wi-Fi.
        os.environ[FFMPEG_OPTIONS_ENV] = _ffmpeg_options(cfg.rtsp_transport)
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(cfg.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(cfg.read_timeout_s * 1000),
    ]
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        return None
    return capture


def has_gstreamer() -> bool:
    """True when this OpenCV build can open GStreamer pipelines."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def _mp4_truncation(path: Path) -> Optional[str]:
    """Why an MP4/MOV file looks cut short, or None when its top-level boxes are whole."""
    size = path.stat().st_size
    boxes: List[bytes] = []
    offset = 0
    with path.open("rb") as handle:
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(16)
            box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8]
            if box_size == 1 and len(header) >= 16:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8 or (not boxes and box_type != b"ftyp"):
                return None
            boxes.append(box_type)
            if offset + box_size > size:
                return f"its '{box_type.decode('latin-1')}' box runs past the end of the file"
            offset += box_size
    if boxes and b"moov" not in boxes:
        return "it has no 'moov' index (cut short or still being written)"
    return None


# ISO-BMFF brands of HEIF/HEIC/AVIF still images: the same container as MP4, but no 'moov' index.
_HEIF_BRANDS = frozenset(b"heic heix hevc hevx heim heis mif1 msf1 avif avis".split())


def _heif_brand(path: Path) -> Optional[str]:
    """The brand of a HEIF/HEIC/AVIF image ("heic"), None for anything else."""
    with path.open("rb") as handle:
        head = handle.read(12)
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return head[8:12].decode("ascii")
    return None


def _open_file(path: Path, cfg: CaptureConfig) -> FrameSource:
    # By content as well as by name: a JPEG saved as .heic is a photo, not a one-frame video.
    if path.suffix.lower() in IMAGE_SUFFIXES or cv2.haveImageReader(str(path)):
        return ImageSource([path], "image", str(path))
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if capture.isOpened():
        return CaptureSource(
            capture,
            kind="file",
            name=str(path),
            cfg=cfg,
            no_frame_hint="the file may be truncated or use a codec this OpenCV build cannot decode",
        )
    capture.release()
    brand = _heif_brand(path)
    if brand is not None:
        raise SourceError(
            f"{path}: a HEIF/HEIC/AVIF image (brand '{brand}'), which this OpenCV build cannot decode; "
            "convert it to JPEG or PNG (e.g. heif-convert) and pass that"
        )
    reason = _mp4_truncation(path)
    if reason is not None:
        raise SourceError(
            f"{path}: expected a playable video, but the file is truncated: {reason}; re-copy or "
            "re-export it (an MP4 needs its index, written when recording finishes)"
        )
    raise SourceError(
        f"{path}: not a video or image OpenCV can open ({path.stat().st_size} bytes); "
        "pass a video file (mp4, avi, mkv, ...), an image, a folder of images, a camera index or a stream URL"
    )


def _open_folder(folder: Path) -> FrameSource:
    images, skipped, subfolders = [], [], []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        elif entry.is_file():
            skipped.append(entry.name)
        elif entry.is_dir():
            subfolders.append(entry.name)
    if subfolders:
        logger.warning(
            "%s: not looking inside %d subfolder(s): %s%s; pass each folder as its own --source",
            folder,
            len(subfolders),
            ", ".join(subfolders[:5]),
            " ..." if len(subfolders) > 5 else "",
        )
    if skipped:
        logger.warning(
            "%s: skipping %d non-image file(s): %s%s",
            folder,
            len(skipped),
            ", ".join(skipped[:5]),
            " ..." if len(skipped) > 5 else "",
        )
    if not images:
        raise SourceError(
            f"{folder}: expected a folder of images ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...), found none; "
            "pass a folder that holds images, or a video file"
        )
    return ImageSource(images, "folder", str(folder))


def _open_camera(spec: str, cfg: CaptureConfig) -> FrameSource:
    index_or_path = int(spec) if spec.isdigit() else spec
    if isinstance(index_or_path, str) and not Path(spec).exists():
        raise SourceError(
            f"camera device {spec} does not exist; list cameras with `ls /dev/video*` and pass one that does"
        )
    capture = cv2.VideoCapture(index_or_path)
    if not capture.isOpened():
        capture.release()
        raise SourceError(
            f"no camera at {'index ' if spec.isdigit() else ''}{spec}: cv2.VideoCapture did not open it; "
            "list cameras with `ls /dev/video*` (index N is /dev/videoN) and check no other program holds it"
        )
    return CaptureSource(
        capture, kind="live", name=spec, cfg=cfg, no_frame_hint="check the camera is not in use by another program"
    )


def _interruptible(open_capture: Callable[[], Optional["cv2.VideoCapture"]]) -> Optional["cv2.VideoCapture"]:
    """Run a blocking open (up to capture.open_timeout_s inside FFmpeg) on a helper thread, so that
    Ctrl-C, which Python only sees between bytecodes of the main thread, stops the run at once
    instead of after the timeout. An abandoned open releases what it opened when it returns."""
    done = threading.Event()
    abandoned = threading.Event()
    result: dict = {}

    def target() -> None:
        try:
            result["capture"] = open_capture()
        except BaseException as error:  # noqa: BLE001 - re-raised on the caller's thread
            result["error"] = error
        finally:
            done.set()
            if abandoned.is_set() and result.get("capture") is not None:
                result["capture"].release()

    threading.Thread(target=target, name="open", daemon=True).start()
    try:
        while not done.wait(POLL_S):
            pass
    except BaseException:
        abandoned.set()
        if done.is_set() and result.get("capture") is not None:
            result["capture"].release()
        raise
    if "error" in result:
        raise result["error"]
    return result.get("capture")


def _open_url(url: str, cfg: CaptureConfig) -> FrameSource:
    name = _redact(url)
    capture = _interruptible(lambda: _open_network(url, cfg))
    if capture is None:
        raise SourceError(
            f"{name}: could not open the stream within capture.open_timeout_s={cfg.open_timeout_s:g} s; "
            "check the URL, that the camera or server is up and reachable, and its credentials"
            + (f" (RTSP transport: {cfg.rtsp_transport})" if url.lower().startswith("rtsp") else "")
        )
    return CaptureSource(
        capture,
        kind="live",
        name=name,
        cfg=cfg,
        reopen=lambda: _open_network(url, cfg),
        no_frame_hint=f"no frame within capture.read_timeout_s={cfg.read_timeout_s:g} s; check the stream plays",
    )


def _open_gstreamer(pipeline: str, cfg: CaptureConfig) -> FrameSource:
    if not has_gstreamer():
        raise SourceError(
            f"GStreamer pipeline '{pipeline}': this OpenCV build has no GStreamer (cv2.getBuildInformation() "
            "says GStreamer: NO); pass the camera or stream URL directly (FFmpeg reads rtsp/http), or use an "
            "OpenCV built with -DWITH_GSTREAMER=ON (e.g. Debian's python3-opencv)"
        )
    capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        capture.release()
        raise SourceError(
            f"GStreamer pipeline '{pipeline}' did not start; test it with `gst-launch-1.0 {pipeline}` "
            "and end it with `! videoconvert ! appsink`"
        )
    return CaptureSource(capture, kind="live", name=pipeline, cfg=cfg)


def open_source(spec: str, cfg: CaptureConfig) -> FrameSource:
    """Open a frame source from its command-line spelling.

    ``spec``: a webcam index ("0") or device (/dev/video0), a video file, an image file, a folder
    of images (sorted by name; other files skipped with a warning), an rtsp/http(s)/... URL, or a
    GStreamer pipeline (contains '!'). Raises SourceError with a one-line reason and fix.
    """
    spec = spec.strip()
    if not spec:
        raise SourceError("empty input: pass a camera index, a file, a folder, a URL or a GStreamer pipeline")
    scheme = urlsplit(spec).scheme.lower() if "://" in spec else ""
    if scheme in NETWORK_SCHEMES:
        source = _open_url(spec, cfg)
    elif "!" in spec:
        source = _open_gstreamer(spec, cfg)
    elif spec.isdigit() or spec.startswith("/dev/video"):
        source = _open_camera(spec, cfg)
    else:
        path = Path(spec).expanduser()
        try:
            path.stat()
        except PermissionError:
            raise SourceError(f"{path}: cannot be reached by this user (permission denied on a folder on the "
                              "way); check the folders' permissions (ls -ld) or run as a user who can") from None
        except OSError:
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            raise SourceError(f"{path}: no such file or folder; check the path{where}") from None
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            raise SourceError(f"{path}: not readable by this user (permission denied); check its permissions "
                              "(ls -l) or run as a user who can read it")
        try:
            if path.is_dir():
                source = _open_folder(path)
            elif not path.is_file():
                raise SourceError(f"{path}: a device or FIFO, not a file; pass a video file, an image, a folder of "
                                  "images, a camera (/dev/videoN or its index) or a stream URL")
            elif path.stat().st_size == 0:
                raise SourceError(f"{path}: the file is empty (0 bytes); re-copy or re-record it")
            else:
                source = _open_file(path, cfg)
        except OSError as error:
            raise SourceError(f"{path}: cannot read it ({error.strerror or error}); check its permissions "
                              "and that the disk is readable") from None
    logger.info("opened %s", source.info)
    return source
