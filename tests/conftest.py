"""Shared fixtures: where ../shared is, and synthetic frames."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("STREAMER_SHARED", REPO.parent / "shared")).resolve()
SHARED_MODELS = SHARED / "models"
SHARED_MEDIA = SHARED / "media"

# Tests live in folders named after the package's; a few share a helper of another folder's module
# (test_rtsp's RTSP camera, test_outputs' CLI runner). Every folder is importable, so a test file
# runs alone as well as in the whole suite.
for _folder in sorted(Path(__file__).resolve().parent.iterdir()):
    if _folder.is_dir() and not _folder.name.startswith((".", "_")) and str(_folder) not in sys.path:
        sys.path.append(str(_folder))

# A suite started in the background by a shell without job control (`pytest ... &` in a script)
# inherits SIGINT ignored, and so would every run it starts: the Ctrl-C tests would wait out their
# timeouts. Python's own handler here; children then start with the default (exec resets it).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set STREAMER_SHARED to its path")
    return SHARED


@pytest.fixture
def blank_frame() -> np.ndarray:
    """A 480x640 mid-grey BGR frame."""
    return np.full((480, 640, 3), 128, np.uint8)


# ../shared keeps face-api's npm files under a folder named for their source, not the manifest's
# model id: the tests' models folder links them under the id, so the default classifier loads
# them from ../shared (and caches its conversion there) instead of fetching them from npm.
SHARED_AS_MODEL_IDS = {"faceapi_agegender": ("faceapi_agegender_npm", ("age_gender_model-weights_manifest.json",
                                                                       "age_gender_model.bin"))}
LINKED_MODELS = REPO / "out" / "test-models"


def linked_models() -> Path:
    """``out/test-models``: links to the ../shared models whose folder is not named by model id."""
    for model_id, (folder, names) in SHARED_AS_MODEL_IDS.items():
        for name in names:
            link, target = LINKED_MODELS / model_id / name, SHARED_MODELS / folder / name
            if target.is_file() and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.unlink(missing_ok=True)  # a dangling link from an older ../shared
                link.symlink_to(target)
    return LINKED_MODELS


def models_dirs() -> str:
    """Test models from ../shared first (and links to them by model id), then the repo's models/
    (where the PyPI ones are fetched)."""
    return os.pathsep.join([str(SHARED_MODELS), str(linked_models()), str(REPO / "models")])


@pytest.fixture
def models_env(monkeypatch) -> dict:
    """Environment for in-process and subprocess runs that find models in ../shared and models/."""
    monkeypatch.setenv("STREAMER_MODELS_DIR", models_dirs())
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return env


@pytest.fixture(scope="module")
def test_models_analyzer():
    """One analyzer of the default config on the test models, for a module's in-process runs (the
    models load once); STREAMER_MODELS_DIR is restored after the module."""
    from streamer.config import Config
    from streamer.pipeline import build_analyzer

    previous = os.environ.get("STREAMER_MODELS_DIR")
    os.environ["STREAMER_MODELS_DIR"] = models_dirs()
    try:
        yield build_analyzer(Config())
    finally:
        if previous is None:
            os.environ.pop("STREAMER_MODELS_DIR", None)
        else:
            os.environ["STREAMER_MODELS_DIR"] = previous
