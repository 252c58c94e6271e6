"""Stopping mid-file (Ctrl-C, SIGTERM, a failing stage): outputs finalised, threads gone, source released."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import cv2
import pytest
from conftest import REPO, SHARED_MEDIA

from streamer import worker as worker_module
from streamer.app import RunOptions, run
from streamer.config import Config, override

# Lifecycle tests: a warning (a thread that died with an exception, a file or socket never closed) is a failure.
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("error")]

CLIP = SHARED_MEDIA / "blender_tears_of_steel_10s.mp4"


def _count_frames(path):
    cap = cv2.VideoCapture(str(path))
    try:
        assert cap.isOpened(), f"{path} does not open"
        return sum(1 for _ in iter(lambda: cap.read()[0], False))
    finally:
        cap.release()


def _lines(path):
    """Frame lines of an events file (tracked mode also writes new/end track records)."""
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if '"faces"' in line]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_file_finalises_outputs(sig, models_env, tmp_path):
    out, events, summary = tmp_path / "o.mp4", tmp_path / "e.jsonl", tmp_path / "s.json"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "--source", str(CLIP), "--output", str(out), "--events", str(events),
         "--summary", str(summary), "--no-window"],
        env=models_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_lines(events)) < 30:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no frames analysed within 120 s"
            time.sleep(0.05)
        sent_at = time.monotonic()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=10)
        stop_s = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert stop_s < 5, f"took {stop_s:.1f} s to stop"
    written = len(_lines(events))
    assert 30 <= written < 240
    # Every frame the run reported is in the playable file; nothing half-written.
    assert _count_frames(out) == written
    report = json.loads(summary.read_text())
    assert report["stopped_by"] == "interrupted" and report["frames_out"] == written


def test_interrupt_in_process_leaves_no_thread_and_releases_source(models_env, tmp_path, monkeypatch):
    baseline = {t.ident for t in threading.enumerate()}
    real_process = worker_module.Worker.process
    calls = {"n": 0}

    def interrupted_after_20(self, frame, dropped=0):
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt
        return real_process(self, frame, dropped)

    monkeypatch.setattr(worker_module.Worker, "process", interrupted_after_20)
    config = override(Config(), {"output.window": False})
    out = tmp_path / "o.mp4"
    summary = run(config, RunOptions(source=str(CLIP), output=out, window=False, progress=False))
    assert summary["stopped_by"] == "interrupted" and summary["frames_out"] == 20
    assert _count_frames(out) == 20
    leftover = [t for t in threading.enumerate() if t.ident not in baseline and t.is_alive()]
    assert not leftover, leftover


def test_error_in_a_stage_still_finalises_and_stops_threads(models_env, tmp_path, monkeypatch):
    baseline = {t.ident for t in threading.enumerate()}
    real_process = worker_module.Worker.process
    calls = {"n": 0}

    def broken_after_10(self, frame, dropped=0):
        calls["n"] += 1
        if calls["n"] > 10:
            raise RuntimeError("stage failed")
        return real_process(self, frame, dropped)

    monkeypatch.setattr(worker_module.Worker, "process", broken_after_10)
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError, match="stage failed"):
        run(Config(), RunOptions(source=str(CLIP), output=out, window=False, progress=False))
    assert _count_frames(out) == 10
    assert not [t for t in threading.enumerate() if t.ident not in baseline and t.is_alive()]


def test_second_ctrl_c_escapes_a_hung_stage(models_env, tmp_path, monkeypatch):
    import os

    real_process = worker_module.Worker.process
    calls = {"n": 0}

    def hangs_at_5(self, frame, dropped=0):
        calls["n"] += 1
        if calls["n"] == 5:
            time.sleep(60)  # a stage that never returns on its own
        return real_process(self, frame, dropped)

    def press_ctrl_c_twice():
        time.sleep(2.0)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(worker_module.Worker, "process", hangs_at_5)
    threading.Thread(target=press_ctrl_c_twice, daemon=True).start()
    started = time.monotonic()
    summary = run(Config(), RunOptions(source=str(CLIP), output=tmp_path / "o.mp4", window=False, progress=False))
    assert time.monotonic() - started < 30
    assert summary["stopped_by"] == "interrupted" and summary["frames_out"] == 4
    assert _count_frames(tmp_path / "o.mp4") == 4
