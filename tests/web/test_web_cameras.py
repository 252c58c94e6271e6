"""`serve --config site.yaml`: every camera of a site in one web service. Two cameras on the RTSP
test server (one in aggregate privacy) as supervised workers, the real command line on 127.0.0.1:
each camera's routes, the site's stats and health, /metrics labelled by camera, a worker killed
while a viewer watches another camera (and its own viewer waits through the restart), and the
camera page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Iterator, List

import cv2
import numpy as np
import pytest
import test_rtsp
from prometheus_client.parser import text_string_to_metric_families
from test_web_browser import browser, keep  # noqa: F401  (browser: the module's Chromium fixture)
from test_web_live import Served, Viewer, get, wait_for

pytestmark = pytest.mark.integration
rtsp_ready, rtsp_server = test_rtsp.rtsp_ready, test_rtsp.rtsp_server


class CameraViewer(Viewer):
    """An MJPEG client of one camera's stream."""

    def __init__(self, url: str, camera: str) -> None:
        import http.client

        host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.request("GET", f"/api/{camera}/stream.mjpeg")
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {name.lower(): value for name, value in self.response.getheaders()}


def _site(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(
        "capture: {read_timeout_s: 2.0, reconnect_backoff_s: 0.5, reconnect_retries: 20}\n"
        "site: {restart_backoff_s: 0.5}\n"
        "web: {max_viewers: 2}\n"
        "cameras:\n"
        f"  door: {{source: '{url}', mode: tracked}}\n"
        f"  till: {{source: '{url}', mode: tracked, privacy: aggregate}}\n")
    return config


@pytest.fixture
def site(rtsp_server, models_env, tmp_path) -> Iterator[Served]:
    served = Served(["--config", str(_site(tmp_path, rtsp_server.url)), "--summary", str(tmp_path / "site.json")],
                    models_env, tmp_path)
    try:
        assert wait_for(lambda: get(served.url, "/healthz")[0] == 200
                        and all(s == "up" for s in json.loads(get(served.url, "/healthz")[1])["cameras"].values()),
                        120), "".join(served.log)
        yield served
    finally:
        if served.proc.poll() is None:
            served.stop()


def _worker_pids(served: Served, camera: str) -> List[int]:
    return [int(m.group(1)) for line in list(served.log)
            if (m := re.search(rf"camera {camera}: worker started \(pid (\d+)\)", line))]


def test_each_camera_has_its_routes_and_the_site_its_stats_and_metrics(site: Served, tmp_path: Path) -> None:
    url = site.url
    stats = json.loads(get(url, "/api/stats")[1])
    assert set(stats["cameras"]) == {"door", "till"} and stats["site"]["cameras_up"] == 2
    assert stats["site"]["people_in_view"] == sum(card["people_in_view"] or 0 for card in stats["cameras"].values())
    assert [stats["cameras"][name]["pictures"] for name in ("door", "till")] == [True, False]
    door = json.loads(get(url, "/api/door/stats")[1])
    assert door["camera"] == "door" and door["status"] == "up" and door["size_wh"] == [176, 144]
    assert "faces" in json.loads(get(url, "/api/till/latest.json")[1])
    status, jpeg = get(url, "/api/door/latest.jpg")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and image is not None and image.shape == (144, 176, 3)
    # The aggregate camera keeps no pictures; the one-source routes and unknown names say what to ask.
    for path in ("/api/till/latest.jpg", "/api/till/stream.mjpeg"):
        status, body = get(url, path)
        assert status == 403 and "aggregate" in json.loads(body)["error"], path
    status, body = get(url, "/api/latest.jpg")
    assert status == 404 and "door, till" in json.loads(body)["error"]
    status, body = get(url, "/api/hall/stats")
    assert status == 404 and "no camera named 'hall'" in json.loads(body)["error"]
    assert get(url, "/api/door/healthz")[0] == 200
    families = {family.name: family for family in text_string_to_metric_families(get(url, "/metrics")[1].decode())}
    frames = {sample.labels["camera"]: sample.value for sample in families["streamer_frames_out"].samples}
    assert set(frames) == {"door", "till"} and min(frames.values()) > 0
    up = {sample.labels["camera"]: sample.value for sample in families["streamer_worker_up"].samples}
    assert up == {"door": 1.0, "till": 1.0}
    status, summary = site.stop(signal.SIGTERM)
    assert status == 0 and "site          2 cameras" in summary
    site_summary = json.loads((tmp_path / "site.json").read_text())
    assert all(camera["frames_out"] > 0 for camera in site_summary["cameras"].values())


def test_a_killed_worker_is_restarted_while_the_other_camera_streams_on(site: Served) -> None:
    url = site.url
    till_pid = _worker_pids(site, "till")[-1]
    door = CameraViewer(url, "door")
    try:
        assert door.status == 200 and door.frame()
        os.kill(till_pid, signal.SIGKILL)
        assert wait_for(lambda: get(url, "/api/till/healthz")[0] == 503, 10)
        assert json.loads(get(url, "/api/till/healthz")[1])["source"] == "restarting"
        # The other camera's viewer keeps getting frames while the killed one is down and restarts.
        t0, frames = time.monotonic(), 0
        while not _worker_pids(site, "till")[-1] != till_pid or json.loads(
                get(url, "/api/till/stats")[1]).get("status") != "up":
            assert door.frame(), "the door stream ended while till restarted"
            frames += 1
            assert time.monotonic() - t0 < 120, "till was not restarted: " + "".join(site.log[-20:])
        assert frames > 3
        health = json.loads(get(url, "/healthz")[1])
        assert health["cameras"] == {"door": "up", "till": "up"}
        families = {f.name: f for f in text_string_to_metric_families(get(url, "/metrics")[1].decode())}
        restarts = {s.labels["camera"]: s.value for s in families["streamer_worker_restarts"].samples}
        assert restarts == {"door": 0.0, "till": 1.0}
    finally:
        door.close()


def test_a_stream_goes_on_through_its_own_cameras_restart(site: Served) -> None:
    url = site.url
    pid = _worker_pids(site, "door")[-1]
    viewer = CameraViewer(url, "door")
    try:
        assert viewer.frame()
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: len(_worker_pids(site, "door")) == 2, 30)
        # The same connection: the frames of the new worker arrive once it delivers.
        deadline = time.monotonic() + 120
        while json.loads(get(url, "/api/door/stats")[1]).get("status") != "up":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        seen = set()
        for _ in range(8):
            seen.add(viewer.frame())
        assert len(seen) > 1, "the stream did not resume after the restart"
    finally:
        viewer.close()


def test_the_camera_page_shows_every_camera(browser, site: Served, tmp_path: Path) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(site.url)
        page.wait_for_function("document.querySelector('#camera-door img').naturalWidth > 0", timeout=60_000)
        page.wait_for_function("document.querySelector('#camera-door .state').innerText === 'up'", timeout=30_000)
        page.wait_for_function("document.getElementById('siteup').innerText === '2 / 2'", timeout=30_000)
        assert page.eval_on_selector("#camera-door img", "img => [img.naturalWidth, img.naturalHeight]") == [176, 144]
        assert page.query_selector("#camera-till img") is None  # aggregate: no picture at all
        assert "counts only" in page.inner_text("#camera-till")
        assert page.inner_text("#camera-till .fps") != "-"
        page.click("#camera-door img")  # to the live stream
        page.wait_for_function("document.querySelector('#camera-door img').src.endsWith('/api/door/stream.mjpeg')")
        shot = tmp_path / "web_cameras.png"
        page.screenshot(path=str(shot), full_page=True)
        keep(shot)
    finally:
        page.close()
