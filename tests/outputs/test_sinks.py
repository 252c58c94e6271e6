"""Sinks and overlay on synthetic frames: files complete and playable, input frames untouched."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from streamer.errors import SinkError
from streamer.outputs.recording import BackgroundVideoWriter, VideoFileSink
from streamer.outputs.sinks import EventsSink, write_image
from streamer.picture.draw import draw_faces, draw_hud, label_for
from streamer.types import Face, Frame, FrameResult

# Lifecycle tests: a warning (a thread that died with an exception, a file never closed) is a failure.
pytestmark = pytest.mark.filterwarnings("error")


def _frames(n, size_wh=(160, 120)):
    for i in range(n):
        bgr = np.zeros((size_wh[1], size_wh[0], 3), np.uint8)
        cv2.rectangle(bgr, (i * 3 % 100, 20), (i * 3 % 100 + 30, 60), (0, 255, 0), -1)
        yield bgr


@pytest.mark.parametrize(
    "codecs, expect_codec",
    [(["mp4v"], "mp4v"), (["XXXX", "mp4v"], "mp4v")],
)
def test_video_sink_round_trip_and_codec_fallback(tmp_path, codecs, expect_codec):
    path = tmp_path / "out.mp4"
    with VideoFileSink(path, 12.5, (160, 120), codecs) as sink:
        for bgr in _frames(25):
            sink.write(bgr)
        assert sink.codec == expect_codec
    cap = cv2.VideoCapture(str(path))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 25
        assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (160, 120)
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5, rel=0.01)
        decoded = sum(1 for _ in iter(lambda: cap.read()[0], False))
        assert decoded == 25
    finally:
        cap.release()


def test_video_sink_resizes_odd_frames_and_rejects_after_close(tmp_path):
    sink = VideoFileSink(tmp_path / "o.avi", 10, (64, 48), ["MJPG"])
    sink.write(np.zeros((100, 100, 3), np.uint8))
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(SinkError, match="already closed"):
        sink.write(np.zeros((48, 64, 3), np.uint8))


def test_video_sink_unopenable_names_codecs(tmp_path):
    with pytest.raises(SinkError, match="XXXX"):
        VideoFileSink(tmp_path / "cannot.mp4", 10, (64, 48), ["XXXX"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(SinkError, match="a file is in the way"):
        VideoFileSink(tmp_path / "file" / "cannot.mp4", 10, (64, 48), ["mp4v"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"], "nothing left behind"


def test_events_sink_flushes_each_line(tmp_path):
    path = tmp_path / "ev" / "events.jsonl"
    frame = Frame(bgr=np.zeros((4, 4, 3), np.uint8), index=7, t_s=1.5, source="x.mp4", pos_s=0.28)
    face = Face(xyxy=(1, 2, 3, 4), score=0.9, gender="female", gender_p=0.8, age=31.2, age_group="30-39", classified=True,
                age_raw=29.04, age_range=(24.0, 38.45))
    sink = EventsSink(path)
    sink.write(FrameResult(frame=frame, faces=(face,)))
    # Readable before close: a crash after this line loses nothing.
    line = json.loads(path.read_text().splitlines()[0])
    sink.close()
    assert line["frame"] == 7 and line["t_s"] == 0.28 and line["source"] == "x.mp4"
    assert line["faces"][0] == {
        "xyxy": [1.0, 2.0, 3.0, 4.0], "score": 0.9, "gender": "female", "gender_p": 0.8,
        "age": 31.2, "age_group": "30-39", "classified": True, "too_small": False,
        "age_raw": 29.0, "age_range": [24.0, 38.5], "turned": False,
    }


@pytest.mark.parametrize("camera, expected", [("door", "door"), (None, None)])
def test_events_of_a_named_camera_say_so_on_every_line(tmp_path, camera, expected):
    """A site's camera (mqtt.camera) is named on frames and records alike, as in its MQTT messages,
    so that several cameras' files read together tell them apart; an unnamed run adds nothing."""
    frame = Frame(bgr=np.zeros((4, 4, 3), np.uint8), index=1, t_s=1.0, source="rtsp://cam/1")
    with EventsSink(tmp_path / "e.jsonl", camera=camera) as sink:
        sink.write(FrameResult(frame=frame, faces=()))
        sink.write_records([{"event": "end", "track": 1, "t_s": 1.0}])
    lines = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [line.get("camera") for line in lines] == [expected, expected]
    assert all(("camera" in line) is (camera is not None) for line in lines)


