"""Privacy benchmark: faces that slip through the anonymiser, and what anonymising costs.

    python3 bench/privacy.py [--clips carphone tears whitehouse caminandes] [--anonymize blur]
        [--shape ellipse] [--scale 1.6] [--hold-frames 12] [--repeats 2] [--cost-only]
        [--set KEY=VALUE ...] [--frames-dir out/privacy_frames] [--json out/privacy.json]

For each clip, the app's own run (``app.run``, tracked default config, no window, ``--no-labels``)
is made with ``output.anonymize`` on; a recording worker keeps, per frame, the boxes the
anonymiser masked and the picture it produced. The reference is YuNet (2023mar) at full
resolution on every frame of the INPUT (bench/tracking.py's reference): faces the app's detector
(CenterFace at 320 px on a fraction of the frames) may never have seen. Per reference face:

- masked share: the share of the face's pixels (the ellipse inscribed in its reference box: a
  face is an oval; the box corners are background) inside the mask; "box" uses the whole box;
- a frame LEAKS when any reference face is less than fully masked (share < 1);
- detail: variance of the Laplacian of the output over that of the input, inside the box;
- masks per frame: boxes masked on a frame, on average; on the clip without faces (caminandes)
  every one is a false face: the price of the mask detector's low score.

Cost: the same run with and without ``output.anonymize`` (and an output video, as a user's run
would), alternated ``--repeats`` times in this one process; fps with / fps without, best of each,
and the share of the anonymised run's time spent masking and in the mask detector (p50 ms x runs / elapsed), which
another process's load moves far less than it moves two runs' fps.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence
from unittest import mock

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import (  # noqa: E402
    SHARED,
    bench_config,
    clip_path,
    machine,
    models_env,
    write_json,  # noqa: E402
)
from tracking import MIN_FACE_PX, REAL_CLIPS, reference_truth  # noqa: E402

from streamer import app as app_module  # noqa: E402
from streamer.app import RunOptions  # noqa: E402
from streamer.boxes import box_iou  # noqa: E402
from streamer.config import Config, override  # noqa: E402
from streamer.picture.anonymize import MaskSpec, face_mask  # noqa: E402
from streamer.pipeline import build_analyzer  # noqa: E402
from streamer.worker import Worker  # noqa: E402

DEFAULT_CLIPS = ("carphone", "tears", "whitehouse", "caminandes")
# A face at least this large (shorter side, px) is "a face someone could recognise"; smaller
# reference faces (an audience 15-30 px across) are reported apart.
RECOGNISABLE_PX = MIN_FACE_PX
PERSISTENT_FRAMES = 5


def face_ellipse(shape_hw, xyxy) -> np.ndarray:
    """(H, W) bool: the ellipse inscribed in a reference face box."""
    mask = np.zeros(shape_hw, np.uint8)
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    centre = (int(round((x1 + x2) / 2 * 16)), int(round((y1 + y2) / 2 * 16)))
    axes = (max(1, int(round((x2 - x1) / 2 * 16))), max(1, int(round((y2 - y1) / 2 * 16))))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, cv2.FILLED, cv2.LINE_8, 4)
    return mask > 0


def box_region(shape_hw, xyxy) -> np.ndarray:
    mask = np.zeros(shape_hw, bool)
    h, w = shape_hw
    x1, y1 = max(0, int(np.floor(xyxy[0]))), max(0, int(np.floor(xyxy[1])))
    x2, y2 = min(w, int(np.ceil(xyxy[2]))), min(h, int(np.ceil(xyxy[3])))
    mask[y1:y2, x1:x2] = True
    return mask


def laplacian_var(bgr: np.ndarray, xyxy) -> float:
    h, w = bgr.shape[:2]
    x1, y1 = max(0, int(np.floor(xyxy[0]))), max(0, int(np.floor(xyxy[1])))
    x2, y2 = min(w, int(np.ceil(xyxy[2]))), min(h, int(np.ceil(xyxy[3])))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return float("nan")
    grey = cv2.cvtColor(bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


class _Recorder:
    """What the recording worker saw: per frame, the reference faces' masked shares and detail."""

    def __init__(self, truth, spec: MaskSpec, frames_dir: Optional[Path], tag: str) -> None:
        self.truth, self.spec, self.frames_dir, self.tag = truth, spec, frames_dir, tag
        self.rows: List[dict] = []
        self.worst: Dict[int, float] = {}
        self.masks = 0  # boxes masked, over every frame (on a clip without faces: all of them false)

    def frame(self, index: int, bgr: np.ndarray, out: np.ndarray, boxes: np.ndarray) -> None:
        faces = self.truth[index] if index < len(self.truth) else []
        self.masks += len(boxes)
        mask = face_mask(bgr.shape[:2], boxes, self.spec)
        for face in faces:
            xyxy = face["xyxy"]
            region, box = face_ellipse(bgr.shape[:2], xyxy), box_region(bgr.shape[:2], xyxy)
            share = float(mask[region].mean()) if region.any() else 1.0
            box_share = float(mask[box].mean()) if box.any() else 1.0
            before, after = laplacian_var(bgr, xyxy), laplacian_var(out, xyxy)
            side = min(xyxy[2] - xyxy[0], xyxy[3] - xyxy[1])
            row = {"frame": index, "person": face["person"], "side_px": round(float(side), 1), "share": share,
                   "box_share": box_share, "detail": after / before if before > 0 else float("nan")}
            if share < 1.0:
                near = box_iou(np.asarray(xyxy), boxes)[0] if len(boxes) else np.zeros(0)
                row["reference_xyxy"] = [round(float(v), 1) for v in xyxy]
                row["nearest_mask_xyxy"] = [round(float(v), 1) for v in boxes[int(np.argmax(near))]] if len(near) else None
            self.rows.append(row)
            if share < 1.0 and self.frames_dir is not None and share < self.worst.get(index, 2.0):
                self.worst[index] = share
                canvas = out.copy()
                x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
                cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 0, 255), 1)
                cv2.imwrite(str(self.frames_dir / f"{self.tag}_leak_{index:04d}.png"), canvas)


