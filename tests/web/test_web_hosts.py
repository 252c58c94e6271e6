"""The Host rule (DNS rebinding) and the cross-site rule (form POSTs from another site's page), on
a real server on 127.0.0.1 with a live view fed synthetic frames, read by a raw HTTP client that
sends the headers a browser would; and in a real browser (headless Chromium), whose resolver is
told that evil.example is 127.0.0.1, as a rebinding attacker's DNS would. Rules on plain header
values in the table tests."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest
import test_web_live
from conftest import SHARED_MEDIA
from test_web import multipart
from test_web_browser import CHROMIUM, CHROMIUM_FLAGS

from streamer.config import Config, override
from streamer.errors import ConfigError
from streamer.web.app import Service
from streamer.web.hosts import HostRule, cross_site_refusal, host_name
from streamer.web.server import WebServer

live_server = test_web_live.live_server  # a live view on 127.0.0.1, fed a moving square
ASTRONAUT = SHARED_MEDIA / "skimage_astronaut.png"
TOKEN = "t0ken-for-the-tests-0123456789"


def ask(url: str, method: str, path: str, headers: Dict[str, str], body: Optional[bytes] = None) -> Tuple[int, bytes]:
    """One request with exactly these headers (Host included when given); the first 64 kB of the answer."""
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        if response.getheader("Content-Type", "").startswith("multipart/"):
            return response.status, response.read(64 * 1024)  # a stream: its first frames are enough
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:8080", "127.0.0.1"), ("[::1]:8080", "::1"), ("LocalHost", "localhost"),
    ("camera.lan.:80", "camera.lan"), ("", ""),
])
def test_host_name_of_a_header(header, name) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:8080", True), ("localhost:8080", True), ("[::1]:8080", True), ("127.0.0.2", True),
    ("app.localhost", True), ("camera.lan", True), ("CAMERA.LAN:8080", True),
    ("evil.example", False), ("evil.example:8080", False), ("127.0.0.1.evil.example", False),
    ("192.0.2.10:8080", False), ("", False), (None, False),
])
def test_host_rule(host, allowed) -> None:
    rule = HostRule(["camera.lan"], enforced=True)
    rule.add("0.0.0.0")  # every address names no host
    assert (rule.refusal(host) is None) is allowed
    assert HostRule([], enforced=False).refusal("evil.example") is None


@pytest.mark.parametrize("method, origin, site, host, refused", [
    ("POST", None, None, "127.0.0.1:8080", False),  # curl, a script
    ("POST", "http://127.0.0.1:8080", "same-origin", "127.0.0.1:8080", False),  # the service's page
    ("POST", "http://evil.example", "cross-site", "127.0.0.1:8080", True),
    ("POST", "http://localhost:3000", "same-site", "localhost:8080", True),  # another port: another origin
    ("POST", "null", None, "127.0.0.1:8080", True),  # a sandboxed frame, a file:// page
    ("POST", "http://evil.example", None, "127.0.0.1:8080", True),  # an older browser: Origin only
    ("POST", None, "cross-site", "127.0.0.1:8080", True),
    ("GET", "http://evil.example", "cross-site", "127.0.0.1:8080", False),  # reads: the Host rule's job
])
def test_cross_site_rule(method, origin, site, host, refused) -> None:
    assert (cross_site_refusal(method, origin, site, host) is not None) is refused


@pytest.mark.parametrize("value", [["http://camera.lan"], ["camera.lan:8080"], [""], ["a/b"]])
def test_allowed_hosts_are_bare_names(value) -> None:
    with pytest.raises(ConfigError, match=r"web\.allowed_hosts"):
        override(Config(), {"web.allowed_hosts": value})


@pytest.mark.parametrize("path", ["/api/latest.json", "/api/stream.mjpeg", "/api/latest.jpg", "/api/stats", "/",
                                  "/metrics", "/healthz"])
def test_a_rebound_host_is_refused_everywhere(live_server, path) -> None:
    url, _, _ = live_server
    assert test_web_live.wait_for(lambda: ask(url, "GET", "/api/latest.json", {})[0] == 200)
    status, body = ask(url, "GET", path, {"Host": "evil.example:" + url.rstrip("/").rsplit(":", 1)[1]})
    assert status == 403
    assert "web.allowed_hosts" in json.loads(body)["error"]
    port = url.rstrip("/").rsplit(":", 1)[1]
    for own in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert ask(url, "GET", path, {"Host": own})[0] == 200, own


def test_a_cross_site_post_is_refused_and_the_own_page_s_is_not(live_server) -> None:
    url, _, _ = live_server
    port = url.rstrip("/").rsplit(":", 1)[1]
    content_type, body = multipart("image", "a.png", b"not read")
    base = {"Host": f"127.0.0.1:{port}", "Content-Type": content_type}
    status, answer = ask(url, "POST", "/api/analyze", {**base, "Origin": "http://evil.example",
                                                       "Sec-Fetch-Site": "cross-site"}, body)
    assert status == 403 and "another" in json.loads(answer)["error"]
    # The service's own page gets as far as the upload check (a body that is not an image: 415).
    status, answer = ask(url, "POST", "/api/analyze", {**base, "Origin": f"http://127.0.0.1:{port}",
                                                       "Sec-Fetch-Site": "same-origin"}, body)
    assert status == 415, answer


def test_allowed_hosts_and_a_token() -> None:
    config = override(Config(), {"web.allowed_hosts": ["camera.lan"]})
    with WebServer(Service(config, None, None), "127.0.0.1", 0) as web:
        assert ask(web.url, "GET", "/healthz", {"Host": "camera.lan"})[0] == 200
        assert ask(web.url, "GET", "/healthz", {"Host": "other.lan"})[0] == 403
    # A token without allowed_hosts: any name reaches the token check (the token protects it).
    with WebServer(Service(Config(), TOKEN, None), "127.0.0.1", 0) as web:
        assert ask(web.url, "GET", "/api/stats", {"Host": "192.0.2.10:8080"})[0] == 401
        assert ask(web.url, "GET", "/api/stats", {"Host": "192.0.2.10:8080",
                                                  "Authorization": f"Bearer {TOKEN}"})[0] == 200


# -- a real browser ---------------------------------------------------------------------------------

class _AttackerPage(http.server.BaseHTTPRequestHandler):
    """Another origin's page (another port of 127.0.0.1): a form that posts a photo to the service
    as soon as it loads, as a page the user happened to open would."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        page = (f"<form id=f method=post enctype='multipart/form-data' action='{self.target}api/analyze?format=jpeg'>"
                "<input type=file name=image></form><script>document.getElementById('f').submit()</script>")
        data = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def attacker(live_server) -> Iterator[str]:
    url = live_server[0]
    handler = type("Handler", (_AttackerPage,), {"target": url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.integration
def test_in_a_browser_rebinding_and_a_cross_site_form_are_refused(live_server, attacker, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    url = live_server[0]
    port = url.rstrip("/").rsplit(":", 1)[1]
    with sync_playwright() as playwright:
        # The attacker's DNS, as Chromium's resolver rule: evil.example is 127.0.0.1.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=[*CHROMIUM_FLAGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"])
        try:
            page = browser.new_page()
            answer = page.goto(f"http://evil.example:{port}/api/latest.json")
            assert answer is not None and answer.status == 403
            assert "web.allowed_hosts" in json.loads(page.inner_text("body"))["error"]
            answer = page.goto(f"http://127.0.0.1:{port}/api/latest.json")  # the real name still works
            assert answer is not None and answer.status == 200
            # A page of another origin posts a form to the service as it loads: refused.
            with page.expect_response(lambda r: "/api/analyze" in r.url) as posted:
                page.goto(attacker)
            assert posted.value.status == 403
            assert "another" in json.loads(posted.value.text())["error"]
        finally:
            browser.close()
