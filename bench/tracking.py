"""Tracking benchmark: the boxes and ids the app shows, against ground truth, in each mode.

    python3 bench/tracking.py [--synthetic crossing enter_pause_leave queue group] [--seed 0]
        [--clips carphone tears whitehouse caminandes] [--modes all gated tracked]
        [--detectors centerface res10 ...] [--opencv4-python PATH] [--quick] [--json out/tracking.json]

Every mode is a fresh ``run.py --source CLIP --mode M --no-window --events ...`` process (the app's
public path, via run_bench.run_mode), so the figures hold for whatever detector and tracker the
app has. Its events are matched, frame by frame, to the truth:

- synthetic clips (bench/synthetic.py): the pasted faces' boxes and person ids;
- the real clips: a reference made here, YuNet (2023mar) at full resolution on every frame, its
  boxes linked into reference people by overlap (no human ground truth exists for them).

Faces count when visible and at least MIN_FACE_PX on their shorter side; a shown box matching a
face that does not count (too small, mostly hidden or cut by the edge), or itself smaller than
MIN_FACE_PX, is neither right nor wrong. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic  # noqa: E402
from flicker import flicker, iou, pair_by_iou  # noqa: E402
from run_bench import (  # noqa: E402
    CLIP_FILES,
    SHARED,
    bench_config,
    clip_path,
    machine,
    models_env,
    opencv4_python,
    run_mode,
    run_original,
    write_config,
    write_json,  # noqa: E402
)

from streamer.cli import MODES  # noqa: E402
from streamer.config import MODELS_DIR_ENV, override  # noqa: E402
from streamer.detectors import DETECTORS  # noqa: E402
from streamer.detectors.res10 import Res10Detector  # noqa: E402
from streamer.detectors.yunet import YuNetDetector  # noqa: E402
from streamer.models.store import ModelStore  # noqa: E402
from streamer.pipeline import build_detector  # noqa: E402

REAL_CLIPS = {**CLIP_FILES, "whitehouse": "whitehouse_hamilton_short_clip.mp4"}
MATCH_IOU = 0.4  # a shown box and a true face are the same face at this overlap
MIN_FACE_PX = 40  # faces smaller than this (shorter side) are not counted either way
REFERENCE_DETECTOR = "yunet"
REFERENCE_MAX_SIDE_PX = 4096  # no downscaling: the reference sees every pixel of the frame
REFERENCE_LINK_IOU = 0.3  # every-frame boxes of one face overlap far more from frame to frame
REFERENCE_LINK_GAP = 5  # frames a reference face may be missed and still keep its person
REFERENCE_MIN_FRAMES = 15  # reference people seen for less (0.5 s) are not counted as people
QUICK_FRAMES = 90  # --quick: synthetic clips cut to 3 s

Truth = List[List[dict]]  # per frame: {"person", "xyxy", "counts"}


# -- truth ---------------------------------------------------------------------------------------


def _counts(xyxy: Sequence[float], visible: bool = True) -> bool:
    return visible and min(xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]) >= MIN_FACE_PX


def synthetic_truth(frames: List[List[synthetic.GtFace]]) -> Truth:
    return [[{"person": f.person, "xyxy": list(f.xyxy), "counts": _counts(f.xyxy, f.visible)} for f in faces]
            for faces in frames]


def reference_truth(clip: Path, config) -> Tuple[Truth, dict]:
    """YuNet at full resolution on every frame of ``clip``; boxes linked into people by overlap
    with the same person's box in the last REFERENCE_LINK_GAP frames."""
    config = override(config, {"detector.name": REFERENCE_DETECTOR, "detector.max_side_px": REFERENCE_MAX_SIDE_PX,
                               "detector.score": None, "detector.fallback": None})
    detector = build_detector(config, ModelStore.from_config(config.models))
    capture = cv2.VideoCapture(str(clip))
    truth: Truth = []
    last: Dict[int, Tuple[int, List[float]]] = {}  # person -> (frame, box)
    next_id = 1
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            index = len(truth)
            faces = [{"xyxy": [float(v) for v in box]} for box in detector.detect(bgr).xyxy]
            alive = [{"person": p, "xyxy": box} for p, (seen, box) in last.items() if index - seen <= REFERENCE_LINK_GAP]
            for previous, face in pair_by_iou(alive, faces, REFERENCE_LINK_IOU):
                face["person"] = previous["person"]
            for face in faces:
                if "person" not in face:
                    face["person"], next_id = next_id, next_id + 1
                face["counts"] = _counts(face["xyxy"])
                last[face["person"]] = (index, face["xyxy"])
            truth.append(faces)
    finally:
        capture.release()
    return truth, {"reference": f"{REFERENCE_DETECTOR} full resolution, every frame"}


# -- scoring -------------------------------------------------------------------------------------


