"""Fetching from an npm package tarball: a real HTTP server on 127.0.0.1 stands in for the registry
and serves tarballs built here (good, another file, without a member, cut short); the manifest
entry of face-api's AgeGenderNet is fetched with its real member paths and checksums."""

from __future__ import annotations

import base64
import copy
import hashlib
import http.server
import io
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from conftest import SHARED_MODELS
from test_models import serve_handler

from streamer.models.fetch import NPM_REGISTRY, describe
from streamer.models.store import FAILED, FETCHED, OK, PRESENT, ModelStore, load_manifest

MODEL_ID = "faceapi_agegender"
SHARED_FACEAPI = SHARED_MODELS / "faceapi_agegender_npm"
TARBALL_URL = f"{NPM_REGISTRY}/@vladmandic/face-api/-/face-api-1.7.15.tgz"
TARBALL_PATH = TARBALL_URL[len(NPM_REGISTRY):]


def tarball(members: Dict[str, bytes]) -> bytes:
    """A gzipped tar as npm packs one: every file under ``package/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """What the test registry serves: ``path -> (body, declared Content-Length)``; it records each
    path asked for."""

    def __init__(self) -> None:
        self.files: Dict[str, Tuple[bytes, int]] = {}
        self.requests: List[str] = []

    def put(self, path: str, body: bytes, declared: Optional[int] = None) -> None:
        self.files[path] = (body, len(body) if declared is None else declared)


@contextmanager
def serve(registry: Registry) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1; yields its base URL, stops and joins on exit."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            registry.requests.append(self.path)
            if self.path not in registry.files:
                self.send_error(404)
                return
            body, declared = registry.files[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(declared))
            self.end_headers()
            self.wfile.write(body)  # a declared length beyond the body: the connection closes early

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base-class signature)
            pass

    with serve_handler(Handler) as url:
        yield url


# ---- a synthetic model: every way a tarball can go wrong ---------------------------------------------


GOOD_MEMBERS = {"package/LICENSE": b"MIT\n", "package/model/a.bin": b"\x01\x02" * 500, "package/model/a.json": b"[]"}


def synthetic_manifest(served: bytes, pin_tarball: bool = True, pin_integrity: bool = True) -> dict:
    """One model with two files from one npm tarball, the tarball pinned to ``served``'s checksums."""
    source = {"kind": "npm", "package": "@vladmandic/face-api", "version": "1.7.15", "tarball": TARBALL_URL}
    if pin_tarball:
        source["tarball_sha256"] = hashlib.sha256(served).hexdigest()
    if pin_integrity:
        source["integrity"] = integrity(served)
    files = [
        {"name": name.rsplit("/", 1)[1], "sha256": hashlib.sha256(GOOD_MEMBERS[name]).hexdigest(),
         "sources": [{**source, "member": name}]}
        for name in ("package/model/a.json", "package/model/a.bin")
    ]
    return {"models": {"npm_model": {"task": "test", "provided_by": "fetch", "files": files}}}


GOOD = tarball(GOOD_MEMBERS)
OTHER = tarball({**GOOD_MEMBERS, "package/model/a.bin": b"\x03" * 1000})
NO_BIN = tarball({k: v for k, v in GOOD_MEMBERS.items() if not k.endswith(".bin")})

