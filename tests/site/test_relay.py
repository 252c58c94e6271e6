"""The relay from a camera's worker to the supervisor (streamer/site/relay.py): a RelaySink fed
synthetic frames at one end of a real pipe, the supervisor's Relay reading the other; pictures
only while asked for, none in aggregate privacy, a pipe that breaks dropped, the site's people."""

from __future__ import annotations

import multiprocessing
import time
from typing import Callable

import cv2
import numpy as np

from streamer.config import Config, override
from streamer.site.relay import Feed, Relay, RelaySink, people_now
from streamer.sources.capture import SourceInfo
from streamer.types import Face, Frame, FrameResult

SIZE_WH = (640, 480)


class FakeRun:
    """What a sink may read of its run."""

    def __init__(self, people: int = 2) -> None:
        self.info = SourceInfo("live", "synthetic://square", 30.0, SIZE_WH, None)
        self.people = people

    def snapshot(self) -> dict:
        return {"frames_out": 1, "fps": 30.0, "people_in_view": self.people, "source_up": True}


def _result(index: int, faces: int = 1) -> FrameResult:
    bgr = np.zeros((SIZE_WH[1], SIZE_WH[0], 3), np.uint8)
    cv2.rectangle(bgr, (100 + index, 100), (220 + index, 220), (255, 255, 255), -1)
    face = Face(xyxy=(100 + index, 100, 220 + index, 220), score=0.9, track=1)
    return FrameResult(frame=Frame(bgr=bgr, index=index, t_s=time.monotonic(), source="synthetic://square"),
                       faces=(face,) * faces)


def _wait(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _pair(config: Config, name: str = "door"):
    """A RelaySink and the Relay reading it, as the supervisor wires them (spawn context values)."""
    context = multiprocessing.get_context("spawn")
    pictures_until = context.Value("d", 0.0, lock=False)
    stills_until = context.Value("d", 0.0, lock=False)
    reader, writer = context.Pipe(duplex=False)
    relay = Relay([name], {name: pictures_until}, {name: stills_until})
    relay.attach(name, reader)
    return RelaySink(config, writer, pictures_until, stills_until), relay


def test_figures_come_about_once_a_second_and_pictures_only_while_asked_for() -> None:
    config = override(Config(), {"web.stream_fps": 20.0, "web.stream_max_side_px": 320})
    sink, relay = _pair(config)
    feed = relay.feeds["door"]
    sink.start(FakeRun())
    try:
        sink.write(_result(0), _result(0).frame.bgr)
        sink.write_records([{"event": "new", "track": 1}, {"event": "new", "track": 2}, {"event": "gone"}])
        assert _wait(lambda: feed.figures is not None, 5.0)
        assert feed.figures is not None
        assert feed.figures["snapshot"]["people_in_view"] == 2 and feed.figures["faces_in_frame"] == 1
        assert feed.figures["people_seen"] == 2 and feed.figures["source"]["size_wh"] == list(SIZE_WH)
        time.sleep(1.2)
        assert feed.jpeg is None, "a picture was encoded while nobody asked for one"
        relay.want_pictures("door", 2.0)
        for index in range(1, 30):  # frames at ~30 fps while a picture is wanted
            sink.write(_result(index), _result(index).frame.bgr)
            time.sleep(1 / 30)
        assert feed.jpeg is not None and feed.jpeg_seq >= 5, f"{feed.jpeg_seq} pictures at stream_fps 20"
        image = cv2.imdecode(np.frombuffer(feed.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)  # scaled to web.stream_max_side_px
        time.sleep(2.5)  # the wish has passed: figures go on, pictures stop
        seq, messages = feed.jpeg_seq, feed.messages
        for index in range(30, 60):
            sink.write(_result(index), _result(index).frame.bgr)
            time.sleep(1 / 30)
        assert feed.jpeg_seq == seq and feed.messages > messages
    finally:
        sink.close()
        relay.stop()
    assert feed.figures is not None and feed.figures["final"]


def test_stills_alone_cost_one_picture_a_second() -> None:
    """The page's cards ask for stills (latest.jpg), not the stream: one encode a second, not
    web.stream_fps."""
    sink, relay = _pair(override(Config(), {"web.stream_fps": 20.0}))
    feed = relay.feeds["door"]
    sink.start(FakeRun())
    try:
        t0 = time.monotonic()
        index = 0
        while time.monotonic() - t0 < 3.2:  # frames at ~30 fps, stills asked for all along
            relay.want_pictures("door", 1.0, stream=False)
            sink.write(_result(index), _result(index).frame.bgr)
            index += 1
            time.sleep(1 / 30)
        stills = feed.jpeg_seq
    finally:
        sink.close()
        relay.stop()
    assert 2 <= stills <= 5, f"{stills} pictures in 3.2 s of stills (the stream's rate would give ~60)"


def test_aggregate_privacy_never_sends_a_picture() -> None:
    sink, relay = _pair(override(Config(), {"output.privacy": "aggregate"}))
    feed = relay.feeds["door"]
    sink.start(FakeRun())
    try:
        relay.want_pictures("door", 10.0)
        for index in range(40):
            sink.write(_result(index), _result(index).frame.bgr)
            time.sleep(1 / 30)
        assert _wait(lambda: feed.messages > 0, 5.0)
    finally:
        sink.close()
        relay.stop()
    assert feed.jpeg is None and feed.figures is not None and feed.figures["pictures"] is False


def test_a_broken_pipe_is_dropped_and_a_new_one_read() -> None:
    """A worker killed mid-run leaves its pipe at EOF; the next run's pipe feeds the same camera."""
    context = multiprocessing.get_context("spawn")
    pictures_until = context.Value("d", 0.0, lock=False)
    relay = Relay(["door"], {"door": pictures_until})
    try:
        reader, writer = context.Pipe(duplex=False)
        relay.attach("door", reader)
        writer.send(({"snapshot": {"people_in_view": 1}, "final": False}, None))
        writer.close()  # as a killed worker's end closes
        assert _wait(lambda: relay.feeds["door"].messages == 1)
        assert _wait(lambda: not relay._connections)
        reader, writer = context.Pipe(duplex=False)
        relay.attach("door", reader)
        writer.send(({"snapshot": {"people_in_view": 3}, "final": False}, b"jpeg"))
        assert _wait(lambda: relay.feeds["door"].messages == 2)
        assert relay.feeds["door"].jpeg == b"jpeg"
        writer.close()
    finally:
        relay.stop()


def test_site_people_count_only_running_cameras_that_told_one() -> None:
    feeds = {"door": Feed(figures={"snapshot": {"people_in_view": 2}, "final": False}),
             "till": Feed(figures={"snapshot": {"people_in_view": None}, "faces_in_frame": 1, "final": False}),
             "back": Feed(figures={"snapshot": {"people_in_view": 5}, "final": True}),
             "hall": Feed()}
    assert people_now(feeds, ["door", "till", "back", "hall"]) == (3, ["door", "till"])
    assert people_now(feeds, ["till"]) == (1, ["till"])
