"""``streamer doctor``: what this installation can do and what is missing, checked without running
a source: Python and OpenCV (version, video I/O and dnn backends of its build), onnxruntime, a
display, cameras, where the config and the models are read from, the models the config needs, and
paho-mqtt with, when mqtt.enabled, one login to the broker (nothing published), and the web
extra that ``serve`` needs.

``diagnose()`` returns the checks as data; the command line formats them. Nothing is downloaded
and no camera is opened (a camera in use elsewhere would stall or fail the check).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from . import __version__
from .config import LOCAL_CONFIG, MODELS_DIR_ENV, PACKAGED_CONFIG, Config, checkout_root, config_path, load_config
from .errors import ConfigError

OK, WARN, FAIL = "ok", "warn", "FAIL"  # FAIL: something the configured run needs is missing
_FIX_FETCH = "streamer models fetch"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, ``ok``/``warn``/``FAIL``, what was found, and the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""


def video_io(build_info: str) -> Dict[str, bool]:
    """``{"FFMPEG": True, "GStreamer": False, "v4l/v4l2": True, ...}`` from the "Video I/O:" section of
    ``cv2.getBuildInformation()`` (top-level entries only)."""
    section = re.search(r"^\s*Video I/O:\s*\n((?:[ \t]+.*\n?)*)", build_info, re.MULTILINE)
    found: Dict[str, bool] = {}
    if section is None:
        return found
    lines = section.group(1).splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    for line in lines:
        if not line.strip() or len(line) - len(line.lstrip()) != indent:
            continue
        match = re.match(r"\s*([^:]+):\s*(\S+)", line)
        if match:
            found[match.group(1).strip()] = match.group(2).upper() == "YES"
    return found


def _dnn_backends(cv2: object) -> List[str]:
    dnn = getattr(cv2, "dnn")
    names = []
    for name in ("OPENCV", "CUDA", "INFERENCE_ENGINE", "VKCOM", "CANN", "TIMVX", "WEBNN"):
        backend = getattr(dnn, f"DNN_BACKEND_{name}", None)
        if backend is None:
            continue
        try:
            targets = dnn.getAvailableTargets(backend)
        except Exception:  # noqa: BLE001 (a backend the build lacks may raise anything from C++)
            continue
        if len(targets):
            names.append(name.lower())
    return names


def _opencv_checks() -> List[Check]:
    import cv2

    info = cv2.getBuildInformation()
    io = video_io(info)
    wheels = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
    dist = next((name for name in wheels if _installed_version(name)), "not a PyPI wheel")
    from .dnn import has_caffe_importer

    yes = [name for name, present in io.items() if present]
    checks = [
        Check("opencv", OK,
              f"{cv2.__version__} ({dist}); Caffe importer {'yes' if has_caffe_importer() else 'no (OpenCV 5)'}"),
        Check(
            "video I/O",
            OK if io.get("FFMPEG") else WARN,
            "with " + (", ".join(yes) if yes else "nothing"),
            "" if io.get("FFMPEG") else "without FFmpeg, video files and RTSP/HTTP cameras cannot be read: "
            "install the PyPI wheel (pip install 'opencv-python>=4.8,<6')",
        ),
    ]
    if not io.get("GStreamer"):
        checks.append(Check(
            "gstreamer", WARN, "not in this OpenCV build: GStreamer pipelines (Pi/Jetson CSI cameras) cannot be opened",
            "only for CSI cameras: use Debian's python3-opencv or JetPack's OpenCV (README, Raspberry Pi and Jetson)",
        ))
    else:
        checks.append(Check("gstreamer", OK, "in this OpenCV build (CSI camera pipelines)"))
    checks.append(Check("dnn backends", OK, ", ".join(_dnn_backends(cv2)) or "none listed"))
    return checks


def _installed_version(distribution: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _onnxruntime_check(config: Optional[Config]) -> Check:
    wanted = config is not None and config.dnn.engine == "onnxruntime"
    if importlib.util.find_spec("onnxruntime") is None:
        return Check(
            "onnxruntime", WARN if wanted else OK,
            "not installed" + ("; dnn.engine: onnxruntime falls back to OpenCV" if wanted else " (optional)"),
            "pip install 'streamer[onnxruntime]' (~1.45x faster classifiers)" if wanted else "",
        )
    version = _installed_version("onnxruntime") or "?"
    use = "dnn.engine: onnxruntime" if wanted else "installed, unused: dnn.engine: opencv"
    return Check("onnxruntime", OK, f"{version} ({use})")


def _web_check() -> Check:
    """The web extra (Flask, cheroot) that ``serve`` needs; optional, so never a FAIL."""
    from .web.command import EXTRA_MODULES, INSTALL_HINT

    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return Check("web", OK, f"{', '.join(missing)} not installed (optional: only `serve` needs it)",
                     f"for `serve`: {INSTALL_HINT}")
    versions = ", ".join(f"{name} {_installed_version(name) or '?'}" for name in ("Flask", "cheroot"))
    return Check("web", OK, f"{versions} (`serve`)")


def _report_check() -> Check:
    """matplotlib, which draws the people report's charts; optional (the report is written without
    its charts when it is missing), so never a FAIL."""
    if importlib.util.find_spec("matplotlib") is None:
        return Check("report", OK, "matplotlib not installed (optional: the people report is written without "
                     "its charts)", "for the report's charts: pip install 'streamer[report]'")
    return Check("report", OK, f"matplotlib {_installed_version('matplotlib') or '?'} (the people report's charts)")


def _mqtt_check(config: Config) -> Check:
    """paho-mqtt, and with mqtt.enabled one login to the broker (nothing published)."""
    cfg = config.mqtt
    if importlib.util.find_spec("paho") is None:
        if cfg.enabled:
            return Check("mqtt", FAIL, "mqtt.enabled but paho-mqtt is not installed", "pip install 'streamer[mqtt]'")
        return Check("mqtt", OK, "paho-mqtt not installed (optional: mqtt.enabled is false)")
    version = _installed_version("paho-mqtt") or "?"
    if not cfg.enabled:
        return Check("mqtt", OK, f"paho-mqtt {version} (mqtt.enabled is false; --mqtt HOST turns it on)")
    from .errors import StreamerError
    from .outputs.mqtt_session import probe

    try:
        reached, cause = probe(cfg)
    except StreamerError as error:
        reached, cause = False, str(error)
    if reached:
        return Check("mqtt", OK, f"paho-mqtt {version}; broker {cfg.host}:{cfg.port} accepts the login")
    status = FAIL if cfg.required else WARN
    return Check("mqtt", status, f"broker {cfg.host}:{cfg.port}: {cause}",
                 "start the broker or fix the mqtt section" + ("" if cfg.required else
                                                              " (runs go on and publish once it is reachable)"))


def _display_check() -> Check:
    from .outputs.sinks import display_available

    if display_available():
        where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform
        return Check("display", OK, f"{where}: the preview window can open")
    return Check("display", OK, "none (DISPLAY/WAYLAND_DISPLAY unset): runs headless, as with --no-window")


def _camera_check() -> Check:
    devices = sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))
    if not devices:
        if not sys.platform.startswith("linux"):
            return Check("cameras", OK, "not listed on this platform; try --source 0")
        return Check("cameras", WARN, "no /dev/video* device",
                     "plug in a USB camera, or use a file, a network camera (rtsp://...) or a GStreamer pipeline")
    named = []
    for device in devices:
        name_file = Path("/sys/class/video4linux") / Path(device).name / "name"
        try:
            label = name_file.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            label = ""
        access = "" if os.access(device, os.R_OK | os.W_OK) else ", no access: add the user to the video group"
        named.append(f"{device}{f' ({label})' if label else ''}{access}")
    return Check("cameras", OK, "; ".join(named))


def _config_check(explicit: Optional[Path]) -> Tuple[Check, Optional[Config]]:
    path = config_path(explicit)
    if path is None:
        where = "built-in defaults (the packaged config.yaml is missing)"
    elif explicit is not None:
        where = f"{path} (--config)"
    elif path == LOCAL_CONFIG:
        where = f"{Path.cwd() / path} (./config.yaml)"
    else:
        where = f"packaged defaults {PACKAGED_CONFIG} (no ./config.yaml here)"
    try:
        config = load_config(path)
    except ConfigError as error:
        return Check("config", FAIL, f"{where}: {error}", "fix the key it names, or run without --config"), None
    return Check("config", OK, where), config


def needed_models(config: Config, with_mask_detector: bool = False) -> Dict[str, Optional[Set[str]]]:
    """Model id -> the file names the configured detector and classifier load (None: all the model's
    files), and the mask detector's when the config anonymizes (``with_mask_detector``: also when
    it does not, as ``--anonymize`` is a flag away)."""
    from .classifiers import classifier_model_id
    from .detectors import model_files, model_id

    needed: Dict[str, Optional[Set[str]]] = {}
    needed[model_id(config.detector.name)] = model_files(config.detector.name, config)
    needed[classifier_model_id(config.classifier.name)] = None
    mask_detector = config.output.anonymize_detector
    if (config.output.anonymize is not None or with_mask_detector) and mask_detector is not None:
        needed.setdefault(model_id(mask_detector), model_files(mask_detector, config))
    return needed


def _model_checks(config: Config) -> List[Check]:
    from .models.store import FAILED, MANUAL, MISSING, UNVERIFIED, ModelStore

    store = ModelStore.from_config(config.models)
    source = (f"{MODELS_DIR_ENV}" if os.environ.get(MODELS_DIR_ENV) else
              "models.dir" if config.models.dir else
              "the checkout's models/" if checkout_root() else "the per-user cache")
    writable = store.writable_dir()
    dirs = os.pathsep.join(str(d) for d in store.dirs)
    checks = [Check(
        "models dir", OK if writable else WARN,
        f"{dirs} (from {source}); fetched files go to {writable if writable else 'nowhere: none is writable'}",
        "" if writable else f"make one writable, or set {MODELS_DIR_ENV} to a writable folder",
    )]
    needed = needed_models(config)
    for model_id, files in needed.items():
        reports = [r for r in store.verify([model_id]) if files is None or r.filename in files]
        bad = [r for r in reports if r.status in (MISSING, FAILED, MANUAL)]
        names = ", ".join(f"{r.filename} {r.status}" for r in reports)
        if not bad:
            status = WARN if any(r.status == UNVERIFIED for r in reports) else OK
            where = reports[0].path.parent if reports and reports[0].path else "?"
            checks.append(Check(f"model {model_id}", status, f"{names} in {where}"))
            continue
        if not store.spec(model_id).get("provided_by", "fetch") == "fetch":
            fix = bad[0].detail
        elif any(r.status == FAILED and r.path is not None for r in bad):
            fix = next(r.detail for r in bad if r.status == FAILED and r.path is not None)  # damaged or unreadable
        else:
            fix = (f"run `{_FIX_FETCH} {model_id}` (needs the network once; a run fetches it too unless "
                   "models.auto_fetch is false)")
        checks.append(Check(f"model {model_id}", FAIL, names, fix))
    return checks


def diagnose(explicit_config: Optional[Path] = None) -> List[Check]:
    """Every check, in report order."""
    checks = [Check("streamer", OK, f"{__version__} at {Path(__file__).resolve().parent}"
                    + (f" (source checkout {checkout_root()})" if checkout_root() else "")),
              Check("python", OK, f"{platform.python_version()} ({sys.executable})")]
    checks.extend(_opencv_checks())
    config_check, config = _config_check(explicit_config)
    checks.append(_onnxruntime_check(config))
    if config is not None:
        checks.append(_mqtt_check(config))
    checks.append(_web_check())
    checks.append(_report_check())
    checks.append(_display_check())
    checks.append(_camera_check())
    checks.append(config_check)
    if config is not None:
        checks.extend(_model_checks(config))
    return checks


def format_report(checks: Sequence[Check]) -> str:
    """The report as ``streamer doctor`` prints it: one line a check, then what to fix."""
    width = max(len(c.name) for c in checks)
    lines = [f"{c.status:<4}  {c.name:<{width}}  {c.detail}" for c in checks]
    fixes = [c for c in checks if c.fix]
    if fixes:
        lines.append("")
        lines.append("to fix:" if any(c.status == FAIL for c in checks) else "notes:")
        lines.extend(f"  {c.name}: {c.fix}" for c in fixes)
    failed = [c.name for c in checks if c.status == FAIL]
    lines.append("")
    lines.append(f"missing for the configured run: {', '.join(failed)}" if failed
                 else "ready: everything the configured run needs is here")
    return "\n".join(lines)


def exit_status(checks: Sequence[Check]) -> int:
    """0 when everything needed is there, 1 when something needed is missing."""
    return 1 if any(c.status == FAIL for c in checks) else 0
