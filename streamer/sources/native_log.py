"""What the native libraries under OpenCV print themselves, on and off.

OpenCV's logger (``[ERROR:0@0.2] ... Camera index out of range``, ``VIDEOIO/FFMPEG: Failed to
initialize``), FFmpeg's (``moov atom not found``) and libjpeg's, which writes straight to the
process's stderr (``Premature end of JPEG file``), print before our one-line error and say the
same thing less clearly. ``quiet()`` turns the first two down before the first capture opens;
``libjpeg_silenced()`` points stderr's file descriptor elsewhere for the length of one decode.
``-vv`` keeps them all (``quiet(False)``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

_silenced = False


def quiet(silence: bool = True) -> None:
    """Silence (or with False, open up to DEBUG) OpenCV's and FFmpeg's own logs for this process.
    Call before the first capture opens: OpenCV reads OPENCV_FFMPEG_LOGLEVEL when it opens one."""
    global _silenced
    _silenced = silence
    # AV_LOG_QUIET (-8), or AV_LOG_DEBUG (48) with -vv.
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8" if silence else "48"
    import cv2

    cv2.utils.logging.setLogLevel(
        cv2.utils.logging.LOG_LEVEL_SILENT if silence else cv2.utils.logging.LOG_LEVEL_DEBUG)


@contextlib.contextmanager
def libjpeg_silenced() -> Iterator[None]:
    """stderr's descriptor on /dev/null while the block runs (a photo's decode, milliseconds),
    when ``quiet()`` is on; Python's own sys.stderr is flushed first, so nothing of ours is lost."""
    if not _silenced:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
