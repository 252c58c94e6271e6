"""Stopping a run cleanly: Ctrl-C and SIGTERM end it at a frame boundary, and a file played at its
own speed (``serve``) waits for each frame's time without missing a stop."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from typing import Iterator

from .types import Frame

log = logging.getLogger(__name__)


# A paced file's wait for its next frame is cut into slices this long, so a stop is heard at once.
_PACE_SLICE_S = 0.1


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM ask the run to stop at the next frame boundary, so that the
    video, the events and the summary always agree on the frames written. While the loop waits
    for a frame (a stalled camera, a reconnect) the signal interrupts the wait at once, and a
    second signal interrupts whatever runs (a stage that hangs). Once the loop is over
    (``finishing``), signals are noted but interrupt nothing: finishing the files and the summary
    is bounded work, and cutting it short would lose them."""

    def __init__(self) -> None:
        self.requested = False
        self.waiting = False
        self.finishing = False
        self._raised = False  # the loop is being left: a further signal must not cut the way out

    def _handler(self, signum, _frame) -> None:
        if self.finishing or self._raised:
            if not self.requested:
                log.warning("already finishing the outputs; stopping when they are written")
            self.requested = True
            return
        # A second signal stops at once: the way out of a stage that hangs.
        if self.waiting or self.requested:
            self.requested = self._raised = True
            raise KeyboardInterrupt(f"signal {signum}")
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopSignals"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals are only delivered to the main thread; nothing to install
            return
        previous = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def next_frame(self, frames: Iterator):
        """The next frame, or None at the end of the source; KeyboardInterrupt on a stop request."""
        if self.requested:
            self._raised = True
            raise KeyboardInterrupt("stop requested")
        self.waiting = True
        try:
            return next(frames, None)
        finally:
            self.waiting = False


def pace(frame: Frame, t_loop: float, stop: "StopSignals") -> None:
    """Wait until a file's frame is due at its own fps (its position in the file after the loop's
    start); a frame already late is not waited for, and nothing is dropped. Waits end at a stop."""
    if frame.pos_s is None:
        return
    while not stop.requested:
        wait_s = t_loop + frame.pos_s - time.monotonic()
        if wait_s <= 0:
            return
        time.sleep(min(wait_s, _PACE_SLICE_S))
