"""Label flicker, model calls and identity switches: per-frame classification vs tracked + smoothed.

    python3 bench/flicker.py [--clips carphone tears caminandes] [--modes all tracked]
        [--detector res10|yunet] [--threads N] [--json out/flicker.json]

Flicker rate: of the consecutive frame pairs in which the same face shows labels in both frames,
the share where its shown gender or age group differs. Tracked mode follows track ids; per-frame
mode has none, so faces of consecutive frames are paired greedily by IoU >= 0.3. Target: under 1 %
tracked. Identity switches: distinct confirmed track ids per clip vs the people in it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import (  # noqa: E402
    CLIP_FILES,
    SHARED,
    bench_config,
    clip_path,
    models_env,
    write_json,  # noqa: E402
)

from streamer import app as app_module  # noqa: E402
from streamer.boxes import box_iou  # noqa: E402
from streamer.cli import MODES  # noqa: E402
from streamer.config import MODELS_DIR_ENV, override  # noqa: E402
from streamer.detectors import DETECTORS  # noqa: E402
from streamer.pipeline import build_analyzer  # noqa: E402

MATCH_IOU = 0.3  # boxes of one face in consecutive frames overlap far more; two faces far less
TARGET_FLICKER = 0.01
# People in each clip as a range, for the identity check (tears of steel: two in the lab scene,
# a third seen briefly).
EXPECTED_PEOPLE = {"carphone": (1, 1), "tears": (2, 3), "caminandes": (0, 0)}

def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``xyxy`` boxes (events-file lists)."""
    return float(box_iou(np.asarray(a), np.asarray(b))[0, 0])


def pair_by_iou(prev: List[dict], cur: List[dict], min_iou: float = MATCH_IOU) -> List[Tuple[dict, dict]]:
    """Greedy one-to-one pairs of faces, highest IoU first, each at least ``min_iou``."""
    candidates = sorted(
        ((iou(tuple(p["xyxy"]), tuple(c["xyxy"])), i, j) for i, p in enumerate(prev) for j, c in enumerate(cur)),
        reverse=True,
    )
    used_prev, used_cur, pairs = set(), set(), []
    for overlap, i, j in candidates:
        if overlap < min_iou:
            break
        if i in used_prev or j in used_cur:
            continue
        used_prev.add(i)
        used_cur.add(j)
        pairs.append((prev[i], cur[j]))
    return pairs


def pair_by_track(prev: List[dict], cur: List[dict]) -> List[Tuple[dict, dict]]:
    by_id = {face["track"]: face for face in prev if face.get("track") is not None}
    return [(by_id[face["track"]], face) for face in cur if face.get("track") in by_id]


def flicker(frames: List[List[dict]], tracked: bool) -> Dict[str, object]:
    """Label changes between consecutive frames, over pairs where both faces show labels."""
    pairs = gender_changes = age_changes = any_changes = 0
    for prev, cur in zip(frames, frames[1:]):
        matched = pair_by_track(prev, cur) if tracked else pair_by_iou(prev, cur)
        for a, b in matched:
            if not (a["classified"] and b["classified"]):
                continue
            pairs += 1
            gender = a["gender"] != b["gender"]
            age = a["age_group"] != b["age_group"]
            gender_changes += gender
            age_changes += age
            any_changes += gender or age

    def rate(n: int) -> float:
        return round(n / pairs, 4) if pairs else 0.0

    return {"pairs": pairs, "flicker_rate": rate(any_changes), "gender_flicker_rate": rate(gender_changes),
            "age_flicker_rate": rate(age_changes)}


def read_events(path: Path) -> Tuple[List[List[dict]], List[int]]:
    """Faces of each frame in order, and the ids of confirmed tracks ('new' records)."""
    frames, new_ids = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record.get("event") == "new":
                new_ids.append(record["track"])
            elif "faces" in record:
                frames.append(record["faces"])
    return frames, new_ids


def measure(clip: Path, mode: str, config, analyzer, workdir: Path) -> Dict[str, object]:
    events = workdir / f"{clip.stem}_{mode}.jsonl"
    options = app_module.RunOptions(source=str(clip), output=workdir / f"{clip.stem}_{mode}.mp4", events=events, overwrite=True,
                                    window=False, progress=False)
    summary = app_module.run(override(config, MODES[mode]), options, analyzer=analyzer)
    frames, new_ids = read_events(events)
    n = max(1, summary["frames_out"])
    row = {
        "clip": clip.name,
        "mode": mode,
        "frames": summary["frames_out"],
        "fps": summary["fps"],
        "detector_runs_per_frame": round(summary["analysed"] / n, 3),
        "classified_per_frame": round(summary["faces_classified"] / n, 3),
        **flicker(frames, tracked=mode == "tracked"),
        "confirmed_tracks": len(set(new_ids)) if mode == "tracked" else None,
    }
    return row


def table(rows: List[Dict[str, object]]) -> str:
    lines = [
        "| clip | mode | frames | fps | detect runs/frame | classified/frame | label pairs | flicker | gender "
        "| age group | confirmed ids (expected) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ids = "-" if row["confirmed_tracks"] is None else f"{row['confirmed_tracks']} ({row['expected_people']})"
        lines.append(
            f"| {row['clip']} | {row['mode']} | {row['frames']} | {row['fps']} | {row['detector_runs_per_frame']:.2f} "
            f"| {row['classified_per_frame']:.2f} | {row['pairs']} | {row['flicker_rate']:.2%} "
            f"| {row['gender_flicker_rate']:.2%} | {row['age_flicker_rate']:.2%} | {ids} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=list(CLIP_FILES), help="short names or paths")
    parser.add_argument("--modes", nargs="+", default=["all", "tracked"], choices=sorted(MODES))
    parser.add_argument("--detector", choices=tuple(DETECTORS), help="override detector.name")
    parser.add_argument("--threads", type=int, help="override dnn.threads")
    parser.add_argument("--media", type=Path, default=SHARED / "media")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    os.environ[MODELS_DIR_ENV] = models_env()[MODELS_DIR_ENV]
    config = bench_config(args.detector, args.threads)
    analyzer = build_analyzer(config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="streamer_flicker_") as tmp:
        for name in args.clips:
            clip = clip_path(name, args.media)
            expected = EXPECTED_PEOPLE.get(name)
            for mode in args.modes:
                row = measure(clip, mode, config, analyzer, Path(tmp))
                row["expected_people"] = None if expected is None else (
                    str(expected[0]) if expected[0] == expected[1] else f"{expected[0]}-{expected[1]}")
                rows.append(row)
                print(f"{clip.name}: {mode} flicker {row['flicker_rate']:.2%}", file=sys.stderr)
    print(f"detector {config.detector.name}; target: flicker under {TARGET_FLICKER:.0%} when tracked\n")
    print(table(rows))
    if args.json:
        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