def recording_worker(recorder: _Recorder):
    class RecordingWorker(Worker):
        def process(self, frame, dropped=0):
            result, annotated = super().process(frame, dropped)
            assert self.anonymizer is not None
            recorder.frame(frame.index, frame.bgr, annotated, self.anonymizer.last_boxes)
            return result, annotated

    return RecordingWorker


def run_once(clip: Path, config: Config, workdir: Path, analyzer, tag: str, worker_cls=None) -> dict:
    options = RunOptions(source=str(clip), output=workdir / f"{tag}.mp4", window=False, progress=False,
                         overwrite=True)
    if worker_cls is None:
        return app_module.run(config, options, analyzer)
    with mock.patch.object(app_module, "Worker", worker_cls):
        return app_module.run(config, options, analyzer)


def summarise_rows(rows: List[dict], frames: int) -> dict:
    def leaks(selected, key="share"):
        return len({r["frame"] for r in selected if r[key] < 1.0})

    big = [r for r in rows if r["side_px"] >= RECOGNISABLE_PX]
    seen: Dict[int, int] = {}
    for r in rows:
        seen[r["person"]] = seen.get(r["person"], 0) + 1
    details = [r["detail"] for r in rows if np.isfinite(r["detail"])]
    return {
        "frames": frames,
        "frames_with_faces": len({r["frame"] for r in rows}),
        "reference_faces": len(rows),
        "faces_40px": len(big),
        "leak_frames": leaks(rows),
        "leak_frames_40px": leaks(big),
        "leak_frames_box": leaks(rows, "box_share"),
        # A reference face seen on fewer frames than this is often a false detection (a robot's
        # face, a fist): listed apart so a reader can look at the frames.
        "leak_frames_persistent": leaks([r for r in rows if seen[r["person"]] >= PERSISTENT_FRAMES]),
        "leaks": [{k: r[k] for k in ("frame", "person", "share", "side_px", "reference_xyxy", "nearest_mask_xyxy")}
                  for r in rows if r["share"] < 1.0],
        "min_share": round(min((r["share"] for r in rows), default=1.0), 3),
        "min_share_40px": round(min((r["share"] for r in big), default=1.0), 3),
        "detail_p50": round(float(np.median(details)), 4) if details else None,
        "detail_max": round(float(np.max(details)), 4) if details else None,
    }


