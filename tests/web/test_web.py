"""The web service's photo side, on a real server on 127.0.0.1 (a free port) driven by a real HTTP
client: the JSON and JPEG answers equal what the CLI writes for the same photo, every limit
answers with its JSON error, parallel uploads, tokens. Header parsing on hand-made bytes."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import subprocess
import sys
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED_MEDIA

from streamer.app import RunOptions, run
from streamer.config import Config, override
from streamer.sources.image_header import sniff
from streamer.web.app import COOKIE_NAME, Service
from streamer.web.photo import UploadError, check_and_decode, image_size
from streamer.web.server import WebError, WebServer, resolve_token

GROUP = SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"
ASTRONAUT = SHARED_MEDIA / "skimage_astronaut.png"
TOKEN = "t0ken-for-the-tests-0123456789"


def png_bytes(width: int, height: int, declared: Optional[Tuple[int, int]] = None) -> bytes:
    """A real PNG (black, RGB); ``declared`` rewrites the size in its IHDR (a lying header)."""
    ok, data = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    data = bytearray(data.tobytes())
    if declared is not None:
        data[16:24] = struct.pack(">II", *declared)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def multipart(field: str, filename: str, data: bytes, content_type: str = "image/jpeg") -> Tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


class Client:
    """http.client against the test server; each call returns (status, headers, body)."""

    def __init__(self, url: str) -> None:
        self.host, self.port = url.split("//")[1].rstrip("/").rsplit(":", 1)

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None) -> Tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=300)  # a busy 2-core machine
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def upload(self, path: Path, query: str = "", headers: Optional[Dict[str, str]] = None, field: str = "image"):
        content_type, body = multipart(field, path.name, path.read_bytes())
        return self.request("POST", "/api/analyze" + query, body, {"Content-Type": content_type, **(headers or {})})


def start_server(config: Config, token: Optional[str] = None) -> WebServer:
    return WebServer(Service(config, token, None), "127.0.0.1", 0).start()


@pytest.fixture(scope="module")
def server(models_dirs_env) -> Iterator[Client]:
    with start_server(Config()) as web:
        yield Client(web.url)


@pytest.fixture(scope="module")
def models_dirs_env() -> Iterator[None]:
    from conftest import models_dirs

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAMER_MODELS_DIR", models_dirs())
        yield


@pytest.fixture(scope="module")
def cli_group(models_dirs_env, tmp_path_factory) -> Tuple[list, bytes]:
    """What `run.py --source GROUP` writes: the faces of its events line, the annotated file's bytes."""
    out = tmp_path_factory.mktemp("cli")
    run(Config(), RunOptions(source=str(GROUP), output=out / "group.jpg", events=out / "events.jsonl",
                             window=False, progress=False))
    event = json.loads((out / "events.jsonl").read_text().splitlines()[0])
    return event["faces"], (out / "group.jpg").read_bytes()


# -- headers and decoding, on hand-made bytes ----------------------------------------------------

