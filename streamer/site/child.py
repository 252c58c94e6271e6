"""One camera's worker process: ``app.run`` of its config, beating a heartbeat at every frame.

Started by the supervisor with the ``spawn`` method (a fresh interpreter: no threads, locks or
OpenCV state copied from the parent), so everything it gets is pickled: the camera's ``Config``,
its ``RunOptions`` and the two shared values of its ``Heartbeat``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, List, Optional

from ..config import Config
from ..errors import StreamerError
from ..outputs.sinks import Sink
from ..types import FrameResult

log = logging.getLogger(__name__)

# Exit codes the supervisor reads: a run that ended (a file played to its end, a user stop) is
# not restarted; an error is.
EXIT_DONE, EXIT_ERROR = 0, 2
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Heartbeat:
    """Shared with the supervisor: ``last_frame_s`` (``time.monotonic()``, one clock for every
    process on the machine; 0.0 before the first frame), ``frames`` delivered by this run, and
    ``pictures_until`` and ``stills_until``, set by the supervisor: until then the worker relays
    its picture at the stream's rate, or a still a second (relay.RelaySink)."""

    last_frame_s: Any  # multiprocessing.Value("d")
    frames: Any  # multiprocessing.Value("Q")
    pictures_until: Any  # multiprocessing.Value("d")
    stills_until: Any  # multiprocessing.Value("d"): until then, a still a second (no stream viewer)


class HeartbeatSink(Sink):
    """A run sink that marks each frame in the heartbeat: two stores into shared memory, no lock
    (one writer; the reader only compares times)."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self._beat = heartbeat

    def write(self, result: FrameResult, annotated) -> None:
        self._beat.last_frame_s.value = time.monotonic()
        self._beat.frames.value += 1


def _die_with_parent() -> None:
    """SIGTERM this process when the supervisor dies (killed, crashed): no orphan keeps a camera."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            log.debug("prctl(PR_SET_PDEATHSIG) not available; a worker outlives a killed supervisor")


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def camera_main(name: str, config: Config, options: Any, heartbeat: Heartbeat, verbosity: int,
                parent_pid: Optional[int] = None, relay: Optional[Connection] = None) -> None:
    """The worker's entry point (``multiprocessing.Process(target=...)``): run the camera until
    its source ends, a stop signal comes, or an error; exit EXIT_DONE or EXIT_ERROR. ``relay``:
    the sending end of this run's pipe to the supervisor (relay.RelaySink)."""
    # Its own session: a Ctrl-C on the terminal reaches the supervisor only, which stops each
    # worker once (a second signal would cut a worker's finishing short).
    os.setsid()
    _die_with_parent()
    if parent_pid is not None and os.getppid() != parent_pid:
        sys.exit(EXIT_ERROR)  # the supervisor died before prctl took effect
    logging.basicConfig(level=logging.DEBUG if verbosity else logging.INFO,
                        format=f"streamer[{name}]: %(levelname)s: %(message)s", stream=sys.stderr)
    from ..sources.native_log import quiet

    quiet(verbosity < 2)
    # Until the run installs its own stop handler (models loading, the camera opening), SIGTERM is
    # a Ctrl-C: the run's early ending writes its summary.
    signal.signal(signal.SIGTERM, _interrupt)
    from ..app import run

    sinks: List[Sink] = [HeartbeatSink(heartbeat)]
    if relay is not None:
        from .relay import RelaySink

        sinks.append(RelaySink(config, relay, heartbeat.pictures_until, heartbeat.stills_until))
    try:
        run(config, options, sinks=sinks)
    except StreamerError as error:
        log.error("%s", error)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        pass
    sys.exit(EXIT_DONE)
