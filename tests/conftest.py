"""Shared fixtures: where ../shared is, and synthetic frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("STREAMER_SHARED", REPO.parent / "shared")).resolve()
SHARED_MODELS = SHARED / "models"
SHARED_MEDIA = SHARED / "media"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set STREAMER_SHARED to its path")
    return SHARED


@pytest.fixture
def blank_frame() -> np.ndarray:
    """A 480x640 mid-grey BGR frame."""
    return np.full((480, 640, 3), 128, np.uint8)
