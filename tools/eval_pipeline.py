"""Accuracy and coverage of each gender/age classifier through the real pipeline (``build_analyzer``:
the configured detector, chips, classifier, calibration and the children's gender rule) on the
labelled dev sets, with milliseconds per face (a script, not a test).

    STREAMER_MODELS_DIR=../shared/models:models python tools/eval_pipeline.py
    python tools/eval_pipeline.py --classifier faceapi --write-ranges streamer/data/faceapi_calibration.json

Each image goes through ``FaceAnalyzer`` as a photo (``build_analyzer(..., photos=True)``, or as a
video frame with ``--video``: the detector at ``detector.max_side_px``); the
face nearest the centre is the labelled one (UTKFace chips are centred in a black frame twice
their size first, as tools/eval_accuracy.py does). Every found face is classified once with the
turned-face gate open, so the ``max_yaw`` sweep costs no network run; the headline figures are
checked against ``FaceAnalyzer.analyse`` at the configured ``max_yaw`` on every image.

Coverage = faces labelled / faces found (too small or turned past ``max_yaw``: found, not
labelled); accuracy is over the labelled faces. "gender" is the network's call on every labelled
face; "shown" is what the overlay and events say after the children's rule (gender left out for
faces read as children below ``classifier.child_min_gender_p``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import label_fit  # noqa: E402
from eval_accuracy import DECADES, GROUPS, SHARED, central_face, frame_of, load_samples  # noqa: E402

from streamer.classifiers.align import yaw_ratio  # noqa: E402
from streamer.classifiers.calibration import CALIBRATION_SCHEMA  # noqa: E402
from streamer.config import Config, override  # noqa: E402
from streamer.models.store import ModelStore, file_sha256  # noqa: E402
from streamer.pipeline import build_analyzer, faces_from  # noqa: E402
from streamer.types import ChildGender, age_group_index, age_group_labels  # noqa: E402

log = logging.getLogger("eval_pipeline")

CACHE_VERSION = 1
YAWS: Tuple[Optional[float], ...] = (0.45, 0.6, 0.8, 1.0, None)
RANGE_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
# Ages where the range table is read off: enough utkface_dev faces predicted between neighbours.
RANGE_AGES = (3.0, 10.0, 20.0, 32.0, 45.0, 60.0, 75.0)
CHILD_LEVELS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95)


def run_set(name: str, folder: Path, padded: bool, classifier: str, max_yaw: float, cache: Path,
            recollect: bool, photos: bool = True) -> Dict[str, np.ndarray]:
    """Per image: ``found``, ``too_small``, ``yaw``, the classifier's ``p_male``, ``p_male_raw``,
    ``age``, ``age_raw``, ``range`` (N, 2), ``shown`` (1 male, 0 female, -1 none) with the config's
    child rule, ``labelled`` (``analyse`` at ``max_yaw`` labelled it) and ``ms`` (classify, one face)."""
    samples = load_samples(folder)
    config = override(Config(), {"classifier.name": classifier, "detector.fallback": None})
    key = hashlib.sha256(json.dumps({"files": [s.path.name for s in samples], "config": config.to_dict(),
                                     "max_yaw": max_yaw, "photos": photos, "v": CACHE_VERSION}, default=str).encode()).hexdigest()[:16]
    if cache.is_file() and not recollect:
        data = dict(np.load(cache))
        if str(data.get("key")) == key:
            return data
    store = ModelStore.from_config(config.models)
    # The gate open for the sweep; the configured max_yaw's analyzer for the headline check.
    open_gate = build_analyzer(override(config, {"classifier.max_yaw": 10.0}), store, photos=photos)
    gated = build_analyzer(override(config, {"classifier.max_yaw": max_yaw}), store, photos=photos)
    n = len(samples)
    out = {k: np.full(n, np.nan, np.float32) for k in ("yaw", "p_male", "p_male_raw", "age", "age_raw", "ms")}
    out.update(found=np.zeros(n, bool), too_small=np.zeros(n, bool), labelled=np.zeros(n, bool),
               shown=np.full(n, -1, np.int8), range=np.full((n, 2), np.nan, np.float32))
    started = time.monotonic()
    for i, sample in enumerate(samples):
        frame = frame_of(sample.path, padded)
        face = central_face(open_gate.detect(frame), frame.shape[:2])
        if face is not None:
            out["found"][i] = True
            out["too_small"][i] = bool(open_gate.too_small(face.xyxy)[0])
            out["yaw"][i] = abs(float(yaw_ratio(face.landmarks_xy)[0])) if face.landmarks_xy is not None else 0.0
            t0 = time.perf_counter()
            labels = open_gate.classify(frame, face)
            out["ms"][i] = (time.perf_counter() - t0) * 1000.0
            for k, v in (("p_male", labels.p_male), ("p_male_raw", labels.p_male_raw), ("age", labels.age_years),
                         ("age_raw", labels.age_raw)):
                out[k][i] = v[0]
            out["range"][i] = labels.age_range[0]
            [shown] = faces_from(face, labels, np.ones(1, bool), child_gender=open_gate.child_gender)
            out["shown"][i] = -1 if shown.gender is None else int(shown.gender == "male")
            faces, _ = gated.analyse(frame)
            if faces:
                centre = np.array([frame.shape[1], frame.shape[0]], np.float64) / 2
                nearest = min(faces, key=lambda f: float(np.sum(((np.add(f.xyxy[:2], f.xyxy[2:]) / 2) - centre) ** 2)))
                out["labelled"][i] = nearest.classified
        if (i + 1) % 100 == 0 or i + 1 == n:
            log.info("%s %s: %d/%d (%.0f s)", classifier, name, i + 1, n, time.monotonic() - started)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".part.npz")
    np.savez_compressed(tmp, key=np.array(key), **out)
    tmp.replace(cache)
    out["key"] = np.array(key)
    return out


@dataclass
class Truth:
    lo: np.ndarray
    hi: np.ndarray
    male: np.ndarray
    group: np.ndarray  # FairFace group index of the true age


def truth_of(folder: Path) -> Truth:
    samples = load_samples(folder)
    return Truth(np.array([s.age_lo for s in samples]), np.array([s.age_hi for s in samples]),
                 np.array([s.male for s in samples]), np.array([s.group for s in samples]))


def labelled_at(d: Dict[str, np.ndarray], max_yaw: Optional[float], min_face_px_ok: bool = True) -> np.ndarray:
    keep = d["found"] & ~d["too_small"] if min_face_px_ok else d["found"]
    return keep if max_yaw is None else keep & (d["yaw"] <= max_yaw)


def scores(d: Dict[str, np.ndarray], t: Truth, rows: np.ndarray) -> Dict[str, float]:
    """Figures over ``rows`` (labelled faces of one set)."""
    age = d["age"][rows].astype(np.float64)
    group = age_group_index(age, GROUPS)
    male = t.male[rows]
    shown = d["shown"][rows]
    n = int(rows.sum())
    return {
        "n": n,
        "mae": float(label_fit.interval_distance(age, t.lo[rows], t.hi[rows]).mean()) if n else math.nan,
        "gender": float(((d["p_male"][rows] >= 0.5) == male).mean()) if n else math.nan,
        "shown_share": float((shown >= 0).mean()) if n else math.nan,
        "shown_right": float((shown[shown >= 0] == male[shown >= 0]).mean()) if (shown >= 0).any() else math.nan,
        "exact": float((group == t.group[rows]).mean()) if n else math.nan,
        "within1": float((np.abs(group - t.group[rows]) <= 1).mean()) if n else math.nan,
        "range_hits": float(((d["range"][rows, 1] >= t.lo[rows]) & (d["range"][rows, 0] <= t.hi[rows])).mean()) if n else math.nan,
        "range_width": float((d["range"][rows, 1] - d["range"][rows, 0]).mean()) if n else math.nan,
    }


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}%"


def mcnemar_p(a_right: np.ndarray, b_right: np.ndarray) -> Tuple[int, int, float]:
    """Exact two-sided McNemar: (only a right, only b right, p)."""
    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return only_a, only_b, 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return only_a, only_b, min(1.0, 2 * tail)


def time_classifiers(classifiers: Sequence[str], repeats: int) -> Dict[str, Tuple[float, float]]:
    """Median wall and process-CPU milliseconds of ``FaceAnalyzer.classify`` on one face (chip and
    forward, the webcam case), the classifiers called in turn so a shared machine's load falls on
    all alike. CPU time is the steadier figure on a busy machine."""
    sample = load_samples(SHARED / "datasets" / "fairface_dev")[0]
    frame = frame_of(sample.path, padded=False)
    analyzers = {}
    for c in classifiers:
        config = override(Config(), {"classifier.name": c, "detector.fallback": None})
        analyzers[c] = build_analyzer(config, ModelStore.from_config(config.models), photos=True)
    face = central_face(analyzers[classifiers[0]].detect(frame), frame.shape[:2])
    assert face is not None, f"no face found in {sample.path}"
    times: Dict[str, List[Tuple[float, float]]] = {c: [] for c in classifiers}
    for i in range(repeats + 5):
        for c, analyzer in analyzers.items():
            wall, cpu = time.perf_counter(), time.process_time()
            analyzer.classify(frame, face)
            if i >= 5:  # warm-up calls left out
                times[c].append(((time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0))
    return {c: (float(np.median([w for w, _ in v])), float(np.median([u for _, u in v]))) for c, v in times.items()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", action="append", help="classifier.name to measure (repeat; default: faceapi and cydral)")
    parser.add_argument("--utkface", type=Path, default=SHARED / "datasets" / "utkface_dev")
    parser.add_argument("--fairface", type=Path, default=SHARED / "datasets" / "fairface_dev")
    parser.add_argument("--max-yaw", type=float, default=None, help="the gate of the headline (default: config's)")
    parser.add_argument("--cache", type=Path, default=REPO / "out" / "eval_pipeline")
    parser.add_argument("--recollect", action="store_true", help="run the pipeline again")
    parser.add_argument("--video", action="store_true",
                        help="detect as in a video or stream (detector.max_side_px) instead of as a photo")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per classifier")
    parser.add_argument("--write-ranges", type=Path, default=None,
                        help="fit the first classifier's age-range table on utkface_dev and write a calibration file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    classifiers = args.classifier or ["faceapi", "cydral"]
    max_yaw = args.max_yaw if args.max_yaw is not None else Config().classifier.max_yaw
    sets = {"fairface": (args.fairface, False), "utkface": (args.utkface, True)}
    truth = {name: truth_of(folder) for name, (folder, _) in sets.items()}
    mode = "video" if args.video else "photos"
    data = {(c, name): run_set(name, folder, padded, c, max_yaw, args.cache / f"{c}_{name}_{mode}.npz", args.recollect,
                               photos=not args.video)
            for c in classifiers for name, (folder, padded) in sets.items()}

    for key, d in data.items():
        agree = labelled_at(d, max_yaw) == d["labelled"]
        if not agree.all():
            log.warning("%s: the sweep's gate and analyse() disagree on %d faces", key, int((~agree).sum()))

    cfg = Config().classifier
    print(f"## Through build_analyzer ({mode}), max_yaw {max_yaw}; children: no gender under {cfg.baby_max_age:g} "
          f"years, under {cfg.child_max_age:g} only at p >= {cfg.child_min_gender_p:g}\n")
    print("| set | classifier | found | labelled (coverage) | gender | shown: share, right | age MAE (y) | group exact | within 1 | "
          "range holds truth | range width (y) | ms/face |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in sets:
        for c in classifiers:
            d, t = data[(c, name)], truth[name]
            rows = labelled_at(d, max_yaw)
            f = scores(d, t, rows)
            found = int(d["found"].sum())
            mae = f"{f['mae']:.2f}" if name == "utkface" else f"({f['mae']:.2f})"
            print(f"| {name}_dev | {c} | {found}/{len(rows)} | {int(rows.sum())} ({pct(rows.sum() / max(found, 1))}) | "
                  f"{pct(f['gender'])} | {pct(f['shown_share'])}, {pct(f['shown_right'])} | {mae} | {pct(f['exact'])} | "
                  f"{pct(f['within1'])} | {pct(f['range_hits'])} | {f['range_width']:.1f} | {np.nanmedian(d['ms']):.2f} |")
    print("\n(FairFace has age groups only: its 'MAE' in brackets is the distance to the true group's years; "
          "ms/face: median classify time of one face during the run, detection excluded.)")
    print("\n### Cost per face: FaceAnalyzer.classify on one face (chip + forward), interleaved\n")
    print("| classifier | engine | wall ms (median) | CPU ms (median) |")
    print("|---|---|---:|---:|")
    for c, (wall, cpu) in time_classifiers(classifiers, args.repeats).items():
        print(f"| {c} | {Config().dnn.engine} | {wall:.2f} | {cpu:.2f} |")

    print("\n### Turned-face gate (fairface_dev): coverage and accuracy over labelled faces\n")
    print("| max_yaw | " + " | ".join(f"{c}: labelled, gender / exact / within 1" for c in classifiers) + " |")
    print("|---:|" + "---:|" * len(classifiers))
    for yaw in YAWS:
        cells = []
        for c in classifiers:
            d = data[(c, "fairface")]
            rows = labelled_at(d, yaw)
            f = scores(d, truth["fairface"], rows)
            cells.append(f"{int(rows.sum())} ({pct(rows.sum() / d['found'].sum())}), {pct(f['gender'])} / "
                         f"{pct(f['exact'])} / {pct(f['within1'])}")
        print(f"| {'none' if yaw is None else yaw} | " + " | ".join(cells) + " |")

    for name, groups in (("fairface", GROUPS), ("utkface", DECADES)):
        print(f"\n### {name}_dev per true age {'group' if name == 'fairface' else 'decade'} (labelled faces)\n")
        age_cols = "exact / within 1" if name == "fairface" else "MAE"
        print("| age | " + " | ".join(f"{c}: n, gender, shown (share, right), {age_cols}" for c in classifiers) + " |")
        print("|---|" + "---:|" * len(classifiers))
        t = truth[name]
        which = age_group_index((t.lo + t.hi) / 2, groups)
        for g, label in enumerate(age_group_labels(groups)):
            cells = []
            for c in classifiers:
                d = data[(c, name)]
                rows = labelled_at(d, max_yaw) & (which == g)
                f = scores(d, t, rows)
                age = f"{pct(f['exact'])} / {pct(f['within1'])}" if name == "fairface" else f"{f['mae']:.2f}"
                cells.append(f"{f['n']}, {pct(f['gender'])}, {pct(f['shown_share'])} {pct(f['shown_right'])}, {age}")
            print(f"| {label} | " + " | ".join(cells) + " |")

    print("\n### Children's gender: share shown and right, by the confidence asked of faces read under "
          f"{cfg.child_max_age:g} (none under {cfg.baby_max_age:g}); labelled faces, true age\n")
    print("| classifier | set | true age | n | " + " | ".join(f">= {lv}" for lv in CHILD_LEVELS) + " |")
    print("|---|---|---|---:|" + "---:|" * len(CHILD_LEVELS))
    for c in classifiers:
        for name in sets:
            d, t = data[(c, name)], truth[name]
            for label, lo, hi in (("0-2", 0, 3), ("3-9", 3, 10), ("10-19", 10, 20)):
                rows = labelled_at(d, max_yaw) & ((t.lo + t.hi) / 2 >= lo) & ((t.lo + t.hi) / 2 < hi)
                cells = []
                for level in CHILD_LEVELS:
                    rule = ChildGender(cfg.child_max_age, level, cfg.baby_max_age)
                    shows = np.array([rule.shows(float(p), float(a)) for p, a in zip(d["p_male"][rows], d["age"][rows])], bool)
                    right = ((d["p_male"][rows] >= 0.5) == t.male[rows])[shows]
                    cells.append(f"{pct(shows.mean() if len(shows) else math.nan)}, {int(right.sum())}/{len(right)}")
                print(f"| {c} | {name}_dev | {label} | {int(rows.sum())} | " + " | ".join(cells) + " |")

    if len(classifiers) >= 2:
        a, b = classifiers[:2]
        print(f"\n### {a} against {b} on the same fairface_dev faces (labelled by both; exact McNemar)\n")
        print(f"| | {a} right | {b} right | {a} only | {b} only | p |")
        print("|---|---:|---:|---:|---:|---:|")
        da, db, t = data[(a, "fairface")], data[(b, "fairface")], truth["fairface"]
        rows = labelled_at(da, max_yaw) & labelled_at(db, max_yaw)
        for what in ("gender", "exact", "within1"):
            def right(d: Dict[str, np.ndarray]) -> np.ndarray:
                if what == "gender":
                    return (d["p_male"][rows] >= 0.5) == t.male[rows]
                diff = np.abs(age_group_index(d["age"][rows].astype(np.float64), GROUPS) - t.group[rows])
                return diff == 0 if what == "exact" else diff <= 1
            ra, rb = right(da), right(db)
            only_a, only_b, p = mcnemar_p(ra, rb)
            print(f"| {what} | {int(ra.sum())} | {int(rb.sum())} | {only_a} | {only_b} | {p:.3f} |")

    if args.write_ranges:
        write_ranges(args.write_ranges, classifiers[0], data[(classifiers[0], "utkface")], truth["utkface"], max_yaw)
    return 0


def write_ranges(path: Path, classifier: str, d: Dict[str, np.ndarray], t: Truth, max_yaw: float) -> None:
    """A calibration file that keeps the network's age and gender (identity maps) and states the
    age range from the quantiles of its utkface_dev errors near each age."""
    rows = labelled_at(d, max_yaw)
    age = np.maximum(d["age_raw"][rows].astype(np.float64), 0.0)
    lower, upper = label_fit.range_table(age, t.lo[rows], RANGE_AGES, RANGE_LEVELS)
    doc = {
        "schema_version": CALIBRATION_SCHEMA,
        "about": f"Label calibration for the {classifier} classifier, applied by streamer/classifiers/calibration.py. "
                 "Written by tools/eval_pipeline.py --write-ranges: the network's own age and gender (identity maps: "
                 "an age map and Platt scaling gained nothing on fairface_dev, docs/accuracy.md), and age ranges from "
                 "the quantiles of its utkface_dev errors near each age (../shared/datasets); numbers only, no images. "
                 "Refit when the detector or the crop changes, and update its sha256 in streamer/data/manifest.json.",
        "fitted_with": {"classifier": classifier, "detector": Config().detector.name,
                        "crop": "aligned on 5 landmarks, padding 0.2", "faces": {"utkface": int(rows.sum())}},
        "age": {"raw_knots": [0.0, 120.0], "knots": [0.0, 120.0]},
        "age_range": {"about": "[age + lower, age + upper]: quantiles of (true - predicted age) among utkface_dev "
                               "faces predicted near each age; rows: levels, columns: ages",
                      "levels": list(RANGE_LEVELS), "ages": list(RANGE_AGES),
                      "lower": [[round(float(v), 3) for v in row] for row in lower],
                      "upper": [[round(float(v), 3) for v in row] for row in upper]},
        "gender": {"platt_a": 1.0, "platt_b": 0.0},
    }
    text = json.dumps(doc, indent=1)
    text = re.sub(r"\[\s*([-0-9.,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text) + "\n"
    tmp = path.with_suffix(".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    print(f"\nwrote {path} sha256 {file_sha256(path)}")


if __name__ == "__main__":
    sys.exit(main())