def read_events(path: Path) -> Tuple[List[dict], List[int]]:
    """Per-frame records (in frame order) and the ids of confirmed tracks ('new' records)."""
    frames, new_ids = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record.get("event") == "new":
                new_ids.append(record["track"])
            elif "faces" in record:
                frames.append(record)
    return frames, new_ids


def score(truth: Truth, frames: List[dict], new_ids: Optional[List[int]] = None) -> Dict[str, object]:
    """Precision, recall, id switches and ids per person of the shown boxes (``frames``: event
    records with ``faces`` and ``stale``) against ``truth`` (per frame: person, xyxy, counts)."""
    tp = fp = fn = fp_stale = stale_frames = 0
    ious: List[float] = []
    fp_per_frame, fn_per_frame = [], []
    track_of: Dict[int, int] = {}  # person -> last matched track id
    switches = 0
    switch_frames: List[int] = []
    ids_of: Dict[int, set] = defaultdict(set)
    people_of: Dict[int, set] = defaultdict(set)  # track -> persons it was matched to
    counted_people = set()
    for index, faces in enumerate(truth):
        record = frames[index] if index < len(frames) else {"faces": [], "stale": False}
        shown = record["faces"]
        stale_frames += bool(record.get("stale"))
        counted = [face for face in faces if face["counts"]]
        ignored = [face for face in faces if not face["counts"]]
        counted_people.update(face["person"] for face in counted)
        hits = pair_by_iou(counted, shown, MATCH_IOU)
        rest = [box for box in shown if all(box is not b for _, b in hits)]
        excused = pair_by_iou(ignored, rest, MATCH_IOU)
        wrong = [box for box in rest if all(box is not b for _, b in excused) and _counts(box["xyxy"])]
        tp += len(hits)
        fn += len(counted) - len(hits)
        fp += len(wrong)
        fp_stale += len(wrong) if record.get("stale") else 0
        fp_per_frame.append(len(wrong))
        fn_per_frame.append(len(counted) - len(hits))
        ious.extend(iou(tuple(g["xyxy"]), tuple(b["xyxy"])) for g, b in hits)
        for face, box in hits + excused:
            track = box.get("track")
            if track is None:
                continue
            person = face["person"]
            if person in track_of and track_of[person] != track:
                switches += 1
                switch_frames.append(index)
            track_of[person] = track
            ids_of[person].add(track)
            people_of[track].add(person)
    tracked = bool(ids_of)
    per_person = [len(ids) for ids in ids_of.values()]
    return {
        "frames": len(truth),
        "true_faces": tp + fn,
        "shown_boxes": tp + fp,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "false_boxes": fp,
        "false_boxes_on_stale_frames": fp_stale,
        "stale_frames": stale_frames,
        "mean_iou": round(float(np.mean(ious)), 3) if ious else None,
        "id_switches": switches if tracked else None,
        "ids_per_person_mean": round(float(np.mean(per_person)), 2) if tracked else None,
        "ids_per_person_max": max(per_person) if tracked else None,
        "merged_ids": sum(len(p) > 1 for p in people_of.values()) if tracked else None,
        "true_people": len(counted_people),
        "reported_people": None if new_ids is None else len(set(new_ids)),
        "switch_frames": switch_frames,
        "false_boxes_per_frame": _runs(fp_per_frame),
        "missed_faces_per_frame": _runs(fn_per_frame),
    }


def _runs(values: List[int]) -> List[List[int]]:
    """Frame ranges with a nonzero count: [[first, last, max count], ...], for the JSON."""
    runs: List[List[int]] = []
    for index, value in enumerate(values):
        if value and runs and runs[-1][1] == index - 1:
            runs[-1][1] = index
            runs[-1][2] = max(runs[-1][2], value)
        elif value:
            runs.append([index, index, value])
    return runs


# -- runs ----------------------------------------------------------------------------------------


def measure_clip(name: str, clip: Path, truth: Truth, truth_info: dict, modes: Sequence[str],
                 configs: Dict[str, Path], workdir: Path, original: Optional[Path]) -> List[Dict[str, object]]:
    """Every mode of every detector (``configs``: detector -> config file) on ``clip``, scored
    against ``truth``; the original design's script once, for the speed ratios."""
    rows = []
    original_fps = None
    if original is not None:
        original_fps = run_original(clip, original, Res10Detector.DEFAULT_SCORE, workdir)["fps"]
        print(f"{name}: original design {original_fps} fps", file=sys.stderr)
    for detector, config_path in configs.items():
        for mode in modes:
            run_dir = workdir / detector
            run_dir.mkdir(exist_ok=True)
            run = run_mode(clip, mode, config_path, run_dir)
            frames, new_ids = read_events(run_dir / f"{clip.stem}_{mode}.jsonl")
            row: Dict[str, object] = {"clip": name, "detector": detector, "mode": mode, **truth_info,
                                      "fps": run["fps"], "detector_runs_per_frame": run["detector_runs_per_frame"],
                                      "original_fps": original_fps,
                                      "x_original": round(run["fps"] / original_fps, 2) if original_fps else None}
            row.update(score(truth, frames, new_ids if mode == "tracked" else None))
            row.update(flicker([record["faces"] for record in frames], tracked=mode == "tracked"))
            rows.append(row)
            print(f"{name}: {detector} {mode} precision {row['precision']:.3f} recall {row['recall']:.3f} "
                  f"switches {row['id_switches']} {run['fps']} fps", file=sys.stderr)
    return rows


