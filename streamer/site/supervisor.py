"""Several cameras on one box: one worker process per camera, supervised.

A camera that crashes, hangs or leaks takes only its own process down. The supervisor (the
``streamer run --config site.yaml`` process) starts each worker with ``multiprocessing``'s
``spawn``, watches its exit and its heartbeat (``child.Heartbeat``: the time of its latest frame),
and restarts a worker that died or went silent after a backoff of ``site.restart_backoff_s``
doubling up to ``site.restart_backoff_max_s``, logging why and counting restarts. Ctrl-C or
SIGTERM stops every worker (SIGTERM: each finishes its outputs and summary), waits at most
``site.stop_timeout_s``, kills what is left, and writes the site summary (``summary.py``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ..config import SiteConfig
from .child import EXIT_DONE, Heartbeat, camera_main
from .relay import Feed, Relay

log = logging.getLogger(__name__)

# How often the supervisor looks at its workers: a death or a silence is noticed within this.
_POLL_S = 0.1
# Restart reasons kept per camera in the site summary (the count is kept in full).
_KEPT_REASONS = 20


@dataclass(frozen=True)
class CameraJob:
    """What one worker runs: the camera's name, its merged ``Config`` and its ``RunOptions``
    (both pickled into the worker)."""

    name: str
    config: Any
    options: Any


@dataclass
class CameraState:
    """A camera as the supervisor follows it (read by the site summary)."""

    job: CameraJob
    heartbeat: Heartbeat
    process: Optional[Any] = None  # multiprocessing.Process (spawn context)
    started_s: float = 0.0
    starts: int = 0
    restarts: int = 0
    reasons: List[str] = field(default_factory=list)
    failures_in_row: int = 0
    next_start_s: Optional[float] = 0.0  # None: not to be started again (done, or the site stops)
    exit_code: Optional[int] = None
    finished: bool = False  # its run ended by itself (a file played to its end): not restarted
    killed_at_stop: bool = False
    frames: int = 0  # frames delivered by every run of this camera so far

    @property
    def pid(self) -> Optional[int]:
        return None if self.process is None else self.process.pid


def camera_status(state: CameraState, feed: Feed) -> str:
    """``up``, ``reconnecting`` (its worker runs, the camera does not deliver), ``starting`` (no
    figures yet from the worker now running), ``restarting`` (its worker died or hung; the
    supervisor starts another) or ``ended`` (its run ended by itself: not restarted)."""
    if state.finished:
        return "ended"
    if state.process is None:
        return "restarting" if state.starts else "starting"
    figures = feed.current()
    if figures is None:
        return "starting"
    return "up" if (figures.get("snapshot") or {}).get("source_up", True) else "reconnecting"


class Supervisor:
    """Starts, watches, restarts and stops one worker per ``CameraJob``. ``run()`` blocks until
    every worker finished or a stop (``stop()``, SIGINT, SIGTERM); ``stop()`` is idempotent and
    may be called from any thread."""

    def __init__(self, jobs: List[CameraJob], site: SiteConfig, verbosity: int = 0) -> None:
        self.site = site
        self._context = multiprocessing.get_context("spawn")
        self._verbosity = verbosity
        self._stop = threading.Event()
        self.cameras: Dict[str, CameraState] = {
            job.name: CameraState(job, Heartbeat(self._context.Value("d", 0.0, lock=False),
                                                 self._context.Value("Q", 0, lock=False),
                                                 self._context.Value("d", 0.0, lock=False),
                                                 self._context.Value("d", 0.0, lock=False)))
            for job in jobs}
        beats = {name: state.heartbeat for name, state in self.cameras.items()}
        self.relay = Relay(list(self.cameras), {name: beat.pictures_until for name, beat in beats.items()},
                           {name: beat.stills_until for name, beat in beats.items()})
        self.stopped_by = "end of input"

    def stop(self, reason: str = "stopped") -> None:
        if not self._stop.is_set():
            self.stopped_by = reason
            self._stop.set()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, _frame) -> None:
            name = signal.Signals(signum).name
            if not self._stop.is_set():
                log.warning("stopping: %s; each camera finishes its outputs (at most %.0f s)", name,
                            self.site.stop_timeout_s)
            self.stop("interrupted")

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def run(self) -> None:
        """Supervise until every camera finished or a stop; then stop them all (bounded)."""
        with self._signals():
            try:
                while not self._stop.is_set():
                    now = time.monotonic()
                    for state in self.cameras.values():
                        self._tend(state, now)
                    if all(state.finished for state in self.cameras.values()):
                        break
                    self._stop.wait(_POLL_S)
            finally:
                self._stop_all()
                self.relay.stop()

    # --- one camera ---

    def _tend(self, state: CameraState, now: float) -> None:
        process = state.process
        if process is None:
            if state.next_start_s is not None and now >= state.next_start_s:
                self._start(state)
            return
        if not process.is_alive():
            process.join(0)
            self._ended(state, self._exit_reason(process.exitcode), process.exitcode, now)
            return
        last = state.heartbeat.last_frame_s.value
        if last == 0.0:
            if now - state.started_s > self.site.start_timeout_s:
                self._kill(state, f"no first frame within {self.site.start_timeout_s:g} s (site.start_timeout_s)", now)
        elif now - last > self.site.silent_s:
            self._kill(state, f"silent: no frame for {now - last:.1f} s (site.silent_s {self.site.silent_s:g})", now)
        elif state.failures_in_row and now - state.started_s > self.site.restart_backoff_max_s:
            state.failures_in_row = 0  # healthy again: its next failure starts the backoff afresh

    def _start(self, state: CameraState) -> None:
        state.heartbeat.last_frame_s.value = 0.0
        state.heartbeat.frames.value = 0
        job = state.job
        # A new pipe for every run: one killed in the middle of a send breaks only its own.
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=camera_main, name=f"streamer-{job.name}",
            args=(job.name, job.config, job.options, state.heartbeat, self._verbosity, os.getpid(), writer))
        process.start()
        writer.close()  # the worker's end: the reader sees EOF when the worker's copy closes
        self.relay.attach(job.name, reader)
        state.process, state.started_s, state.exit_code = process, time.monotonic(), None
        state.starts += 1
        log.info("camera %s: worker started (pid %d)%s", job.name, process.pid,
                 f", restart {state.restarts}" if state.restarts else "")

    @staticmethod
    def _exit_reason(code: Optional[int]) -> str:
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def _kill(self, state: CameraState, reason: str, now: float) -> None:
        process = state.process
        assert process is not None
        # SIGKILL: a hung or stopped (SIGSTOP) process handles no SIGTERM; its outputs are as a
        # crash leaves them (the events file complete line by line, the live recording's segments).
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.join(5.0)
        self._ended(state, reason, process.exitcode, now)

    def _ended(self, state: CameraState, reason: str, code: Optional[int], now: float) -> None:
        state.frames += state.heartbeat.frames.value
        state.exit_code = code
        if state.process is not None:
            state.process.close()
        state.process = None
        if code == EXIT_DONE and not reason.startswith(("silent", "no first frame")):
            log.info("camera %s: its run ended (%s); not restarted", state.job.name, reason)
            state.finished, state.next_start_s = True, None
            return
        state.failures_in_row += 1
        delay = min(self.site.restart_backoff_max_s, self.site.restart_backoff_s * 2 ** (state.failures_in_row - 1))
        state.restarts += 1
        state.reasons = [*state.reasons, reason][-_KEPT_REASONS:]
        state.next_start_s = now + delay
        log.warning("camera %s: worker %s; restart %d in %g s", state.job.name, reason, state.restarts, delay)

    # --- stopping ---

    def _stop_all(self) -> None:
        """SIGTERM (and SIGCONT: a stopped process would not see it) to every worker, wait for them
        together at most site.stop_timeout_s, then SIGKILL what is left."""
        running = [s for s in self.cameras.values() if s.process is not None]
        for state in self.cameras.values():
            state.next_start_s = None
        for state in running:
            assert state.process is not None
            for sig in (signal.SIGTERM, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.process.pid, sig)
        deadline = time.monotonic() + self.site.stop_timeout_s
        for state in running:
            assert state.process is not None
            state.process.join(max(0.0, deadline - time.monotonic()))
        for state in running:
            process = state.process
            assert process is not None
            if process.is_alive():
                log.warning("camera %s: worker did not stop within %.0f s (site.stop_timeout_s); killed",
                            state.job.name, self.site.stop_timeout_s)
                state.killed_at_stop = True
                process.kill()
                process.join(5.0)
            state.frames += state.heartbeat.frames.value
            state.exit_code = process.exitcode
            process.close()
            state.process = None


def summary_path_of(site_summary: Path, name: str) -> Path:
    """Where camera ``name``'s summary goes when its config names none: beside the site's."""
    return site_summary.with_name(f"{name}.summary.json")
