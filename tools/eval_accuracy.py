"""Measure the age and gender stages on a labelled folder of face images (a script, not a test).

    STREAMER_MODELS_DIR=../shared/models:models \\
        python tools/eval_accuracy.py --data ../shared/datasets/utkface_dev --detector yunet

Labels come from ``labels.csv`` in the folder (columns ``file,age,gender``; gender "male"/"female"
or 0/1 with 0 = male) or, without it, from UTKFace file names ``age_gender_race_date.jpg...``
(gender 0 = male, 1 = female). UTKFace chips fill the image, so each one is placed in a larger
frame (``--frame-scale``) and the detector runs on that frame, then the face is cropped and
classified as the pipeline does; ``--detector none`` scores the chip itself. ``--sweep`` runs every
crop setting on one set of detections and prints one row per setting.

Reports age MAE (years), gender accuracy, and the detection rate (images with a face found);
MAE and accuracy are over detected faces.
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamer.classify import CydralGenderAge  # noqa: E402
from streamer.config import ClassifierConfig, Config  # noqa: E402
from streamer.detect import Res10Detector, YuNetDetector  # noqa: E402
from streamer.models import ModelStore  # noqa: E402
from streamer.types import Detections  # noqa: E402

log = logging.getLogger("eval_accuracy")

UTKFACE_NAME = re.compile(r"^(\d+)_([01])_")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# A face of UTKFace's 200 px chip in a frame twice as large is the size a webcam face has at
# arm's length in 640x480, and leaves the detector the context it was trained with.
DEFAULT_FRAME_SCALE = 2.0
SQUARE_PADDINGS = (-0.15, -0.1, -0.05, 0.0, 0.1, 0.2)
ALIGN_PADDINGS = (0.1, 0.15, 0.2, 0.25, 0.3)


@dataclass(frozen=True)
class Sample:
    path: Path
    age: float
    male: bool


def _gender_is_male(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in ("male", "m", "0"):
        return True
    if value in ("female", "f", "1"):
        return False
    raise ValueError(f"{where}: gender must be male/female or 0 (male)/1 (female), got {text!r}")


def load_samples(folder: Path) -> List[Sample]:
    """Labelled images of ``folder``: from its labels.csv, else from UTKFace file names."""
    labels = folder / "labels.csv"
    samples: List[Sample] = []
    if labels.is_file():
        with labels.open(newline="", encoding="utf-8") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                where = f"{labels}:{line}"
                if not {"file", "age", "gender"} <= set(row):
                    raise ValueError(f"{where}: expected columns file,age,gender, got {sorted(row)}")
                samples.append(Sample(folder / row["file"], float(row["age"]), _gender_is_male(row["gender"], where)))
        return samples
    for path in sorted(folder.iterdir()):
        match = UTKFACE_NAME.match(path.name)
        if match and path.name.lower().endswith(IMAGE_SUFFIXES):
            samples.append(Sample(path, float(match.group(1)), match.group(2) == "0"))
    if not samples:
        raise ValueError(
            f"{folder}: no labels.csv and no file named like UTKFace's age_gender_race_date.jpg; "
            "add a labels.csv with columns file,age,gender"
        )
    return samples


def in_frame(chip: np.ndarray, frame_scale: float, border: str) -> Tuple[np.ndarray, int, int]:
    """The chip centred in a frame ``frame_scale`` times its size; returns frame, x and y offset."""
    h, w = chip.shape[:2]
    dy, dx = int(round(h * (frame_scale - 1) / 2)), int(round(w * (frame_scale - 1) / 2))
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    return cv2.copyMakeBorder(chip, dy, dy, dx, dx, mode, value=(0, 0, 0)), dx, dy


def best_face(detections: Detections, frame_hw: Tuple[int, int]) -> Optional[Detections]:
    """The detection nearest the frame centre (the chip's face), or None when nothing was found."""
    if len(detections) == 0:
        return None
    centre = np.array([frame_hw[1], frame_hw[0]], np.float32) / 2
    box_centres = (detections.xyxy[:, :2] + detections.xyxy[:, 2:]) / 2
    return detections[np.array([int(np.argmin(((box_centres - centre) ** 2).sum(1)))])]


def make_detector(name: str, store: ModelStore, config: Config):
    if name == "yunet":
        return YuNetDetector(store.path("yunet_2023mar", "face_detection_yunet_2023mar.onnx"), config.detector, config.dnn)
    return Res10Detector(
        store.path("res10_ssd_caffe", "deploy.prototxt"),
        store.path("res10_ssd_caffe", "res10_300x300_ssd_iter_140000.caffemodel"),
        config.detector,
        config.dnn,
    )


def scores(samples: Sequence[Sample], p_male: np.ndarray, age: np.ndarray, found: np.ndarray) -> Dict[str, float]:
    truth_age = np.array([s.age for s in samples])[found]
    truth_male = np.array([s.male for s in samples])[found]
    return {
        "n": float(found.sum()),
        "detected": float(found.mean()),
        "mae": float(np.abs(age[found] - truth_age).mean()) if found.any() else float("nan"),
        "acc": float(((p_male[found] >= 0.5) == truth_male).mean()) if found.any() else float("nan"),
    }


def crop_settings(detector: str, args: argparse.Namespace) -> List[Dict[str, object]]:
    if not args.sweep:
        if args.crop == "aligned" and detector != "yunet":
            # res10 gives no landmarks: the pipeline falls back to square crops, and so do we.
            return [{"align": False, "padding": Config().classifier.square_padding, "border": args.border}]
        return [{"align": args.crop == "aligned", "padding": args.padding, "border": args.border}]
    settings: List[Dict[str, object]] = []
    if detector == "yunet":
        settings += [{"align": True, "padding": p, "border": args.border} for p in ALIGN_PADDINGS]
    settings += [{"align": False, "padding": p, "border": args.border} for p in SQUARE_PADDINGS]
    return settings


def classifier_for(base: ClassifierConfig, setting: Dict[str, object], store: ModelStore, config: Config):
    padding_key = "align_padding" if setting["align"] else "square_padding"
    cfg = ClassifierConfig(
        **{**base.to_dict(), "align": setting["align"], padding_key: setting["padding"], "border": setting["border"]}
    )
    return CydralGenderAge(
        store.path("cydral_age_gender", "age-v1.onnx"), store.path("cydral_age_gender", "gender-v1.onnx"), cfg, config.dnn
    )


def progress(done: int, total: int, started: float, what: str) -> None:
    if done % 100 == 0 or done == total:
        log.info("%s: %d/%d images (%.1f s)", what, done, total, time.monotonic() - started)


def evaluate(args: argparse.Namespace) -> List[Tuple[str, str, Dict[str, float]]]:
    config = Config()
    store = ModelStore.from_config(config.models)
    samples = load_samples(args.data)
    if args.limit:
        samples = samples[: args.limit]
    images = [cv2.imread(str(s.path)) for s in samples]
    missing = [str(s.path) for s, img in zip(samples, images) if img is None]
    if missing:
        raise ValueError(f"cannot read {len(missing)} image(s), e.g. {missing[0]}; check the folder")
    rows: List[Tuple[str, str, Dict[str, float]]] = []
    n = len(samples)
    started = time.monotonic()

    if "none" in args.detector:
        model = classifier_for(config.classifier, {"align": False, "padding": 0.0, "border": "replicate"}, store, config)
        p_male, age = np.zeros(n, np.float32), np.zeros(n, np.float32)
        for i, img in enumerate(images):
            result = model.predict_chips(img[None])
            p_male[i], age[i] = result.p_male[0], result.age_years[0]
            progress(i + 1, n, started, "chip")
        rows.append(("none (chip itself)", "whole chip", scores(samples, p_male, age, np.ones(n, bool))))

    for name in (d for d in args.detector if d != "none"):
        detector = make_detector(name, store, config)
        frames: List[np.ndarray] = []
        faces: List[Optional[Detections]] = []
        for i, img in enumerate(images):
            frame, _, _ = in_frame(img, args.frame_scale, args.frame_border)
            frames.append(frame)
            faces.append(best_face(detector.detect(frame), frame.shape[:2]))
            progress(i + 1, n, started, f"detect {name}")
        found = np.array([f is not None for f in faces])
        for setting in crop_settings(name, args):
            model = classifier_for(config.classifier, setting, store, config)
            p_male, age = np.zeros(n, np.float32), np.zeros(n, np.float32)
            for i, (frame, face) in enumerate(zip(frames, faces)):
                if face is not None:
                    result = model.predict(frame, face)
                    p_male[i], age[i] = result.p_male[0], result.age_years[0]
            crop = f"{'aligned' if setting['align'] else 'square'} pad {setting['padding']} {setting['border']}"
            rows.append((name, crop, scores(samples, p_male, age, found)))
            log.info("%s %s: %s", name, crop, rows[-1][2])
    return rows


def print_table(rows: Iterable[Tuple[str, str, Dict[str, float]]]) -> None:
    print("| detector | crop | detected | age MAE (years) | gender accuracy |")
    print("|---|---|---:|---:|---:|")
    for detector, crop, s in rows:
        print(f"| {detector} | {crop} | {s['detected']:.1%} ({int(s['n'])}) | {s['mae']:.2f} | {s['acc']:.1%} |")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of face images (labels.csv or UTKFace names)")
    parser.add_argument(
        "--detector", nargs="+", choices=("res10", "yunet", "none"), default=["yunet", "res10", "none"],
        help="detector(s) to run on the framed chips; none scores the chip itself",
    )
    parser.add_argument("--crop", choices=("aligned", "square"), default="aligned", help="aligned needs yunet's landmarks")
    parser.add_argument("--padding", type=float, default=None, help="crop padding (default: from config)")
    parser.add_argument("--border", choices=("replicate", "constant"), default=None, help="default: from config")
    parser.add_argument("--sweep", action="store_true", help="try every crop padding (ignores --crop/--padding)")
    parser.add_argument("--frame-scale", type=float, default=DEFAULT_FRAME_SCALE, help="frame size / chip size")
    parser.add_argument("--frame-border", choices=("replicate", "constant"), default="constant", help="frame fill")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    defaults = Config().classifier
    if args.padding is None:
        args.padding = defaults.align_padding if args.crop == "aligned" else defaults.square_padding
    if args.border is None:
        args.border = defaults.border
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder; pass a folder of face images")
    print_table(evaluate(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