@pytest.mark.parametrize(
    "data, kind, size",
    [
        (png_bytes(7, 5), "PNG", (7, 5)),
        (cv2.imencode(".jpg", np.zeros((5, 7, 3), np.uint8))[1].tobytes(), "JPEG", (7, 5)),
        (cv2.imencode(".bmp", np.zeros((5, 7, 3), np.uint8))[1].tobytes(), "BMP", (7, 5)),
        (cv2.imencode(".webp", np.zeros((5, 7, 3), np.uint8))[1].tobytes(), "WebP", (7, 5)),
        (cv2.imencode(".jpg", np.zeros((50, 70, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
         "JPEG", (70, 50)),
    ],
)
def test_formats_and_sizes_come_from_the_header(data: bytes, kind: str, size: Tuple[int, int]) -> None:
    assert sniff(data) == kind
    assert image_size(data, kind) == size
    assert check_and_decode(data, 10_000).shape == (size[1], size[0], 3)


@pytest.mark.parametrize(
    "data, status, words",
    [
        (b"", 400, "empty"),
        (b"hello, this is text\n" * 10, 415, "not an image"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, 415, "HEIF"),
        (png_bytes(8, 8, declared=(20_000, 20_000)), 413, "20000x20000"),  # refused before decoding
        (png_bytes(8, 8)[:40], 400, "cannot decode"),
        (cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()[:-300], 400, "truncated"),
        (b"\xff\xd8\xff\xe0\x00", 400, "truncated"),
    ],
)
def test_bad_uploads_are_named(data: bytes, status: int, words: str) -> None:
    with pytest.raises(UploadError) as caught:
        check_and_decode(data, 1_000_000)
    assert caught.value.status == status and words in str(caught.value)


# -- the real server ------------------------------------------------------------------------------

@pytest.mark.integration
def test_group_photo_json_and_jpeg_equal_the_cli(server: Client, cli_group) -> None:
    cli_faces, cli_jpeg = cli_group
    status, headers, body = server.upload(GROUP)
    assert status == 200 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert len(answer["faces"]) >= 4
    # The events file's face objects, each with the overlay's label lines (the page shows those).
    assert [{key: value for key, value in face.items() if key != "label"} for face in answer["faces"]] == cli_faces
    assert all(face["label"] and all(isinstance(line, str) for line in face["label"]) for face in answer["faces"])
    image = cv2.imread(str(GROUP))
    assert answer["size_wh"] == [image.shape[1], image.shape[0]]
    assert {"decode", "detect", "classify", "draw"} <= set(answer["timing_ms"])
    for query, headers in (("?format=jpeg", {}), ("", {"Accept": "image/jpeg"})):
        status, got_headers, jpeg = server.upload(GROUP, query, headers)
        assert status == 200 and got_headers["Content-Type"] == "image/jpeg"
        assert jpeg == cli_jpeg  # the same pixels, drawn and encoded as the CLI does


@pytest.mark.integration
def test_raw_png_body_and_the_page_form(server: Client) -> None:
    status, _, body = server.request("POST", "/api/analyze", ASTRONAUT.read_bytes(), {"Content-Type": "image/png"})
    answer = json.loads(body)
    assert status == 200 and answer["size_wh"] == [512, 512]
    assert len(answer["faces"]) == 1 and answer["faces"][0]["classified"]
    # the page asks for the annotated image in the same answer
    status, _, body = server.upload(ASTRONAUT, "?image=1")
    image = cv2.imdecode(np.frombuffer(__import__("base64").b64decode(json.loads(body)["image_jpeg_base64"]),
                                       np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and image.shape == (512, 512, 3)
    status, headers, page = server.request("GET", "/")
    assert status == 200 and b"drop" in page and b"http" not in page.split(b"<body>")[1].replace(b"http-equiv", b"")


@pytest.mark.integration
@pytest.mark.parametrize(
    "name, content_type, data, status, words",
    [
        ("empty.jpg", "image/jpeg", b"", 400, "empty"),
        ("notes.jpg", "image/jpeg", b"just some text, named like a photo\n" * 20, 415, "not an image"),
        ("cut.jpg", "image/jpeg", GROUP.read_bytes()[:40_000], 400, "truncated"),
        ("broken.png", "image/png", png_bytes(64, 64)[:60], 400, "cannot decode"),
        ("bomb.png", "image/png", png_bytes(8, 8, declared=(9000, 9000)), 413, "9000x9000"),
    ],
)
def test_bad_uploads_get_json_errors(server: Client, name, content_type, data, status, words) -> None:
    ctype, body = multipart("image", name, data, content_type)
    got, headers, answer = server.request("POST", "/api/analyze", body, {"Content-Type": ctype})
    assert got == status and headers["Content-Type"] == "application/json"
    assert words in json.loads(answer)["error"]


@pytest.mark.integration
@pytest.mark.parametrize(
    "headers, body, status, words",
    [
        ({"Content-Type": "text/plain"}, b"hello", 415, "text/plain"),
        ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"--xyz\r\nContent-Disposition: form-data; "
         b"name=\"other\"\r\n\r\nvalue\r\n--xyz--\r\n", 400, "'image'"),
        ({"Content-Type": "multipart/form-data"}, b"x", 400, "boundary"),
    ],
)
def test_bad_requests_get_json_errors(server: Client, headers, body, status, words) -> None:
    got, _, answer = server.request("POST", "/api/analyze", body, headers)
    assert got == status and words in json.loads(answer)["error"]


@pytest.mark.integration
def test_oversized_uploads_get_413_from_their_content_length(server: Client) -> None:
    big = b"\xff\xd8\xff" + bytes(11 * 1024 * 1024)
    status, _, answer = server.request("POST", "/api/analyze", big, {"Content-Type": "image/jpeg"})
    assert status == 413 and "web.max_upload_mb" in json.loads(answer)["error"]
    # With Expect: 100-continue the answer comes before the body is sent at all.
    conn = http.client.HTTPConnection(server.host, int(server.port), timeout=10)
    conn.putrequest("POST", "/api/analyze")
    for name, value in (("Content-Type", "image/jpeg"), ("Content-Length", str(len(big))),
                        ("Expect", "100-continue")):
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and b"max_upload_mb" in response.read()
    conn.close()
    # Answered without the body: 20 MB declared, 1 kB sent, and the JSON 413 comes back while the
    # client sends nothing more (a server that read the body first would never answer).
    with socket.create_connection((server.host, int(server.port)), timeout=60) as sock:
        sock.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 20000000\r\n\r\n" + b"\xff\xd8\xff" + bytes(1021))
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413 and response.getheader("Content-Type") == "application/json"
        assert "20.0 MB" in json.loads(response.read())["error"]
    # A photo above the pixel limit (the group photo is 0.75 MP).
    with start_server(override(Config(), {"web.max_image_mp": 0.5})) as small:
        status, _, answer = Client(small.url).upload(GROUP)
    assert status == 413 and "web.max_image_mp" in json.loads(answer)["error"]


@pytest.mark.integration
def test_twenty_parallel_uploads_are_all_answered_alike(server: Client) -> None:
    _, _, first = server.upload(GROUP)
    expected = json.loads(first)["faces"]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: server.upload(GROUP), range(20)))
    assert [status for status, _, _ in answers] == [200] * 20
    assert all(json.loads(body)["faces"] == expected for _, _, body in answers)


@pytest.mark.integration
def test_a_token_guards_everything_but_health(models_dirs_env) -> None:
    with start_server(Config(), TOKEN) as web:
        client = Client(web.url)
        status, headers, body = client.upload(ASTRONAUT)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in json.loads(body)["error"]
        assert client.upload(ASTRONAUT, headers={"Authorization": "Bearer wrong-token-wrong-token"})[0] == 401
        assert client.upload(ASTRONAUT, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert client.request("GET", "/metrics")[0] == 401
        assert client.request("GET", "/healthz")[0] == 200
        status, _, page = client.request("GET", "/")
        assert status == 401 and b'name=token' in page  # the login form
        status, _, _ = client.request("POST", "/login", b"token=nope", {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 401
        status, headers, _ = client.request("POST", "/login", f"token={TOKEN}".encode(),
                                            {"Content-Type": "application/x-www-form-urlencoded"})
        cookie = headers["Set-Cookie"].split(";")[0]
        assert status == 303 and cookie.startswith(COOKIE_NAME + "=") and TOKEN not in cookie
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        status, _, page = client.request("GET", "/", headers={"Cookie": cookie})
        assert status == 200 and b"id=drop" in page


def test_a_network_address_needs_a_token(monkeypatch) -> None:
    monkeypatch.delenv("STREAMER_TOKEN", raising=False)
    assert resolve_token(Config(), "127.0.0.1") is None
    assert resolve_token(Config(), "::1") is None
    with pytest.raises(WebError, match="refusing to listen on 0.0.0.0 without a token"):
        resolve_token(Config(), "0.0.0.0")
    monkeypatch.setenv("STREAMER_TOKEN", "short")
    with pytest.raises(WebError, match="at least 16"):
        resolve_token(Config(), "0.0.0.0")
    monkeypatch.setenv("STREAMER_TOKEN", TOKEN)
    assert resolve_token(Config(), "0.0.0.0") == TOKEN


def test_serve_on_every_address_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), "serve", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in proc.stderr and "Traceback" not in proc.stderr


def test_without_the_web_extra_serve_says_how_to_install_it_and_the_rest_works(tmp_path: Path) -> None:
    """Flask and cheroot hidden from the child (``sys.modules[name] = None`` makes their import
    fail): `serve` exits 2 with the install line; a photo run and doctor import neither."""
    from conftest import models_dirs

    hide = "import sys; sys.modules.update(flask=None, cheroot=None, werkzeug=None); "
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STREAMER_MODELS_DIR": models_dirs(),
           "PYTHONPATH": str(REPO)}  # this checkout's package, whatever the venv's editable install points to

    def streamer(*args: str) -> subprocess.CompletedProcess:
        code = hide + f"from streamer.cli import main; sys.exit(main({list(args)!r}))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                              cwd=tmp_path)

    serve = streamer("serve", "--port", "0")
    assert serve.returncode == 2 and "Traceback" not in serve.stderr
    assert "flask is not installed: pip install 'streamer[web]'" in serve.stderr
    photo = streamer("--source", str(ASTRONAUT), "--no-window", "--output", "a.png")
    assert photo.returncode == 0, photo.stderr
    assert (tmp_path / "a.png").is_file()
    doctor = streamer("doctor")
    assert "flask, cheroot not installed" in doctor.stdout and "pip install 'streamer[web]'" in doctor.stdout