def _fmt(value, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def table(rows: List[Dict[str, object]]) -> str:
    lines = [
        "| clip | detector | mode | frames | precision | recall | false boxes (on stale frames) | mean IoU | id switches "
        "| ids per person (max) | people reported / true | flicker | detect runs/frame | fps | x original |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clip']} | {r['detector']} | {r['mode']} | {r['frames']} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['false_boxes']} ({r['false_boxes_on_stale_frames']}) | {_fmt(r['mean_iou'], '.2f')} "
            f"| {_fmt(r['id_switches'])} | {_fmt(r['ids_per_person_mean'], '.2f')} ({_fmt(r['ids_per_person_max'])}) "
            f"| {_fmt(r['reported_people'])} / {r['true_people']} | {r['flicker_rate']:.1%} "
            f"| {r['detector_runs_per_frame']:.2f} | {r['fps']:.1f} | {_fmt(r['x_original'], '.2f')} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", nargs="*", default=list(synthetic.SCENARIOS), choices=sorted(synthetic.SCENARIOS),
                        help="synthetic scenarios (none: skip)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic clips' seed")
    parser.add_argument("--frames", type=int, help="cut synthetic clips to this many frames")
    parser.add_argument("--clips", nargs="*", help="real clips: short names (" + ", ".join(REAL_CLIPS) + ") or paths; "
                        "none: skip (default: all, --quick: carphone)")
    parser.add_argument("--modes", nargs="+", default=["all", "gated", "tracked"], choices=sorted(MODES))
    parser.add_argument("--detectors", nargs="+", choices=tuple(DETECTORS), help="run the modes with each of "
                        "these detector.name (default: config.yaml's)")
    parser.add_argument("--threads", type=int, help="override dnn.threads")
    parser.add_argument("--opencv4-python", type=Path, help="interpreter with OpenCV 4.x for the original design's "
                        "script (default: $STREAMER_OPENCV4_PYTHON, then .venv-opencv4)")
    parser.add_argument("--no-original", action="store_true", help="skip the original design's speed run")
    parser.add_argument("--quick", action="store_true", help=f"synthetic clips cut to {QUICK_FRAMES} frames, "
                        "real clips: carphone only")
    parser.add_argument("--media", type=Path, default=SHARED / "media")
    parser.add_argument("--keep", type=Path, help="keep clips, truth, events and videos in this folder")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    if args.clips is None:
        args.clips = ["carphone"] if args.quick else list(REAL_CLIPS)
    frames_limit = args.frames or (QUICK_FRAMES if args.quick else None)
    os.environ[MODELS_DIR_ENV] = models_env()[MODELS_DIR_ENV]  # the in-process reference detector
    configs = {name: bench_config(name, args.threads) for name in (args.detectors or [None])}
    configs = {config.detector.name: config for config in configs.values()}
    original = None if args.no_original else opencv4_python(args.opencv4_python)
    if original is None and not args.no_original:
        print("no OpenCV 4.x interpreter found (--opencv4-python): skipping the original design's speed run",
              file=sys.stderr)
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="streamer_tracking_") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        paths = {name: write_config(config, workdir / f"tracking_{name}.yaml") for name, config in configs.items()}
        for scenario in args.synthetic:
            clip = synthetic.SyntheticClip(scenario, args.seed, frames_limit)
            video, truth_path = synthetic.write_clip(clip, workdir)
            _, gt = synthetic.read_truth(truth_path)
            rows += measure_clip(clip.name, video, synthetic_truth(gt), {"truth": "synthetic"}, args.modes,
                                 paths, workdir, original)
        for name in args.clips:
            clip_file = clip_path(name, args.media) if name not in REAL_CLIPS else args.media / REAL_CLIPS[name]
            truth, info = reference_truth(clip_file, next(iter(configs.values())))
            rows += measure_clip(clip_file.stem, clip_file, truth, {"truth": info["reference"]}, args.modes,
                                 paths, workdir, original)
    print(f"machine: {machine()}; detectors {', '.join(configs)} (config.yaml settings otherwise); "
          f"faces >= {MIN_FACE_PX} px, IoU >= {MATCH_IOU}; real clips against {REFERENCE_DETECTOR} at full "
          f"resolution on every frame (score >= {YuNetDetector.DEFAULT_SCORE}); x original: fps over the original "
          f"design's script (res10 300x300 + Levi-Hassner 227x227 per face, OpenCV 4.x) on the same clip\n")
    print(table(rows))
    if args.json:
        write_json(args.json, {"machine": machine(), "detectors": list(configs), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