def test_write_image_checks_extension(tmp_path):
    write_image(tmp_path / "a" / "b.png", np.zeros((5, 5, 3), np.uint8))
    assert cv2.imread(str(tmp_path / "a" / "b.png")).shape == (5, 5, 3)
    with pytest.raises(SinkError, match="image extension"):
        write_image(tmp_path / "b.txt", np.zeros((5, 5, 3), np.uint8))


@pytest.mark.parametrize(
    "face, text",
    [
        (Face((0, 0, 1, 1), 0.9, "male", 0.93, 34.4, "30-39", True), "male 93% | 34y (30-39)"),
        (Face((0, 0, 1, 1), 0.9), "face"),
        (Face((0, 0, 1, 1), 0.9, track=3), "#3 analysing..."),
        (Face((0, 0, 1, 1), 0.9, too_small=True), "face (too small)"),
        (Face((0, 0, 1, 1), 0.9, track=4, too_small=True), "#4 face (too small)"),
        (Face((0, 0, 1, 1), 0.9, track=4, turned=True), "#4 face (turned)"),
        (Face((0, 0, 1, 1), 0.9, "female", 0.6, 4.0, "3-9", True, track=2), "#2 female? | 4y (3-9)"),  # below label_min_gender_p
    ],
)
def test_label_text(face, text):
    assert label_for(face) == text


@pytest.mark.parametrize("xyxy", [(0, 0, 40, 40), (120, 80, 160, 120), (-10, -10, 20, 20), (150, 0, 170, 10)])
def test_draw_faces_returns_new_frame_and_draws_inside(xyxy):
    bgr = np.zeros((120, 160, 3), np.uint8)
    face = Face(xyxy, 0.9, "female", 0.9, 25.0, "20-29", True)
    out = draw_faces(bgr, [face])
    assert out is not bgr and not bgr.any(), "input frame must stay untouched"
    assert out.shape == bgr.shape and out.any()


def test_hud_darkens_bottom_left_corner_only():
    canvas = np.full((200, 300, 3), 200, np.uint8)
    draw_hud(canvas, ["in 30.0 fps", "model 5 ms"])
    assert canvas[-2, 2].max() < 200 and canvas[0, 0].min() == 200 and canvas[-1, -1].min() == 200


def test_background_writer_keeps_every_frame_and_stops_its_thread(tmp_path):
    import threading

    timings = []
    sink = VideoFileSink(tmp_path / "bg.avi", 10, (160, 120), ["MJPG"])
    with BackgroundVideoWriter(sink, queue_size=2, on_encode_ms=timings.append) as writer:
        for bgr in _frames(40):
            writer.write(bgr)
    assert sink.frames_written == 40 and len(timings) == 40
    assert not [t for t in threading.enumerate() if t.name == "video-writer" and t.is_alive()]
    cap = cv2.VideoCapture(str(tmp_path / "bg.avi"))
    assert sum(1 for _ in iter(lambda: cap.read()[0], False)) == 40
    cap.release()
    writer.close()  # idempotent
    with pytest.raises(SinkError, match="already closed"):
        writer.write(np.zeros((120, 160, 3), np.uint8))


def test_background_writer_reraises_encoder_errors_on_the_caller(tmp_path):
    class Exploding(VideoFileSink):
        def write(self, bgr):
            raise OSError("disk full")

    sink = Exploding(tmp_path / "x.avi", 10, (160, 120), ["MJPG"])
    writer = BackgroundVideoWriter(sink)
    with pytest.raises(SinkError, match="disk full"):
        for bgr in _frames(50):
            writer.write(bgr)
    writer.close()
    assert sink._writer is None, "the file is released even after an error"


def test_run_stats_keep_bounded_samples_but_count_every_run():
    from streamer.stats import _STAGE_SAMPLES, RunStats

    stats = RunStats()
    for i in range(_STAGE_SAMPLES * 2):
        stats.add_ms("detect", float(i % 100))
    assert len(stats.stage_ms["detect"]) == _STAGE_SAMPLES
    row = stats.percentiles()["detect"]
    assert row["n"] == _STAGE_SAMPLES * 2 and 40 <= row["p50_ms"] <= 60


def test_input_rate_counts_dropped_frames_and_ignores_the_frame_read_at_open():
    from streamer.stats import RunStats

    stats = RunStats()
    stats.mark_in(0, -5.0)  # read when the source opened, seconds before the models were ready
    for k in range(1, 11):
        stats.mark_in(3 * k, k / 10.0)  # the worker takes every third frame of a 30 fps camera
    assert stats.fps_in == pytest.approx(30.0)
    assert stats.frames_in == 11


