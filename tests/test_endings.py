"""Every ending writes the summary and closes the tracks (issue 15): a camera that never comes
back ends with exit 2, yet the summary is printed and written and every track gets its end record."""

from __future__ import annotations

import json
import time

import cv2
import pytest
from conftest import SHARED_MEDIA

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