def measure_clip(name: str, clip: Path, base: Config, spec: MaskSpec, repeats: int, workdir: Path,
                 frames_dir: Optional[Path], leaks: bool = True) -> dict:
    config = override(base, {"output.anonymize": spec.mode, "output.anonymize_shape": spec.shape,
                             "output.anonymize_scale": spec.scale, "output.anonymize_hold_frames": spec.hold_frames,
                             "output.labels": False, "output.hud": False, "output.window": False})
    plain = override(base, {"output.labels": False, "output.hud": False, "output.window": False})
    analyzer = build_analyzer(config, None)
    row: dict = {"clip": name}
    if leaks:
        truth, _ = reference_truth(clip, base)
        recorder = _Recorder(truth, spec, frames_dir, name)
        summary = run_once(clip, config, workdir, analyzer, f"{name}_rec", recording_worker(recorder))
        row.update(summarise_rows(recorder.rows, summary["frames_out"]))
        row["masks_per_frame"] = round(recorder.masks / max(1, summary["frames_out"]), 2)
    fps_with, fps_without, anon_ms, mask_ms, shares = [], [], [], [], []
    for _ in range(repeats):
        without = run_once(clip, plain, workdir, analyzer, f"{name}_plain")
        with_ = run_once(clip, config, workdir, analyzer, f"{name}_anon")
        fps_without.append(without["fps"])
        fps_with.append(with_["fps"])
        anon_ms.append(with_["stages"].get("anonymize", {}).get("p50_ms", 0.0))
        # Anonymising's share of the run's time (masking, and the mask detector on its runs), from
        # the run's own stage times: unlike two runs' fps, not moved by what else the machine does.
        spent = sum(stage["p50_ms"] * stage["n"] for stage_name, stage in with_["stages"].items()
                    if stage_name in ("anonymize", "mask_detect"))
        shares.append(spent / (with_["elapsed_s"] * 1000.0) if with_["elapsed_s"] else 0.0)
        mask_ms.append(with_["stages"].get("mask_detect", {}).get("p50_ms", 0.0))
    row.update({"fps_without": max(fps_without, default=None), "fps_with": max(fps_with, default=None),
                "cost_ratio": round(max(fps_with) / max(fps_without), 3) if repeats and max(fps_without) else None,
                "anonymize_p50_ms": round(float(np.median(anon_ms)), 2) if anon_ms else None,
                "mask_detect_p50_ms": round(float(np.median(mask_ms)), 2) if mask_ms else None,
                "anonymize_share": round(float(np.median(shares)), 4) if shares else None})
    return row


def table(rows: Sequence[dict]) -> str:
    lines = ["| clip | frames with faces | reference faces (>= 40 px) | leaked frames (faces >= 40 px) | "
             f"leaked frames, faces seen >= {PERSISTENT_FRAMES} frames | leaked frames, whole box | least masked share (>= 40 px) | detail left p50 / max | "
             "masks per frame | fps without / with | with / without | anonymize p50 ms | mask detector p50 ms | "
             "share of run time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        r = {key: "-" for key in ("frames_with_faces", "frames", "reference_faces", "faces_40px", "leak_frames",
                                  "leak_frames_40px", "leak_frames_persistent", "leak_frames_box", "min_share",
                                  "min_share_40px", "detail_p50", "detail_max", "masks_per_frame")} | r
        lines.append(
            f"| {r['clip']} | {r['frames_with_faces']} / {r['frames']} | {r['reference_faces']} ({r['faces_40px']}) | "
            f"{r['leak_frames']} ({r['leak_frames_40px']}) | {r['leak_frames_persistent']} | {r['leak_frames_box']} | "
            f"{r['min_share']} ({r['min_share_40px']}) | {r['detail_p50']} / {r['detail_max']} | "
            f"{r['masks_per_frame']} | {r['fps_without']} / {r['fps_with']} | {r['cost_ratio']} | {r['anonymize_p50_ms']} | {r.get('mask_detect_p50_ms')} | "
            f"{r['anonymize_share']} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS))
    parser.add_argument("--media", type=Path, default=SHARED / "media")
    parser.add_argument("--anonymize", choices=("blur", "pixelate", "solid"), default="blur")
    defaults = Config().output
    parser.add_argument("--shape", choices=("ellipse", "box"), default=defaults.anonymize_shape)
    parser.add_argument("--scale", type=float, default=defaults.anonymize_scale)
    parser.add_argument("--hold-frames", type=int, default=defaults.anonymize_hold_frames)
    parser.add_argument("--repeats", type=int, default=2, help="alternated runs with and without, for the cost")
    parser.add_argument("--cost-only", action="store_true", help="skip the leak measurement (no reference)")
    parser.add_argument("--frames-dir", type=Path, help="write each leaking frame here as PNG (reference box in red)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for the app's runs, e.g. detector.max_side_px=640 (YAML values)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.update(models_env())
    if args.frames_dir:
        args.frames_dir.mkdir(parents=True, exist_ok=True)
    base = bench_config(None, None)
    if args.set:
        base = override(base, {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)})
    spec = MaskSpec(args.anonymize, args.shape, args.scale, args.hold_frames)
    rows = []
    with tempfile.TemporaryDirectory(prefix="privacy-bench-") as tmp:
        for name in args.clips:
            clip = args.media / REAL_CLIPS[name] if name in REAL_CLIPS else clip_path(name, args.media)
            rows.append(measure_clip(name, clip, base, spec, args.repeats, Path(tmp), args.frames_dir,
                                     not args.cost_only))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(f"\n{spec.mode}, {spec.shape}, scale {spec.scale}, hold {spec.hold_frames} frames; reference YuNet full "
          "resolution every frame; default tracked config, no labels, no HUD\n")
    print(table(rows))
    if args.json:
        write_json(args.json, {"machine": machine(), "spec": dataclasses.asdict(spec),
                                         "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
