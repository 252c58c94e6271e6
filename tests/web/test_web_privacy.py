"""`serve` keeps the privacy options for uploaded photos, on the real command (a child process on a
free port) and a real HTTP client: with --anonymize every picture it returns has its faces hidden,
with --privacy aggregate it returns no picture at all (JSON only, a 403 naming the mode for a
picture)."""

from __future__ import annotations

import base64
import json
from typing import Dict, Iterator, Tuple

import cv2
import numpy as np
import pytest
from conftest import SHARED_MEDIA
from test_privacy_e2e import MAX_DETAIL_LEFT, _detail
from test_web import Client
from test_web_live import Served

pytestmark = pytest.mark.integration

GROUP = SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"
# The answer's overlay draws each face's box on top of its mask: detail is measured inside it.
INSET = 0.15


def _inside(xyxy):
    x1, y1, x2, y2 = xyxy
    dx, dy = INSET * (x2 - x1), INSET * (y2 - y1)
    return [x1 + dx, y1 + dy, x2 - dx, y2 - dy]


@pytest.fixture(scope="module")
def served_env(tmp_path_factory) -> Dict[str, str]:
    import os

    from conftest import models_dirs

    env = dict(os.environ, STREAMER_MODELS_DIR=models_dirs())
    env.pop("DISPLAY", None)
    return env


def _serve(args, env, cwd) -> Iterator[Tuple[Served, Client]]:
    served = Served(args, env, cwd)
    try:
        yield served, Client(served.url)
    finally:
        served.stop()


@pytest.fixture(scope="module")
def blurring(served_env, tmp_path_factory) -> Iterator[Tuple[Served, Client]]:
    yield from _serve(["--anonymize", "blur"], served_env, tmp_path_factory.mktemp("blur"))


@pytest.fixture(scope="module")
def aggregate(served_env, tmp_path_factory) -> Iterator[Tuple[Served, Client]]:
    yield from _serve(["--privacy", "aggregate"], served_env, tmp_path_factory.mktemp("aggregate"))


def _decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.mark.parametrize("query", ["?format=jpeg", "?image=1"])
def test_serve_anonymize_hides_every_face_of_an_uploaded_photo(blurring, query) -> None:
    _, client = blurring
    status, headers, body = client.upload(GROUP, query)
    assert status == 200, body[:300]
    if query == "?format=jpeg":
        assert headers["Content-Type"] == "image/jpeg"
        picture = _decode(body)
        _, _, answer = client.upload(GROUP)
        faces = json.loads(answer)["faces"]
    else:
        answer = json.loads(body)
        picture, faces = _decode(base64.b64decode(answer["image_jpeg_base64"])), answer["faces"]
    original = cv2.imread(str(GROUP))
    assert picture.shape == original.shape and len(faces) >= 4
    for face in faces:
        inner = _inside(face["xyxy"])
        left = _detail(picture, inner) / _detail(original, inner)
        assert left < MAX_DETAIL_LEFT, f"face {face['xyxy']} keeps {left:.2f} of its detail"


def test_the_page_says_faces_are_hidden(blurring) -> None:
    _, client = blurring
    status, _, page = client.request("GET", "/")
    assert status == 200 and b"Faces are hidden (blur)" in page


@pytest.mark.parametrize("query, headers", [
    ("?format=jpeg", {}),
    ("?image=1", {}),
    ("", {"Accept": "image/jpeg"}),
])
def test_serve_aggregate_refuses_every_picture_of_an_upload(aggregate, query, headers) -> None:
    _, client = aggregate
    status, answer_headers, body = client.upload(GROUP, query, headers)
    assert status == 403 and answer_headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert "--privacy aggregate" in error and "JSON" in error


def test_serve_aggregate_answers_an_upload_with_its_faces_only(aggregate) -> None:
    _, client = aggregate
    status, headers, body = client.upload(GROUP)
    assert status == 200 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert len(answer["faces"]) >= 4 and set(answer) == {"faces", "size_wh", "timing_ms"}
    status, _, page = client.request("GET", "/")
    assert b"never a picture" in page and b"format=jpeg" not in page