def _no_space(*_args, **_kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDisk:
    f_bavail = 0


def _fill_video(tmp_path):
    with VideoFileSink(tmp_path / "o.mp4", 10, (160, 120), ["mp4v"]) as sink:
        for bgr in _frames(30):
            sink.write(bgr)


def _fill_events(tmp_path):
    with EventsSink("/dev/full") as sink:  # a real ENOSPC, no root needed
        frame = Frame(bgr=np.zeros((4, 4, 3), np.uint8), index=0, t_s=0.0, source="x.mp4", pos_s=0.0)
        sink.write(FrameResult(frame=frame, faces=()))


def _fill_image(tmp_path):
    write_image(tmp_path / "o.png", np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize(
    "fill, patch, needle",
    [
        (_fill_video, ("statvfs", lambda path: _FullDisk()), "after 25 frames"),
        (_fill_events, None, "after 0 lines"),
        (_fill_image, ("fsync", _no_space), "output image"),
    ],
)
def test_a_full_disk_is_a_sink_error_and_leaves_no_partial_file(fill, patch, needle, tmp_path, monkeypatch):
    """Without root (no tmpfs) the disk fills by a fake: the error says so, and nothing is left."""
    from streamer.outputs import sinks

    if patch is not None:
        monkeypatch.setattr(sinks.os, patch[0], patch[1])
    with pytest.raises(SinkError, match="disk is full") as failure:
        fill(tmp_path)
    assert needle in str(failure.value) and "\n" not in str(failure.value)
    assert list(tmp_path.iterdir()) == []


def test_video_sink_says_once_when_frames_change_size(tmp_path, caplog):
    import logging

    from streamer.outputs.recording import frames_in_file

    with caplog.at_level(logging.WARNING, logger="streamer.outputs.recording"):
        with VideoFileSink(tmp_path / "o.avi", 10, (64, 48), ["MJPG"]) as sink:
            sink.write(np.zeros((48, 64, 3), np.uint8))
            for _ in range(3):
                sink.write(np.zeros((100, 100, 3), np.uint8))
    warnings = [r.getMessage() for r in caplog.records if "change size" in r.getMessage()]
    assert len(warnings) == 1 and "from 64x48 to 100x100 at frame 1" in warnings[0]
    assert frames_in_file(tmp_path / "o.avi") == 4


@pytest.mark.parametrize("earlier, kept_lines, cut", [
    (b"", 0, 0),
    (b'{"frame":0}\n{"frame":1}\n', 2, 0),
    (b'{"frame":0}\n{"frame":1}\n{"fra', 2, 1),  # the writer died mid-line
    (b'{"frame":0,"faces":[' + b"x" * 200_000, 0, 1),  # a torn line longer than one read of the tail
])
def test_events_sink_appends_after_the_last_whole_line(tmp_path, earlier, kept_lines, cut):
    path = tmp_path / "events.jsonl"
    path.write_bytes(earlier)
    frame = Frame(bgr=np.zeros((4, 4, 3), np.uint8), index=5, t_s=0.0, source="cam")
    with EventsSink(path, append=True) as sink:
        sink.write(FrameResult(frame=frame, faces=()))
        with pytest.raises(SinkError, match="being written by another run"):
            EventsSink(path, append=True)  # a second service on the same file
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == kept_lines + 1
    assert json.loads(lines[-2])["frame"] == 5 and sink.torn_lines_cut == cut


def test_events_sink_refuses_an_existing_file_unless_it_appends(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"frame":0}\n')
    with pytest.raises(SinkError, match="already exists; pass --overwrite"):
        EventsSink(path)
    assert path.read_bytes() == b'{"frame":0}\n'


@pytest.mark.parametrize("segment_frames, published, partial", [
    (0, [], "rec.partial.mp4"),
    (4, ["rec_00001.mp4", "rec_00002.mp4"], "rec_00003.partial.mp4"),
])
def test_a_video_closed_incomplete_is_kept_as_partial_and_finished_segments_stay(tmp_path, segment_frames,
                                                                                 published, partial):
    from streamer.outputs.recording import VideoSink, frames_in_file

    sink = VideoSink(tmp_path / "rec.mp4", 10.0, ["mp4v"], live=False, segment_frames=segment_frames)
    for index in range(10):
        frame = Frame(bgr=np.zeros((48, 64, 3), np.uint8), index=index, t_s=index / 10, source="x")
        sink.write(FrameResult(frame=frame, faces=()), np.full((48, 64, 3), index * 20, np.uint8))
    sink.close_incomplete("events file e.jsonl: the disk is full")
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == sorted(published + [partial])
    assert sink.kept_at == tmp_path / partial and frames_in_file(tmp_path / partial) == 10 - 4 * len(published)
    assert sink.frames_in_file == 4 * len(published)
