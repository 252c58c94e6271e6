"""Photo uploads for the web service: what the bytes are, how many pixels they claim, and the
analysis of one photo exactly as ``run.py --source photo.jpg`` does it (same analyzer settings,
same decoding, same overlay, same JPEG encoding), so the page's image equals the CLI's file.

Nothing here touches the network or a path a client names: it gets bytes, returns data.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from ..config import Config
from ..picture.draw import LabelStyle, label_lines
from ..sources.image_header import HeaderError, size_wh, sniff
from ..sources.source import REDUCED_READ_FLAGS, decode_reduction
from ..types import Face, Frame
from . import heap

log = logging.getLogger(__name__)

# What the service decodes, by content (a client's file name and Content-Type are hints only):
# the formats whose header gives the pixel count before decoding, so a 50,000 x 50,000 PNG of a
# few kB (a "decompression bomb") is refused from its header, not after 7.5 GB of decoding.
SUPPORTED = ("JPEG", "PNG", "WebP", "BMP")
# Content types accepted for a raw (non-multipart) upload body.
RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/x-ms-bmp", "application/octet-stream")
class UploadError(Exception):
    """An upload the service refuses: ``status`` is the HTTP status, the message names the problem
    and the fix (it is sent to the client as ``{"error": message}``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _not_an_image(data: bytes) -> str:
    if data[4:8] == b"ftyp":
        return ("a HEIF/HEIC/AVIF image or a video (ISO media container), which OpenCV cannot decode here; "
                f"convert it to JPEG or PNG. Supported: {', '.join(SUPPORTED)}")
    return f"not an image this service decodes; send {', '.join(SUPPORTED)}"


def image_size(data: bytes, kind: str) -> Tuple[int, int]:
    """(width, height) that an upload of format ``kind`` (from ``sniff``) declares, read from its
    header without decoding; UploadError 400 when the header is cut short or broken, or a JPEG
    ends before its end-of-image marker."""
    try:
        return size_wh(data, kind, complete=True)
    except HeaderError as error:
        raise UploadError(400, str(error)) from None


def check_and_decode(data: bytes, max_pixels: int, decode_side_px: int = 0) -> np.ndarray:
    """The upload decoded to ``(H, W, 3)`` uint8 BGR, as the CLI reads a photo (IMREAD_COLOR: grey
    and RGBA become BGR; EXIF orientation applied; at 1/2, 1/4 or 1/8 when its long side is that
    many times ``decode_side_px``, capture.photo_decode_side_px). UploadError: 400 empty, broken or
    undecodable, 413 above ``max_pixels`` (from the header, before decoding), 415 not a supported image."""
    if not data:
        raise UploadError(400, "the upload is empty (0 bytes); send a photo")
    kind = sniff(data)
    if kind is None:
        raise UploadError(415, _not_an_image(data))
    width, height = image_size(data, kind)
    if width <= 0 or height <= 0:
        raise UploadError(400, f"a {kind} that declares {width}x{height} pixels; send a real photo")
    if width * height > max_pixels:
        raise UploadError(413, f"the image is {width}x{height} = {width * height / 1e6:.1f} MP, above the limit of "
                               f"{max_pixels / 1e6:.1f} MP (web.max_image_mp); send a smaller image")
    # A 12 MP phone photo is 36 MB decoded whole, 9 MB at 1/2, and still twice the detector's input.
    factor = decode_reduction((width, height), decode_side_px)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_READ_FLAGS[factor])
    if bgr is None or bgr.size == 0:
        raise UploadError(400, f"a {kind} that OpenCV cannot decode (damaged or cut short); send the complete file")
    if bgr.shape[0] * bgr.shape[1] * factor * factor > max_pixels:  # a header that lied
        raise UploadError(413, f"the image decodes to {bgr.shape[1]}x{bgr.shape[0]} pixels, above the limit of "
                               f"{max_pixels / 1e6:.1f} MP (web.max_image_mp); send a smaller image")
    return bgr


