"""Where the config and the models are read from: the package's data, a source checkout, the
per-user cache, and the config file a run reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

MODELS_DIR_ENV = "STREAMER_MODELS_DIR"

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Package data: the model manifest, the label calibration and the documented default config.
DATA_DIR = PACKAGE_DIR / "data"
PACKAGED_CONFIG = DATA_DIR / "config.yaml"
# With no --config, a config.yaml in the working directory is read if there is one.
LOCAL_CONFIG = Path("config.yaml")
# Where the package sits; a source checkout when checkout_root() says so.
REPO_ROOT = PACKAGE_DIR.parent


def checkout_root() -> Optional[Path]:
    """The source checkout this package runs from (``pip install -e .``, ``python run.py``), or None
    when it is installed (a wheel in site-packages has no pyproject.toml and no models/ beside it)."""
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "models").is_dir():
        return REPO_ROOT
    return None


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/streamer``, else ``~/.cache/streamer`` (the XDG base directory rules: a
    relative XDG_CACHE_HOME is ignored)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "streamer"


def default_models_dir() -> Path:
    """The checkout's ``models/`` when run from a checkout, else the per-user cache's ``models``."""
    root = checkout_root()
    return root / "models" if root is not None else user_cache_dir() / "models"


def config_path(explicit: Optional[Path] = None) -> Optional[Path]:
    """The config file a run reads: ``explicit`` (--config), else ``./config.yaml`` if present, else
    the packaged defaults (None if the installation lacks them: the built-in defaults, the same values)."""
    if explicit is not None:
        return Path(explicit)
    if LOCAL_CONFIG.is_file():
        return LOCAL_CONFIG
    return PACKAGED_CONFIG if PACKAGED_CONFIG.is_file() else None
