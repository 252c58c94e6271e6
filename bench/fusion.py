"""Per-person labels against single frames, on a queue of labelled faces.

    python3 bench/fusion.py [--people 12] [--seed 0] [--json out/fusion.json]

Builds a clip in memory: UTKFace chips from ../shared/datasets/utkface_dev (exact ages), each shown
whole (the chip is what the networks were trained on; pasted without its edges a chip loses the
hair and chin the detector needs) for 1-2 s at one spot of a dark 640x480 frame, drifting, growing,
blurred now and then and noisy, one after another with a short gap, as at a counter. Runs the
tracked worker on it (the app's tracker, flow and fusion) and, on the same frames, the per-frame
analysis. Prints, per person: the true age, the fused age and the median of the single-frame ages,
and overall: people counted against people shown, and the mean per-person error as a share of the
mean single-frame error (target: <= 0.85).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from run_bench import write_json  # noqa: E402

from streamer.config import Config  # noqa: E402
from streamer.pipeline import FaceAnalyzer, build_analyzer  # noqa: E402
from streamer.tracking.flow import BoxFlow  # noqa: E402
from streamer.tracking.tracker import Tracker  # noqa: E402
from streamer.types import Frame  # noqa: E402
from streamer.worker import Finding, Worker  # noqa: E402

SHARED = Path(os.environ.get("STREAMER_SHARED", REPO.parent / "shared")).resolve()
UTK = SHARED / "datasets" / "utkface_dev"
FPS = 30.0
FRAME_WH = (640, 480)
BACKGROUND_GREY = 35
GAP_FRAMES = 12  # 0.4 s between one person leaving the spot and the next stepping in


@dataclass(frozen=True)
class Person:
    file: str
    age: float
    gender: str


def pick_people(n: int, seed: int) -> List[Person]:
    """``n`` people spread over the ages (one per age band in turn), both genders."""
    with open(UTK / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(seed)
    bands = sorted({row["age_group"] for row in rows}, key=lambda g: int(g.split("-")[0].rstrip("+")))
    people = []
    for i in range(n):
        band = bands[i % len(bands)]
        gender = ("male", "female")[i % 2]
        pool = [row for row in rows if row["age_group"] == band and row["gender"] == gender]
        row = pool[int(rng.integers(len(pool)))]
        people.append(Person(row["file"], float(row["age"]), row["gender"]))
    return people


def queue_frames(people: Sequence[Person], seed: int) -> Iterator[Tuple[np.ndarray, Optional[int]]]:
    """Frames (BGR uint8) and the index of the person in view (None in the gaps)."""
    rng = np.random.default_rng(seed + 1)
    w, h = FRAME_WH
    for index, person in enumerate(people):
        chip = cv2.imread(str(UTK / person.file))
        frames = int(rng.integers(int(FPS), int(2 * FPS)))
        start_side, end_side = rng.uniform(140, 170), rng.uniform(170, 210)
        cx0, cy0 = w / 2 + rng.uniform(-30, 30), h / 2 + rng.uniform(-20, 20)
        drift = rng.uniform(-1.5, 1.5, 2)
        for k in range(frames):
            side = start_side + (end_side - start_side) * k / frames
            cx, cy = cx0 + drift[0] * k, cy0 + drift[1] * k
            frame = np.full((h, w, 3), BACKGROUND_GREY, np.uint8)
            scale = side / chip.shape[1]
            matrix = np.float32([[scale, 0, cx - side / 2], [0, scale, cy - side / 2]])
            cv2.warpAffine(chip, matrix, (w, h), dst=frame, borderMode=cv2.BORDER_TRANSPARENT)
            if rng.random() < 0.2:  # motion blur now and then
                frame = cv2.blur(frame, (int(rng.integers(3, 8)), 1))
            noise = rng.normal(0, 4, frame.shape)
            yield np.clip(frame + noise, 0, 255).astype(np.uint8), index
        for _ in range(GAP_FRAMES):
            yield np.full((h, w, 3), BACKGROUND_GREY, np.uint8), None


def evaluate(people: Sequence[Person], analyzer: FaceAnalyzer, config: Config, seed: int) -> Dict[str, object]:
    tracker = Tracker(config.tracking, config.classifier.age_groups)
    worker = Worker(finding=Finding(analyzer, tracker=tracker, flow=BoxFlow(), region_grow=config.tracking.region_grow))
    single: Dict[int, List[float]] = {i: [] for i in range(len(people))}
    ended: List[dict] = []
    for n, (bgr, who) in enumerate(queue_frames(people, seed)):
        worker.process(Frame(bgr, n, n / FPS, "queue", n / FPS))
        ended += [record for record in worker.pop_records() if record["event"] == "end"]
        if who is not None:
            faces, _ = analyzer.analyse(bgr)
            ages = [face.age for face in faces if face.classified]
            if ages:
                single[who].append(float(ages[0]))
    ended += [record for record in worker.finish() if record["event"] == "end"]
    tracks = [record for record in ended if record["age"] is not None]
    rows = []
    for i, person in enumerate(people):
        # The person's track: the labelled one that was in view while they were.
        fused = _fused_age(tracks, i, people, seed)
        median = float(np.median(single[i])) if single[i] else None
        errors = [abs(a - person.age) for a in single[i]]
        rows.append({
            "file": person.file, "age": person.age, "gender": person.gender,
            "fused_age": fused, "single_median_age": median,
            "single_mean_error": float(np.mean(errors)) if errors else None,
            "fused_error": None if fused is None else abs(fused - person.age),
            "single_frames": len(single[i]),
        })
    scored = [r for r in rows if r["fused_error"] is not None and r["single_mean_error"] is not None]
    ratio = (
        float(np.mean([r["fused_error"] for r in scored]) / np.mean([r["single_mean_error"] for r in scored]))
        if scored else None
    )
    return {"people_shown": len(people), "people_counted": len(ended), "rows": rows,
            "fused_over_single_error": ratio}


def _fused_age(tracks, index: int, people: Sequence[Person], seed: int) -> Optional[float]:
    span = _spans(people, seed)[index]
    best, overlap = None, 0
    for record in tracks:
        shared = min(record["last_frame"], span[1]) - max(record["first_frame"], span[0])
        if shared > overlap:
            best, overlap = record, shared
    return None if best is None else float(best["age"])


def _spans(people: Sequence[Person], seed: int) -> List[Tuple[int, int]]:
    spans, start, current = [], 0, None
    for n, (_, who) in enumerate(queue_frames(people, seed)):
        if who != current:
            if current is not None:
                spans.append((start, n - 1))
            start, current = n, who
    if current is not None:
        spans.append((start, n))
    return [span for span in spans]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("STREAMER_MODELS_DIR", os.pathsep.join([str(SHARED / "models"), str(REPO / "models")]))
    config = Config()
    people = pick_people(args.people, args.seed)
    result = evaluate(people, build_analyzer(config), config, args.seed)
    print("| person | true age | fused age | median single-frame age | mean single-frame error |")
    print("|---|---:|---:|---:|---:|")
    for row in result["rows"]:
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"| {row['file'][:24]} | {row['age']:.0f} | {fmt(row['fused_age'])} | {fmt(row['single_median_age'])} "
              f"| {fmt(row['single_mean_error'])} |")
    print(f"\npeople counted {result['people_counted']} / shown {result['people_shown']}; "
          f"per-person error / single-frame error: {result['fused_over_single_error']}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
