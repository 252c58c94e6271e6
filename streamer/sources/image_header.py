"""Reading an image's format and pixel size from its header, without decoding it: one reader for
photo files (decoded at 1/2, 1/4 or 1/8 when large) and web uploads (refused from the header when
they claim too many pixels, the defence against "decompression bombs")."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional, Tuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless...); C4 (DHT), C8 (JPG) and CC
# (DAC) share the range but are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xDA)])
# A photo file's header is read this far: EXIF, ICC and thumbnails come before the frame header,
# each segment at most 64 kB; a file whose frame header lies further is decoded at full size.
FILE_HEAD_BYTES = 512 * 1024


class HeaderError(ValueError):
    """A header cut short or broken; the message says which and what to send instead."""


def sniff(data: bytes) -> Optional[str]:
    """The image format of ``data`` from its first bytes ("JPEG", "PNG", "WebP", "BMP"), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == PNG_SIGNATURE:
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    return None


def _skip_scan(data: bytes, at: int) -> int:
    """The offset of the first real marker after a scan's entropy-coded data (or the end)."""
    n = len(data)
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= n:
            return n
        follower = data[at + 1]
        if follower == 0x00 or 0xD0 <= follower <= 0xD7:  # stuffed byte, restart marker
            at += 2
            continue
        return at


def jpeg_size_wh(data: bytes, complete: bool) -> Tuple[int, int]:
    """(width, height) from a JPEG's frame header. ``complete``: the data must run to the
    end-of-image marker (a truncated upload would decode with its missing part greyed out and no
    error); else the first frame header is enough (the head of a file). HeaderError otherwise."""
    size: Optional[Tuple[int, int]] = None
    at, n = 2, len(data)
    while at + 2 <= n:
        if data[at] != 0xFF:
            raise HeaderError("a broken JPEG (bad marker structure); send the complete file")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:  # end of image: complete
            if size is None:
                raise HeaderError("a JPEG without a frame header; send a complete photo")
            return size
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        if at + 4 > n:
            break
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if length < 2:
            raise HeaderError("a broken JPEG (bad segment length); send the complete file")
        if marker in _JPEG_SOF and at + 9 <= n:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            size = (width, height)
            if not complete:
                return size
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            if not complete:
                break  # a scan before any frame header
            at = _skip_scan(data, at)
    raise HeaderError("a truncated JPEG (it ends before its end-of-image marker); send the complete file")


def size_wh(data: bytes, kind: str, complete: bool = True) -> Tuple[int, int]:
    """(width, height) that an image of format ``kind`` (from ``sniff``) declares, read from its
    header; HeaderError when the header is cut short or broken (see ``jpeg_size_wh`` for
    ``complete``)."""
    try:
        if kind == "JPEG":
            return jpeg_size_wh(data, complete)
        if kind == "PNG":
            if data[12:16] != b"IHDR":
                raise HeaderError("a broken PNG (no IHDR header); send the complete file")
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if kind == "BMP":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        chunk = data[12:16]  # WebP
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        raise HeaderError("a WebP of an unknown layout; send JPEG or PNG")
    except struct.error:
        raise HeaderError(f"a {kind} cut short inside its header; send the complete file") from None


def file_size_wh(path: Path) -> Optional[Tuple[int, int]]:
    """Width and height from a JPEG or PNG file's header without decoding it; None for other
    files, or a header that does not parse (which then decodes at full size)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(FILE_HEAD_BYTES)
    except OSError:
        return None
    kind = sniff(head)
    if kind not in ("JPEG", "PNG"):
        return None
    try:
        return size_wh(head, kind, complete=False)
    except HeaderError:
        return None
