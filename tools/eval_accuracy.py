"""Accuracy of the whole label pipeline (detect, align, classify, calibrate) on the labelled dev
sets, per age group, cross-validated wherever something is fitted (a script, not a test).

    STREAMER_MODELS_DIR=../shared/models:models python tools/eval_accuracy.py --detector yunet
    python tools/eval_accuracy.py --detector yunet --write-calibration streamer/data/age_calibration.json

Data sets (labels.csv in each folder, columns ``file,age,gender,age_group``):

- ``--utkface`` (default ../shared/datasets/utkface_dev): 200 px chips with exact ages. A chip is
  the face alone, so it is centred in a black frame twice its size (the size of a webcam face at
  arm's length in 640x480, with the context the detector was trained with) before detection.
- ``--fairface`` (default ../shared/datasets/fairface_dev): 448 px in-the-wild images with an age
  group only (``age`` empty). The detector runs on the whole image and the face nearest the
  centre is the labelled one.

The raw network outputs of every face (the 81-way age distribution and p_male, for every
test-time view: jittered crops and their mirror images) are cached in ``out/eval_cache/``; the
report and every fitting experiment reuse them without running a network (``--recollect``
refreshes them). Calibration is scored out-of-fold: 5 folds stratified by data set x age group x
gender, fitted on four and applied to the fifth. ``--write-calibration`` then fits on everything
and writes the file the pipeline ships (its sha256 goes into streamer/data/manifest.json).

Figures count the faces the pipeline classifies (detected, at least classifier.min_face_px, not
turned further than classifier.max_yaw); how many were detected and classified is reported beside them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import label_fit  # noqa: E402

from streamer.classifiers.align import NO_JITTER, yaw_ratio  # noqa: E402
from streamer.classifiers.calibration import CALIBRATION_SCHEMA, LabelCalibration  # noqa: E402
from streamer.classifiers.cydral import (  # noqa: E402
    CYDRAL_AGE_WEIGHTS,
    SHIFT_JITTERS,
    TTA_JITTERS,
    ZOOM_JITTERS,
    CydralGenderAge,
)
from streamer.config import Config, override  # noqa: E402
from streamer.models.store import ModelStore, file_sha256  # noqa: E402
from streamer.pipeline import build_detector  # noqa: E402
from streamer.types import Detections, age_group_index, age_group_labels  # noqa: E402

log = logging.getLogger("eval_accuracy")

SHARED = REPO.parent / "shared"
FRAME_SCALE = 2.0
# FairFace's groups (also the default classifier.age_groups); 70+ is closed at 100 for fitting.
GROUPS: Tuple[Tuple[int, int], ...] = ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 100))
DECADES: Tuple[Tuple[int, int], ...] = tuple((d, d + 9) for d in range(0, 80, 10)) + ((80, 120),)
# Test-time views: the pipeline's crop jitters (streamer/classifiers/cydral.py), each also mirrored.
JITTERS = (NO_JITTER, *SHIFT_JITTERS, *ZOOM_JITTERS)
# View subsets scored from the cache: view index = 2 * jitter index + mirrored.
TTA_CHOICES: Dict[str, Tuple[int, ...]] = {
    "none": (0,),
    "flip": (0, 1),
    "shift4": (0, 2, 4, 6, 8),
    "zoom2": (0, 10, 12),
    "flip+shift4": tuple(range(10)),
    "flip+all": tuple(range(14)),
}
RANGE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
# Calibrated ages where the range is tabulated: about 100 UTKFace faces are predicted between
# neighbours, enough for the 5 % / 95 % error quantiles.
RANGE_AGES = (3.0, 10.0, 20.0, 32.0, 45.0, 60.0, 75.0)
FOLDS = 5


@dataclass(frozen=True)
class Sample:
    """One labelled image: exact ages have ``age_lo == age_hi``; a group is ``[lo, hi + 1]``."""

    path: Path
    age_lo: float
    age_hi: float
    male: bool
    group: int


def _group_of_label(text: str) -> int:
    labels = age_group_labels(GROUPS)
    text = text.strip()
    if text in labels:
        return labels.index(text)
    if text.endswith("+"):
        return len(GROUPS) - 1
    raise ValueError(f"age group {text!r} is not one of {labels}")


def load_samples(folder: Path) -> List[Sample]:
    """The labelled images of a folder's labels.csv (``file,age,gender`` and ``age_group`` when
    ``age`` is empty; gender male/female or 0 = male / 1 = female as UTKFace)."""
    labels = folder / "labels.csv"
    samples: List[Sample] = []
    with labels.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            gender = row["gender"].strip().lower()
            if gender not in ("male", "m", "0", "female", "f", "1"):
                raise ValueError(f"{labels}:{line}: gender must be male/female or 0/1, got {gender!r}")
            male = gender in ("male", "m", "0")
            if row.get("age", "").strip():
                age = float(row["age"])
                group = int(age_group_index(age, GROUPS))
                samples.append(Sample(folder / row["file"], age, age, male, group))
            else:
                group = _group_of_label(row["age_group"])
                lo, hi = GROUPS[group]
                samples.append(Sample(folder / row["file"], float(lo), float(hi + 1), male, group))
    return samples


def frame_of(path: Path, padded: bool) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"cannot read {path}; check the data folder")
    if not padded:
        return image
    h, w = image.shape[:2]
    dy, dx = int(round(h * (FRAME_SCALE - 1) / 2)), int(round(w * (FRAME_SCALE - 1) / 2))
    return cv2.copyMakeBorder(image, dy, dy, dx, dx, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def central_face(detections: Detections, frame_hw: Tuple[int, int]) -> Optional[Detections]:
    """The detection nearest the frame centre (the labelled face), or None."""
    if len(detections) == 0:
        return None
    centre = np.array([frame_hw[1], frame_hw[0]], np.float32) / 2
    box_centres = (detections.xyxy[:, :2] + detections.xyxy[:, 2:]) / 2
    return detections[np.array([int(np.argmin(((box_centres - centre) ** 2).sum(1)))])]


# ---- collect: run the networks once, cache their raw outputs -----------------------------------


def _classifier(config: Config, store: ModelStore) -> CydralGenderAge:
    return CydralGenderAge(
        store.path("cydral_age_gender", "age-v1.onnx"), store.path("cydral_age_gender", "gender-v1.onnx"),
        config.classifier, config.dnn,
    )


def collect(name: str, samples: Sequence[Sample], padded: bool, detector_name: str, cache: Path,
            recollect: bool) -> Dict[str, np.ndarray]:
    """Raw outputs per sample: ``found`` (N,), ``score`` (N,), ``face_px`` (N,), ``landmarks``
    (N, 5, 2) (NaN without), ``p_male`` (N, V), ``age_prob`` (N, V, 81); cached in ``cache``
    keyed on files, detector and views."""
    config = override(Config(), {"detector.name": detector_name, "detector.fallback": None})
    # Only what changes the chips: label settings (flips, calibration, thresholds) reuse the cache.
    chip_keys = ("name", "min_face_px", "age_groups", "align", "align_padding", "square_padding", "border")
    chip_settings = {k: v for k, v in config.classifier.to_dict().items() if k in chip_keys}
    key = json.dumps({"files": [s.path.name for s in samples], "detector": config.detector.to_dict(),
                      "classifier": chip_settings, "jitters": JITTERS, "padded": padded, "cache": 3})
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    if cache.is_file() and not recollect:
        data = dict(np.load(cache))
        if str(data.get("key")) == digest:
            return data
    store = ModelStore.from_config(config.models)
    detector = build_detector(config, store)
    classifier = _classifier(config, store)
    n, views = len(samples), len(JITTERS) * 2
    out = {
        "found": np.zeros(n, bool), "score": np.zeros(n, np.float32), "face_px": np.zeros(n, np.float32),
        "landmarks": np.full((n, 5, 2), np.nan, np.float32),
        "p_male": np.full((n, views), np.nan, np.float32), "age_prob": np.full((n, views, 81), np.nan, np.float32),
    }
    started = time.monotonic()
    for i, sample in enumerate(samples):
        frame = frame_of(sample.path, padded)
        face = central_face(detector.detect(frame), frame.shape[:2])
        if face is not None:
            x1, y1, x2, y2 = face.xyxy[0]
            out["found"][i], out["score"][i], out["face_px"][i] = True, face.confidence[0], min(x2 - x1, y2 - y1)
            if face.landmarks_xy is not None:
                out["landmarks"][i] = face.landmarks_xy[0]
            gender, age = classifier.view_probabilities(frame, face, JITTERS, flip=True)
            out["p_male"][i], out["age_prob"][i] = gender[0, :, 1], age[0]
        if (i + 1) % 100 == 0 or i + 1 == n:
            log.info("%s %s: %d/%d images (%.0f s)", name, detector_name, i + 1, n, time.monotonic() - started)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".part.npz")
    np.savez_compressed(tmp, key=np.array(digest), **out)
    tmp.replace(cache)
    out["key"] = np.array(digest)
    return out


def time_views(detector_name: str, repeats: int = 30) -> Dict[str, float]:
    """Milliseconds per face of each TTA choice (one face per frame, the webcam case), median."""
    config = override(Config(), {"detector.name": detector_name, "detector.fallback": None})
    store = ModelStore.from_config(config.models)
    classifier = _classifier(config, store)
    sample = load_samples(SHARED / "datasets" / "fairface_dev")[0]
    frame = frame_of(sample.path, padded=False)
    face = central_face(build_detector(config, store).detect(frame), frame.shape[:2])
    assert face is not None, f"no face found in {sample.path}"
    result = {}
    for choice, views in TTA_CHOICES.items():
        jitters = tuple(JITTERS[v // 2] for v in views if v % 2 == 0)
        flip = any(v % 2 for v in views)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            classifier.view_probabilities(frame, face, jitters, flip)
            times.append((time.perf_counter() - t0) * 1000.0)
        result[choice] = float(np.median(times))
    return result


# ---- fit and score ---------------------------------------------------------------------------------


@dataclass
class Pooled:
    """Both data sets side by side, detected faces only, for one view subset."""

    dataset: np.ndarray  # "utkface" / "fairface"
    lo: np.ndarray
    hi: np.ndarray
    male: np.ndarray
    group: np.ndarray
    age_prob: np.ndarray  # (N, 81), averaged over the views
    p_raw: np.ndarray
    age_raw: np.ndarray


def classified_mask(data: Dict[str, np.ndarray]) -> np.ndarray:
    """Faces the pipeline classifies: detected, large enough, not turned away (classifier.max_yaw)."""
    cfg = Config().classifier
    marks = data["landmarks"]
    has_marks = ~np.isnan(marks).any(axis=(1, 2))
    yaw = np.zeros(len(marks), np.float32)
    yaw[has_marks] = yaw_ratio(marks[has_marks])
    return data["found"] & (data["face_px"] >= cfg.min_face_px) & (np.abs(yaw) <= cfg.max_yaw)


def runtime_views() -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """The views the pipeline averages by default: (age views, gender views)."""
    cfg = Config().classifier
    jitters = [JITTERS.index(j) for j in TTA_JITTERS[cfg.tta_jitter]]
    plain = tuple(2 * j for j in jitters)
    mirrored = tuple(sorted(plain + tuple(v + 1 for v in plain)))
    return mirrored if cfg.flip_age else plain, mirrored if cfg.flip_gender else plain


def pool(sets: Dict[str, Tuple[Sequence[Sample], Dict[str, np.ndarray]]], views: Sequence[int],
         gender_views: Optional[Sequence[int]] = None) -> Pooled:
    """``views`` averaged for the age network, ``gender_views`` (default: the same) for gender."""
    gender_views = views if gender_views is None else gender_views
    parts: Dict[str, List[np.ndarray]] = {k: [] for k in ("dataset", "lo", "hi", "male", "group", "age_prob", "p_raw")}
    for name, (samples, data) in sets.items():
        found = classified_mask(data)
        kept = [s for s, f in zip(samples, found) if f]
        parts["dataset"].append(np.array([name] * len(kept)))
        parts["lo"].append(np.array([s.age_lo for s in kept]))
        parts["hi"].append(np.array([s.age_hi for s in kept]))
        parts["male"].append(np.array([s.male for s in kept]))
        parts["group"].append(np.array([s.group for s in kept], np.int64))
        parts["age_prob"].append(data["age_prob"][found][:, list(views)].mean(axis=1).astype(np.float64))
        parts["p_raw"].append(data["p_male"][found][:, list(gender_views)].mean(axis=1).astype(np.float64))
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    return Pooled(**joined, age_raw=joined["age_prob"] @ CYDRAL_AGE_WEIGHTS.astype(np.float64))


def fit(p: Pooled, mask: np.ndarray, age_fit: str) -> LabelCalibration:
    """A calibration fitted on the samples of ``mask``. ``age_fit`` "utkface" fits the age map on
    exact ages only, "both" also on FairFace's groups (interval-censored). The range table needs
    exact ages (a group says nothing about how far inside it the truth lies): UTKFace only."""
    exact = mask & (p.dataset == "utkface")
    age_mask = exact if age_fit == "utkface" else mask
    knots_raw, knots = label_fit.isotonic_interval_l1(p.age_raw[age_mask], p.lo[age_mask], p.hi[age_mask])
    if len(knots_raw) < 2:  # everything pooled into one block: a constant map
        knots_raw, knots = np.array([0.0, 80.0]), np.array([knots[0], knots[0]])
    a, b = label_fit.fit_platt(p.p_raw[mask], p.male[mask])
    age = np.interp(p.age_raw[exact], knots_raw, knots)
    lower, upper = label_fit.range_table(age, p.lo[exact], RANGE_AGES, RANGE_LEVELS)
    return LabelCalibration(knots_raw, knots, np.array(RANGE_LEVELS), np.array(RANGE_AGES), lower, upper, a, b, "fitted")


@dataclass
class Predicted:
    age: np.ndarray
    p_male: np.ndarray
    age_range: np.ndarray  # (N, 2) at the reported coverage


def apply(cal: LabelCalibration, p: Pooled, rows: np.ndarray, coverage: float) -> Predicted:
    age = cal.age(p.age_raw[rows]).astype(np.float64)
    return Predicted(age, cal.p_male(p.p_raw[rows]).astype(np.float64), cal.age_range(age, coverage))


def cross_validated(p: Pooled, age_fit: str, coverage: float) -> Predicted:
    """Out-of-fold predictions: every face labelled by a calibration that never saw it."""
    strata = [f"{d}/{g}/{m}" for d, g, m in zip(p.dataset, p.group, p.male)]
    folds = label_fit.stratified_folds(strata, FOLDS)
    n = len(p.dataset)
    out = Predicted(np.zeros(n), np.zeros(n), np.zeros((n, 2)))
    for k in range(FOLDS):
        test = folds == k
        part = apply(fit(p, ~test, age_fit), p, np.flatnonzero(test), coverage)
        out.age[test], out.p_male[test], out.age_range[test] = part.age, part.p_male, part.age_range
    return out


def uncalibrated(p: Pooled, coverage: float) -> Predicted:
    return apply(LabelCalibration.identity(), p, np.arange(len(p.dataset)), coverage)


def figures(p: Pooled, pred: Predicted, rows: np.ndarray) -> Dict[str, float]:
    """Headline figures over ``rows`` (a bool mask)."""
    err = label_fit.interval_distance(pred.age[rows], p.lo[rows], p.hi[rows])
    group = age_group_index(pred.age[rows], GROUPS)
    lo, hi = pred.age_range[rows, 0], pred.age_range[rows, 1]
    return {
        "n": float(rows.sum()),
        "mae": float(err.mean()),
        "gender": float(((pred.p_male[rows] >= 0.5) == p.male[rows]).mean()),
        "group_exact": float((group == p.group[rows]).mean()),
        "group_within1": float((np.abs(group - p.group[rows]) <= 1).mean()),
        "ece": label_fit.expected_calibration_error(pred.p_male[rows], p.male[rows]),
        "coverage": float(((hi >= p.lo[rows]) & (lo <= p.hi[rows])).mean()),
        "width": float((hi - lo).mean()),
    }


# ---- report ------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def print_overall(p: Pooled, preds: Dict[str, Predicted], detected: Dict[str, Tuple[int, int, int]],
                  coverage: float) -> None:
    print(f"\n### Overall (classified faces; age range at {coverage:.0%} stated coverage)\n")
    print("| set | labels | detected, classified | age MAE (y) | gender | group exact | group within 1 | gender ECE | range covers | range width (y) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("utkface", "fairface"):
        rows = p.dataset == name
        found, classified, total = detected[name]
        for label, pred in preds.items():
            f = figures(p, pred, rows)
            mae = f"{f['mae']:.2f}" if name == "utkface" else f"({f['mae']:.2f})"
            print(f"| {name}_dev | {label} | {found}, {classified} of {total} | {mae} | {_pct(f['gender'])} | {_pct(f['group_exact'])} | "
                  f"{_pct(f['group_within1'])} | {f['ece']:.3f} | {_pct(f['coverage'])} | {f['width']:.1f} |")
    print("\n(FairFace has age groups only: its 'MAE' in brackets is the distance to the true group's years.)")


def print_per_group(p: Pooled, preds: Dict[str, Predicted], name: str, groups: Sequence[Tuple[int, int]]) -> None:
    rows_all = p.dataset == name
    labels = list(preds)
    mid = (p.lo + p.hi) / 2
    which = age_group_index(mid, groups)
    names = age_group_labels(groups)
    print(f"\n### {name}_dev per age group (true age)\n")
    head = "| group | n | " + " | ".join(f"age MAE {x}" for x in labels) + " | " + " | ".join(f"gender {x}" for x in labels)
    head += " | " + " | ".join(f"group exact {x} | within 1 {x}" for x in labels) + " |" if name == "fairface" else " |"
    print(head)
    cols = head.count("|") - 1
    print("|---|" + "---:|" * (cols - 1))
    for g, label in enumerate(names):
        rows = rows_all & (which == g)
        if not rows.any():
            continue
        fs = [figures(p, preds[x], rows) for x in labels]
        line = f"| {label} | {int(rows.sum())} | " + " | ".join(f"{f['mae']:.2f}" for f in fs)
        line += " | " + " | ".join(_pct(f["gender"]) for f in fs)
        if name == "fairface":
            line += " | " + " | ".join(f"{_pct(f['group_exact'])} | {_pct(f['group_within1'])}" for f in fs)
        print(line + " |")


def print_reliability(p: Pooled, preds: Dict[str, Predicted]) -> None:
    print("\n### Gender reliability (both sets): stated confidence vs accuracy\n")
    edges = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)
    print("| confidence | " + " | ".join(f"{x}: n, accuracy" for x in preds) + " |")
    print("|---|" + "---:|" * len(preds))
    for lo, hi in zip(edges, edges[1:]):
        cells = []
        for pred in preds.values():
            conf = np.maximum(pred.p_male, 1 - pred.p_male)
            rows = (conf >= lo) & (conf < hi)
            acc = ((pred.p_male[rows] >= 0.5) == p.male[rows]).mean() if rows.any() else float("nan")
            cells.append(f"{int(rows.sum())}, {_pct(acc)}")
        print(f"| {lo:.2f}-{min(hi, 1.0):.2f} | " + " | ".join(cells) + " |")


def print_coverage(p: Pooled, pred_by_level: Dict[float, Predicted]) -> None:
    print("\n### Age range: stated vs measured coverage (cross-validated)\n")
    print("| stated | utkface covers | utkface width (y) | fairface reaches group | fairface width (y) |")
    print("|---:|---:|---:|---:|---:|")
    for level, pred in pred_by_level.items():
        fu = figures(p, pred, p.dataset == "utkface")
        ff = figures(p, pred, p.dataset == "fairface")
        print(f"| {level:.0%} | {_pct(fu['coverage'])} | {fu['width']:.1f} | {_pct(ff['coverage'])} | {ff['width']:.1f} |")


def _knots(cal: LabelCalibration) -> Tuple[List[float], List[float]]:
    """The age map's knots rounded for the file, dropping any that rounding made coincide."""
    xs, ys = [], []
    for x, y in zip(cal.age_knots_raw, cal.age_knots):
        x, y = round(float(x), 5), round(float(y), 3)
        if xs and x <= xs[-1]:
            continue
        xs.append(x)
        ys.append(max(y, ys[-1]) if ys else y)
    return xs, ys