# (case, served bytes, declared length, manifest, expected status per file, words in the failure)
CASES = [
    ("good", GOOD, None, synthetic_manifest(GOOD), [FETCHED, FETCHED], ""),
    ("another tarball than pinned", OTHER, None, synthetic_manifest(GOOD), [FAILED, FAILED], "sha256 mismatch"),
    ("integrity alone catches it", OTHER, None, synthetic_manifest(GOOD, pin_tarball=False), [FAILED, FAILED],
     "integrity mismatch"),
    ("member missing", NO_BIN, None, synthetic_manifest(NO_BIN), [FETCHED, FAILED], "has no member package/model/a.bin"),
    ("member differs from the file's pin", OTHER, None, synthetic_manifest(OTHER), [FETCHED, FAILED],
     "a.bin from npm @vladmandic/face-api@1.7.15:package/model/a.bin: sha256 mismatch"),
    ("cut short", GOOD[: len(GOOD) // 2], len(GOOD), synthetic_manifest(GOOD), [FAILED, FAILED], "was cut short"),
    ("cut short, nothing pinned", GOOD[: len(GOOD) // 2], None, synthetic_manifest(GOOD, False, False),
     [FAILED, FAILED], "tarball cannot be read"),
    ("not on the registry", None, None, synthetic_manifest(GOOD), [FAILED, FAILED], "HTTP Error 404"),
]


@pytest.mark.parametrize("served, declared, manifest, statuses, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_npm_tarball_fetch(tmp_path: Path, served, declared, manifest, statuses, words) -> None:
    registry = Registry()
    if served is not None:
        registry.put(TARBALL_PATH, served, declared)
    with serve(registry) as base:
        store = ModelStore([tmp_path], manifest=manifest, npm_registry=base, url_timeout_s=10)
        reports = store.fetch(["npm_model"])
    assert [r.status for r in reports] == statuses, [r.detail for r in reports]
    assert registry.requests == [TARBALL_PATH], "two files of one tarball: one download"
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert written == sorted(r.filename for r in reports if r.status == FETCHED), "a failed file leaves nothing"
    for report in reports:
        if report.status == FETCHED:
            assert report.path is not None and report.path.read_bytes() == GOOD_MEMBERS[f"package/model/{report.filename}"]
            assert oct(report.path.stat().st_mode & 0o777) == "0o644"
            assert report.detail == "from npm @vladmandic/face-api@1.7.15"
        else:
            assert words in report.detail and "@vladmandic/face-api@1.7.15" in report.detail


# ---- the real manifest entry ----------------------------------------------------------------------------


def test_manifest_pins_the_registry_tarball() -> None:
    """The entry names npm's own tarball of 1.7.15 (its sha1 shasum from `npm view ... dist` is
    10cddf5c405f6f52f37605c9ee28c91ac6a23ead) and the two members face-api's loader reads."""
    entry = load_manifest()["models"][MODEL_ID]
    assert entry["licence"]["spdx"] == "MIT" and "IMDB-WIKI" in entry["licence"]["note"]
    members = []
    for spec in entry["files"]:
        [source] = spec["sources"]
        assert source["kind"] == "npm" and source["tarball"] == TARBALL_URL
        assert len(source["tarball_sha256"]) == 64 and source["integrity"].startswith("sha512-")
        assert describe(source) == "from npm @vladmandic/face-api@1.7.15"
        members.append(source["member"])
    assert members == ["package/model/age_gender_model-weights_manifest.json", "package/model/age_gender_model.bin"]


@pytest.mark.integration
def test_faceapi_entry_fetches_from_a_registry_tarball(tmp_path: Path) -> None:
    """The published files (../shared) packed as npm packs them: the entry's member paths and file
    checksums are the real ones (only the tarball's own checksums are this tarball's)."""
    members = {
        "package/LICENSE": (SHARED_FACEAPI / "LICENSE").read_bytes(),
        "package/model/age_gender_model.bin": (SHARED_FACEAPI / "age_gender_model.bin").read_bytes(),
        "package/model/age_gender_model-weights_manifest.json":
            (SHARED_FACEAPI / "age_gender_model-weights_manifest.json").read_bytes(),
        "package/model/face_expression_model.bin": (SHARED_FACEAPI / "face_expression_model.bin").read_bytes(),
    }
    served = tarball(members)
    manifest = copy.deepcopy(load_manifest())
    for spec in manifest["models"][MODEL_ID]["files"]:
        spec["sources"][0].update(tarball_sha256=hashlib.sha256(served).hexdigest(), integrity=integrity(served))
    registry = Registry()
    registry.put(TARBALL_PATH, served)
    with serve(registry) as base:
        store = ModelStore([tmp_path], manifest=manifest, npm_registry=base, url_timeout_s=10)
        manifest_path = store.path(MODEL_ID, "age_gender_model-weights_manifest.json")
        again = store.fetch([MODEL_ID])
    assert manifest_path == tmp_path / MODEL_ID / "age_gender_model-weights_manifest.json"
    # Dot files are the store's own records (its checked-at-load stamp), not package members.
    assert sorted(p.name for p in (tmp_path / MODEL_ID).iterdir() if not p.name.startswith(".")) == [
        "age_gender_model-weights_manifest.json", "age_gender_model.bin",
    ], "only the needed members are kept"
    assert {r.status for r in again} == {PRESENT}
    assert {r.status for r in store.verify([MODEL_ID])} == {OK}
    assert registry.requests == [TARBALL_PATH]