def image_from_body(content_type: str, body: bytes) -> bytes:
    """The image bytes of a request body: the ``image`` field of a ``multipart/form-data`` body,
    or the body itself for an image content type. ``body`` is already bounded by the caller (its
    Content-Length was checked against the upload limit before it was read)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        if "boundary=" not in content_type:
            raise UploadError(400, "a multipart/form-data body without a boundary; send it as a browser form does")
        # The email package parses MIME multipart (the cgi module is gone from Python 3.13).
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
        )
        if not message.is_multipart():
            raise UploadError(400, "a multipart/form-data body that does not parse; send it as a browser form does")
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "image":
                payload = part.get_payload(decode=True)
                return payload if isinstance(payload, bytes) else b""
        raise UploadError(400, "the form has no field named 'image'; send the photo as the 'image' field")
    if media_type.startswith("image/") or media_type == "application/octet-stream":
        return body
    raise UploadError(415, f"Content-Type '{media_type or 'none'}' is neither multipart/form-data nor an image "
                           "type; send a form with an 'image' field or a raw image/jpeg, image/png body")


@dataclasses.dataclass(frozen=True)
class PhotoResult:
    """One analysed photo: ``faces``, ``size_wh``, ``timing_ms`` per stage, and the annotated
    image as ``(H, W, 3)`` uint8 BGR, faces hidden when the service anonymizes (None when it
    keeps no pictures: ``output.privacy: aggregate``)."""

    faces: Tuple[Face, ...]
    size_wh: Tuple[int, int]
    timing_ms: Dict[str, float]
    annotated: Optional[np.ndarray]
    style: LabelStyle = LabelStyle()

    def to_json(self) -> dict:
        """The API's answer: ``faces`` are the events file's face objects (README schema), each
        with ``label``: the lines the overlay draws over it (``draw.label_lines``), which the page
        shows as they are, so that its table and the picture say the same."""
        return {
            "faces": [{**face.to_event(), "label": label_lines(face, self.style)} for face in self.faces],
            "size_wh": list(self.size_wh),
            "timing_ms": {stage: round(ms, 2) for stage, ms in self.timing_ms.items()},
        }


def encode_jpeg(bgr: np.ndarray, quality: Optional[int] = None) -> bytes:
    """JPEG bytes of a BGR image; ``quality`` None is OpenCV's default (95), what the CLI writes."""
    params = [] if quality is None else [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, encoded = cv2.imencode(".jpg", bgr, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {bgr.shape[1]}x{bgr.shape[0]} image as JPEG")
    return encoded.tobytes()


# Uploads that may wait for a turn beyond those being read and analysed; past them an upload is
# answered 503 at once: a waiting upload holds a request thread (its body waits unread in the
# socket), and the page, /healthz and /metrics must always find one (streamer/web/server.py sizes
# the pool from these). 18: a batch of 20 photos at once all get their turn.
WAITING_UPLOADS = 18


class UploadTurns:
    """``slots`` uploads read and analysed at once, ``waiting`` more queued for a turn; ``enter``
    is False at once when the queue is full, or after ``timeout_s`` without a turn."""

    def __init__(self, slots: int, waiting: int) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._room = threading.BoundedSemaphore(slots + waiting)

    def enter(self, timeout_s: float) -> bool:
        if not self._room.acquire(blocking=False):
            return False
        if not self._slots.acquire(timeout=timeout_s):
            self._room.release()
            return False
        return True

    def leave(self) -> None:
        self._slots.release()
        self._room.release()


class PhotoService:
    """Analyses uploaded photos as a photo run does (``app.build_worker`` for a photo: the same
    detection at ``detector.photo_max_side_px``, the same masks with ``output.anonymize`` and its
    mask detector, the same overlay, nothing drawn with ``output.privacy: aggregate``), with the
    models built on first use and kept. cv2.dnn networks are not thread-safe, so model calls are
    serialised by a lock, and decoding and drawing with them: one photo is decoded at a time. At
    most ``web.max_parallel_uploads`` uploads are read at once and WAITING_UPLOADS more wait their
    turn (``turns``); the rest get 503, so N parallel uploads do not grow memory N times."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._analyzer = None
        self._mask_detector = None
        self._model_lock = threading.Lock()
        self.turns = UploadTurns(config.web.max_parallel_uploads, WAITING_UPLOADS)
        self.max_pixels = int(config.web.max_image_mp * 1e6)
        self._decode_side_px = config.capture.photo_decode_side_px
        # output.privacy: aggregate: no picture leaves the service, uploads get their faces only.
        self.pictures = config.output.privacy != "aggregate"
        self.anonymize = config.output.anonymize if self.pictures else None
        self.photos = 0
        self.faces = 0

    def warm_up(self) -> None:
        """Load the models now (at start-up) rather than on the first upload."""
        with self._model_lock:
            self._load()

    def _load(self):
        if self._analyzer is None:
            from ..detectors import build_mask_detector
            from ..pipeline import build_analyzer

            t0 = time.perf_counter()
            self._analyzer = build_analyzer(self._config, None, photos=True)
            self._mask_detector = build_mask_detector(self._config) if self.pictures else None
            log.info("photo models loaded in %.1f s", time.perf_counter() - t0)
        return self._analyzer

    def analyse(self, data: bytes) -> PhotoResult:
        """Decode, check, analyse and draw one uploaded photo (UploadError for a bad upload)."""
        from ..app import build_worker

        # One photo decoded at a time: the others wait as their compressed bytes (the network's
        # working memory at a photo's input size, ~180 MB, is the bulk of a photo's cost anyway).
        with self._model_lock:
            t0 = time.perf_counter()
            try:
                bgr = check_and_decode(data, self.max_pixels, self._decode_side_px)
                decode_ms = (time.perf_counter() - t0) * 1000.0
                analyzer = self._load()
                # A worker per photo: photos are unrelated, nothing of one is held for the next.
                worker = build_worker(self._config, analyzer, False, False, not self.pictures,
                                      mask_detector=self._mask_detector)
                try:
                    result, annotated = worker.process(Frame(bgr, 0, time.monotonic(), "upload"))
                finally:
                    analyzer.release_buffers()  # see FaceAnalyzer.release_buffers
                self.photos += 1
                self.faces += len(result.faces)
                size_wh = (int(bgr.shape[1]), int(bgr.shape[0]))
                del bgr  # only the annotated copy is answered
            finally:
                heap.trim()
        timing_ms = {"decode": decode_ms, **result.timings_ms}
        return PhotoResult(result.faces, size_wh, timing_ms, annotated, LabelStyle.from_config(self._config.classifier))