def calibration_json(cal: LabelCalibration, detector: str, tta: str, age_fit: str, n: Dict[str, int],
                     measured: Dict[str, Dict[str, float]]) -> str:
    fitted_on = "utkface_dev (exact ages)" if age_fit == "utkface" else "utkface_dev and fairface_dev (groups as intervals)"
    raw_knots, knots = _knots(cal)
    doc = {
        "schema_version": CALIBRATION_SCHEMA,
        "about": "Label calibration for the cydral_age_gender networks, applied by streamer/classifiers/calibration.py. Written by "
                 f"tools/eval_accuracy.py --write-calibration: age map fitted on {fitted_on}, age ranges on "
                 "utkface_dev, gender scaling on both (../shared/datasets); numbers only, no images. Refit when the "
                 "detector, crop or test-time flips change, and update its sha256 in streamer/data/manifest.json.",
        "fitted_with": {"detector": detector, "crop": "aligned on 5 landmarks, padding 0.2", "tta": tta,
                        "faces": n, "measured_cross_validated": measured},
        "age": {"raw_knots": raw_knots, "knots": knots},
        "age_range": {"about": "[age + lower, age + upper]: quantiles of (true - calibrated age) among "
                               "utkface_dev faces given a similar calibrated age; rows: levels, columns: ages",
                      "levels": list(RANGE_LEVELS), "ages": list(RANGE_AGES),
                      "lower": [[round(float(v), 3) for v in row] for row in cal.range_lower],
                      "upper": [[round(float(v), 3) for v in row] for row in cal.range_upper]},
        "gender": {"platt_a": round(cal.gender_a, 6), "platt_b": round(cal.gender_b, 6)},
    }
    text = json.dumps(doc, indent=1)
    # Lists of numbers on one line each: the file stays readable in a diff.
    return re.sub(r"\[\s*([-0-9.,\s]+?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utkface", type=Path, default=SHARED / "datasets" / "utkface_dev")
    parser.add_argument("--fairface", type=Path, default=SHARED / "datasets" / "fairface_dev")
    parser.add_argument("--detector", default=Config().detector.name, help="detector name (default: config's)")
    parser.add_argument("--tta", choices=["runtime"] + sorted(TTA_CHOICES), default="runtime",
                        help="test-time views to average (runtime: the config's flip_age / flip_gender)")
    parser.add_argument("--age-fit", choices=("both", "utkface"), default="utkface",
                        help="fit the age map on both sets (FairFace groups as intervals) or on UTKFace only")
    parser.add_argument("--coverage", type=float, default=0.8, help="stated coverage of the age range")
    parser.add_argument("--cache", type=Path, default=REPO / "out" / "eval_cache")
    parser.add_argument("--recollect", action="store_true", help="run the networks again")
    parser.add_argument("--compare", action="store_true", help="also compare TTA choices and age-fit sets, with timings")
    parser.add_argument("--write-calibration", type=Path, default=None, help="fit on everything and write here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    sets = {}
    detected = {}
    for name, folder, padded in (("utkface", args.utkface, True), ("fairface", args.fairface, False)):
        samples = load_samples(folder)
        data = collect(name, samples, padded, args.detector, args.cache / f"{name}_{args.detector}.npz", args.recollect)
        sets[name] = (samples, data)
        detected[name] = (int(data["found"].sum()), int(classified_mask(data).sum()), len(samples))
    p = pool(sets, *runtime_views()) if args.tta == "runtime" else pool(sets, TTA_CHOICES[args.tta])
    preds = {"raw": uncalibrated(p, args.coverage), "calibrated (CV)": cross_validated(p, args.age_fit, args.coverage)}
    print(f"## Detector {args.detector}, TTA {args.tta}, age map fitted on {args.age_fit}")
    print_overall(p, preds, detected, args.coverage)
    print_per_group(p, preds, "utkface", DECADES)
    print_per_group(p, preds, "fairface", GROUPS)
    print_reliability(p, preds)
    print_coverage(p, {level: cross_validated(p, args.age_fit, level) for level in (0.5, 0.8, 0.9)})

    if args.compare:
        ms = time_views(args.detector)
        print("\n### Test-time views (cross-validated calibration each)\n")
        print("| views | age+gender views | ms/face | utk MAE | utk gender | ff gender | ff within 1 | ff exact | range width utk/ff |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        rows = [(choice, views, views) for choice, views in TTA_CHOICES.items()]
        rows += [("flip age only", (0, 1), (0,)), ("flip gender only", (0,), (0, 1))]
        for choice, views, gender_views in rows:
            q = pool(sets, views, gender_views)
            pred = cross_validated(q, args.age_fit, args.coverage)
            fu, ff = figures(q, pred, q.dataset == "utkface"), figures(q, pred, q.dataset == "fairface")
            cost = f"{ms[choice]:.2f}" if choice in ms else "-"
            print(f"| {choice} | {len(views)}+{len(gender_views)} | {cost} | {fu['mae']:.2f} | {_pct(fu['gender'])} | {_pct(ff['gender'])} | "
                  f"{_pct(ff['group_within1'])} | {_pct(ff['group_exact'])} | {fu['width']:.1f}/{ff['width']:.1f} |")
        print("\n### Age map fitted on (cross-validated)\n")
        print("| fitted on | utk MAE | ff group exact | ff within 1 |")
        print("|---|---:|---:|---:|")
        for age_fit in ("utkface", "both"):
            pred = cross_validated(p, age_fit, args.coverage)
            fu, ff = figures(p, pred, p.dataset == "utkface"), figures(p, pred, p.dataset == "fairface")
            print(f"| {age_fit} | {fu['mae']:.2f} | {_pct(ff['group_exact'])} | {_pct(ff['group_within1'])} |")

    if args.write_calibration:
        cal = fit(p, np.ones(len(p.dataset), bool), args.age_fit)
        measured = {}
        for name in ("utkface", "fairface"):
            f = figures(p, preds["calibrated (CV)"], p.dataset == name)
            measured[name] = {k: round(v, 4) for k, v in f.items()}
        counts = {name: int((p.dataset == name).sum()) for name in ("utkface", "fairface")}
        cfg = Config().classifier
        tta = (f"flip_age {cfg.flip_age}, flip_gender {cfg.flip_gender}, tta_jitter {cfg.tta_jitter}"
               if args.tta == "runtime" else args.tta)
        text = calibration_json(cal, args.detector, tta, args.age_fit, counts, measured)
        tmp = args.write_calibration.with_suffix(".part")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.write_calibration)
        print(f"\nwrote {args.write_calibration} sha256 {file_sha256(args.write_calibration)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
