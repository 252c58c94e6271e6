"""What a ``--source`` string means, and opening it.

``open_source(spec, cfg)`` returns a :class:`~streamer.sources.capture.FrameSource`, a context manager that
iterates :class:`~streamer.types.Frame` objects (BGR uint8 ``(H, W, 3)``): an :class:`ImageSource`
for a photo or a folder of photos, read here on the caller's thread, or a
:class:`~streamer.sources.capture.CaptureSource` (the capture thread) for a video file, a camera, a
network stream or a GStreamer pipeline. Files are checked before they are opened, so that a bad
input fails at once with one line naming the cause (missing, empty, a device, cut short, HEIF...).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from ..config import CaptureConfig
from ..errors import SourceError
from ..types import Frame
from .capture import DEFAULT_FPS, CaptureSource, CaptureStats, FrameSource, SourceInfo, interruptible
from .formats import IMAGE_SUFFIXES
from .image_header import file_size_wh
from .native_log import libjpeg_silenced

logger = logging.getLogger(__name__)

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")




# JPEG scales by 1/2, 1/4 and 1/8 while decoding (libjpeg's scaled IDCT), so the full-size picture
# never exists; other formats are decoded whole and then resized.
REDUCED_READ_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}

def decode_reduction(size_wh: Tuple[int, int], keep_side_px: int) -> int:
    """The largest of 8, 4, 2 that keeps the image's long side at least ``keep_side_px``; else 1."""
    for factor in (8, 4, 2):
        if keep_side_px > 0 and max(size_wh) // factor >= keep_side_px:
            return factor
    return 1


def _jpeg_cut_short(path: Path) -> bool:
    """True for a JPEG whose last bytes hold no end-of-image marker (FF D9)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(3) != b"\xff\xd8\xff":
                return False
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 64))
            return b"\xff\xd9" not in handle.read()
    except OSError:
        return False


class ImageSource(FrameSource):
    """One Frame per image file, in the given order; ``Frame.source`` is the image path.

    ``decode_side_px`` > 0: a JPEG or PNG at least twice that long is decoded at 1/2, 1/4 or 1/8
    (``decode_reduction``), so its frame, its boxes and its annotated image have that size.
    """

    def __init__(self, paths: Sequence[Path], kind: str, name: str, decode_side_px: int = 0) -> None:
        self._paths = list(paths)
        self._decode_side_px = decode_side_px
        self._said_reduced = False
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

    def _load(self, path: Path) -> np.ndarray:
        size_wh = (file_size_wh(path) if self._decode_side_px else None) or (0, 0)
        factor = decode_reduction(size_wh, self._decode_side_px)
        # IMREAD_COLOR (and its reduced forms) turns grey, palette and RGBA images into 3-channel BGR.
        with libjpeg_silenced():  # "Premature end of JPEG file": said below in our words
            image = cv2.imread(str(path), REDUCED_READ_FLAGS[factor])
        if image is not None and _jpeg_cut_short(path):
            logger.warning("%s: the JPEG file ends early (cut short in a copy or download?); the missing "
                           "bottom of the picture is grey", path)
        if image is not None and factor > 1 and not self._said_reduced:
            self._said_reduced = True
            logger.info(
                "%s: %dx%d decoded at 1/%d (%dx%d), as capture.photo_decode_side_px=%d allows; "
                "set it to 0 for full-size photos",
                path, size_wh[0], size_wh[1], factor, image.shape[1], image.shape[0], self._decode_side_px,
            )
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





def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _user_ffmpeg_options(without: str = "") -> List[str]:
    """The user's own OPENCV_FFMPEG_CAPTURE_OPTIONS pairs, less those starting with ``without``."""
    raw = os.environ.get(FFMPEG_OPTIONS_ENV, "")
    return [pair for pair in raw.split("|") if pair and not (without and pair.startswith(without))]


def _ffmpeg_options(transport: str) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS with ``rtsp_transport`` set and the user's other options kept."""
    return "|".join([f"rtsp_transport;{transport}"] + _user_ffmpeg_options("rtsp_transport;"))


def _is_avi(path: Path) -> bool:
    """A RIFF AVI file, by its first 12 bytes."""
    with path.open("rb") as handle:
        head = handle.read(12)
    return head[:4] == b"RIFF" and head[8:12] == b"AVI "


# OpenCV takes FFmpeg's open options only from this process-wide variable, read at each open: it is
# set for one open at a time and put back after, so no other capture (nor a library that reads the
# variable) sees our RTSP options.
_FFMPEG_OPTIONS_LOCK = threading.Lock()


@contextlib.contextmanager
def _ffmpeg_options_set(options: str) -> Iterator[None]:
    """FFMPEG_OPTIONS_ENV is ``options`` inside, and what it was (or unset) again after."""
    with _FFMPEG_OPTIONS_LOCK:
        before = os.environ.get(FFMPEG_OPTIONS_ENV)
        os.environ[FFMPEG_OPTIONS_ENV] = options
        try:
            yield
        finally:
            if before is None:
                del os.environ[FFMPEG_OPTIONS_ENV]
            else:
                os.environ[FFMPEG_OPTIONS_ENV] = before


def _open_network(url: str, cfg: CaptureConfig) -> Optional["cv2.VideoCapture"]:
    """A network stream opened with the configured timeouts (and RTSP transport), or None."""
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(cfg.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(cfg.read_timeout_s * 1000),
    ]
    if url.lower().startswith("rtsp"):
        # capture.rtsp_transport: UDP loses packets behind NAT and on Wi-Fi.
        with _ffmpeg_options_set(_ffmpeg_options(cfg.rtsp_transport)):
            capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    else:
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
        return ImageSource([path], "image", str(path), cfg.photo_decode_side_px)
    avi = _is_avi(path)
    if avi:
        # FFmpeg's AVI reader numbers frames as it meets them, so frames lost in damaged data
        # would shift every later time (a stretch of 10 lost: 0.4 s early to the end); read by
        # the index (sortdts), each frame keeps its own number, as MP4's timestamps do.
        with _ffmpeg_options_set("|".join(["fflags;sortdts", *_user_ffmpeg_options()])):
            capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    else:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if capture.isOpened():
        return CaptureSource(
            capture,
            kind="file",
            name=str(path),
            cfg=cfg,
            no_frame_hint="the file may be truncated or use a codec this OpenCV build cannot decode",
            constant_rate=avi,
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


def _some(names: Sequence[str], shown: int = 5) -> str:
    """The first few of ``names`` for a log line: "a, b, c ..."."""
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


def _open_folder(folder: Path, cfg: CaptureConfig) -> FrameSource:
    images, skipped, subfolders = [], [], []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        elif entry.is_file():
            skipped.append(entry.name)
        elif entry.is_dir():
            subfolders.append(entry.name)
    if subfolders:
        logger.warning("%s: not looking inside %d subfolder(s): %s; pass each folder as its own --source",
                       folder, len(subfolders), _some(subfolders))
    if skipped:
        logger.warning("%s: skipping %d non-image file(s): %s", folder, len(skipped), _some(skipped))
    if not images:
        raise SourceError(
            f"{folder}: expected a folder of images ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...), found none; "
            "pass a folder that holds images, or a video file"
        )
    return ImageSource(images, "folder", str(folder), cfg.photo_decode_side_px)


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


def _release(capture: Optional["cv2.VideoCapture"]) -> None:
    if capture is not None:
        capture.release()


def _open_url(url: str, cfg: CaptureConfig) -> FrameSource:
    name = redact(url)
    capture = interruptible(lambda: _open_network(url, cfg), release=_release)
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
                source = _open_folder(path, cfg)
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
