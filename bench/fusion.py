"""Per-person labels against single frames and single photos, on a queue of labelled faces.

    python3 bench/fusion.py [--people 12] [--seed 0] [--stay-s 1.0 1.7] [--set KEY=VALUE] [--json out/fusion.json]

Builds a clip in memory: UTKFace chips from ../shared/datasets/utkface_dev (exact ages), each shown
whole (the chip is what the networks were trained on; pasted without its edges a chip loses the
hair and chin the detector needs) on a dark 640x480 frame, one person after another at one spot,
as at a counter. Each person walks in from one side (partly outside the frame at first, smeared by
the walk), stays ``--stay-s`` seconds swaying, tilting the head and coming closer, and walks out;
each has their own light level, sensor noise and webcam JPEG quality, and some frames are blurred.

Runs the tracked worker on the clip (the app's tracker, flow, schedule and fusion) and, on the same
frames, the per-frame analysis; and classifies each chip once as a photo (centred in a black frame
twice its size, as tools/eval_accuracy.py does). Prints, per person, the true age, the fused age,
the single-frame and photo ages; and overall: people counted against people shown, people whose
views went to one track only, the mean per-person age error as a share of the mean single-frame
error (all frames, and only the frames at the spot) and of the photo error (target: <= 0.85),
gender right per person, label flicker and classifier runs per person.
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
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from flicker import flicker  # noqa: E402
from run_bench import write_json  # noqa: E402

from streamer.config import Config, override  # noqa: E402
from streamer.pipeline import FaceAnalyzer, build_analyzer  # noqa: E402
from streamer.tracking.flow import BoxFlow  # noqa: E402
from streamer.tracking.tracker import Tracker  # noqa: E402
from streamer.types import Face, Frame  # noqa: E402
from streamer.worker import Finding, Worker  # noqa: E402

SHARED = Path(os.environ.get("STREAMER_SHARED", REPO.parent / "shared")).resolve()
UTK = SHARED / "datasets" / "utkface_dev"
FPS = 30.0
FRAME_WH = (640, 480)
BACKGROUND_GREY = 35
GAP_FRAMES = 12  # 0.4 s between one person leaving the spot and the next stepping in
# Walking in or out of the spot takes 0.4-0.67 s at 30 fps; the face starts two thirds outside
# the frame. A webcam's exposure is about half the frame time indoors, so a walking face is
# smeared over half its per-frame motion.
WALK_FRAMES = (12, 20)
START_OUTSIDE = 0.67
EXPOSURE_SHARE = 0.5
# At the spot: the chip's side grows from the first range to the second (the person steps
# closer; faces 60-170 px), the head sways a few pixels and rolls a few degrees.
START_SIDE_PX = (80.0, 140.0)
END_SIDE_PX = (140.0, 200.0)
SWAY_PX = 8.0
SWAY_HZ = 0.6
ROLL_DEG = 8.0
# Per person: the light on the face (gain), sensor noise and the webcam's JPEG quality.
GAIN = (0.65, 1.2)
LIGHT_WOBBLE = 0.06  # a flickering or moving light source, +-6 % at 1 Hz
NOISE_SIGMA = (2.0, 7.0)
JPEG_QUALITY = (40, 85)
BLUR_SHARE = 0.15  # frames with extra defocus or shake
PHOTO_FRAME_SCALE = 2.0  # the photo reference: the chip centred in a black frame this many times its size


@dataclass(frozen=True)
class Person:
    file: str
    age: float
    gender: str


@dataclass(frozen=True)
class Shown:
    """Who is on a frame of the clip: ``person`` index (None in the gaps) and ``at_spot``
    (standing there, not walking in or out)."""

    person: Optional[int]
    at_spot: bool


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


def _ease(u: float) -> float:
    """Walking to a stop: fast at first, slowing down (0 -> 1)."""
    return 1.0 - (1.0 - u) ** 2


def queue_frames(
    people: Sequence[Person], seed: int, stay_s: Tuple[float, float] = (1.0, 1.7)
) -> Iterator[Tuple[np.ndarray, Shown]]:
    """Frames (BGR uint8) and who is on them."""
    rng = np.random.default_rng(seed + 1)
    w, h = FRAME_WH
    empty = np.full((h, w, 3), BACKGROUND_GREY, np.uint8)
    for index, person in enumerate(people):
        chip = cv2.imread(str(UTK / person.file)).astype(np.float32)
        walk_in, walk_out = (int(rng.integers(WALK_FRAMES[0], WALK_FRAMES[1] + 1)) for _ in range(2))
        stay = int(round(rng.uniform(*stay_s) * FPS))
        side0, side1 = rng.uniform(*START_SIDE_PX), rng.uniform(*END_SIDE_PX)
        spot = np.array([w / 2 + rng.uniform(-40, 40), h / 2 + rng.uniform(-30, 30)])
        enter_from, leave_to = rng.choice([-1.0, 1.0], 2)
        sway_phase, roll_phase, light_phase = rng.uniform(0, 2 * np.pi, 3)
        roll_deg = rng.uniform(0.3, 1.0) * ROLL_DEG
        gain, sigma = rng.uniform(*GAIN), rng.uniform(*NOISE_SIGMA)
        quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        total = walk_in + stay + walk_out
        previous_x: Optional[float] = None
        for k in range(total):
            t = k / FPS
            if k < walk_in:
                side = side0
                start = (w if enter_from > 0 else 0.0) + enter_from * (START_OUTSIDE - 0.5) * side
                x = start + (spot[0] - start) * _ease(k / walk_in)
            elif k < walk_in + stay:
                side = side0 + (side1 - side0) * (k - walk_in) / stay
                x = spot[0] + SWAY_PX * np.sin(2 * np.pi * SWAY_HZ * t + sway_phase)
            else:
                side = side1
                end = (w if leave_to > 0 else 0.0) + leave_to * 0.5 * side  # just outside the frame
                x = spot[0] + (end - spot[0]) * ((k - walk_in - stay + 1) / walk_out) ** 2
            y = spot[1] + 0.5 * SWAY_PX * np.sin(2 * np.pi * SWAY_HZ * 0.7 * t + sway_phase)
            angle = roll_deg * np.sin(2 * np.pi * 0.4 * t + roll_phase)
            light = gain * (1.0 + LIGHT_WOBBLE * np.sin(2 * np.pi * t + light_phase))
            frame = empty.copy()
            matrix = cv2.getRotationMatrix2D((chip.shape[1] / 2, chip.shape[0] / 2), angle, side / chip.shape[1])
            matrix[:, 2] += (x - chip.shape[1] / 2, y - chip.shape[0] / 2)
            lit = np.clip(chip * light, 0, 255).astype(np.uint8)
            cv2.warpAffine(lit, matrix, (w, h), dst=frame, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_TRANSPARENT)
            smear = 0 if previous_x is None else int(round(EXPOSURE_SHARE * abs(x - previous_x)))
            previous_x = x
            if smear >= 2:
                frame = cv2.blur(frame, (smear, 1))
            if rng.random() < BLUR_SHARE:
                frame = (cv2.GaussianBlur(frame, (0, 0), rng.uniform(1.0, 2.0)) if rng.random() < 0.5
                         else cv2.blur(frame, (int(rng.integers(3, 8)), 1)))
            noise = np.empty(frame.shape, np.int16)
            cv2.randn(noise, 0, sigma)
            frame = cv2.add(frame, noise, dtype=cv2.CV_8U)
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            yield cv2.imdecode(jpeg, cv2.IMREAD_COLOR), Shown(index, walk_in <= k < walk_in + stay)
        for _ in range(GAP_FRAMES):
            yield empty.copy(), Shown(None, False)


def photo_labels(people: Sequence[Person], analyzer: FaceAnalyzer) -> List[Optional[Face]]:
    """Each chip classified once as a photo: the face nearest the centre of a black frame twice
    the chip's size (None when nothing is found)."""
    faces: List[Optional[Face]] = []
    for person in people:
        chip = cv2.imread(str(UTK / person.file))
        dy, dx = (int(round(s * (PHOTO_FRAME_SCALE - 1) / 2)) for s in chip.shape[:2])
        frame = cv2.copyMakeBorder(chip, dy, dy, dx, dx, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        found = [face for face in analyzer.analyse(frame)[0] if face.classified]
        centre = np.array(frame.shape[1::-1], np.float32) / 2
        faces.append(min(found, key=lambda f: float(np.hypot(*(np.add(f.xyxy[:2], f.xyxy[2:]) / 2 - centre))))
                     if found else None)
    return faces


def evaluate(
    people: Sequence[Person], analyzer: FaceAnalyzer, config: Config, seed: int,
    stay_s: Tuple[float, float] = (1.0, 1.7), photo_analyzer: Optional[FaceAnalyzer] = None,
) -> Dict[str, object]:
    """Run the tracked worker and the per-frame analysis on the queue; the per-person rows and the
    overall figures (see the module docstring). ``photo_analyzer``: the photo reference's
    (``build_analyzer(config, photos=True)``); None leaves it out."""
    tracker = Tracker(config.tracking, config.classifier.age_groups)
    worker = Worker(finding=Finding(analyzer, tracker=tracker, flow=BoxFlow(), region_grow=config.tracking.region_grow))
    single: Dict[int, List[Tuple[float, float, bool]]] = {i: [] for i in range(len(people))}
    spans: Dict[int, List[int]] = {}
    shown_faces: List[List[dict]] = []
    ended: List[dict] = []
    for n, (bgr, shown) in enumerate(queue_frames(people, seed, stay_s)):
        result, _ = worker.process(Frame(bgr, n, n / FPS, "queue", n / FPS))
        shown_faces.append([face.to_event() for face in result.faces])
        ended += [record for record in worker.pop_records() if record["event"] == "end"]
        if shown.person is not None:
            spans.setdefault(shown.person, [n, n])[1] = n
            faces, _ = analyzer.analyse(bgr)
            labelled = [face for face in faces if face.classified]
            if labelled:
                face = labelled[0]
                single[shown.person].append((float(face.age), 1.0 if face.gender == "male" else 0.0, shown.at_spot))
    ended += [record for record in worker.finish() if record["event"] == "end"]
    photos = photo_labels(people, photo_analyzer) if photo_analyzer is not None else [None] * len(people)
    owners = _track_owners(ended, spans)
    rows = []
    for i, person in enumerate(people):
        track = _track_of(ended, spans[i])
        fused = None if track is None or track["age"] is None else float(track["age"])
        ages = np.array([a for a, _, _ in single[i]])
        at_spot = np.array([a for a, _, spot in single[i] if spot])
        males = np.array([m for _, m, _ in single[i]])
        photo = photos[i]
        rows.append({
            "file": person.file, "age": person.age, "gender": person.gender,
            "fused_age": fused, "fused_gender": None if track is None else track["gender"],
            "track": None if track is None else track["track"],
            "track_people": None if track is None else owners[track["track"]],
            "tracks": sum(1 for record in ended if _overlap(record, spans[i]) > 0),
            "samples": None if track is None else track["samples"],
            "single_frames": len(ages),
            "single_median_age": float(np.median(ages)) if len(ages) else None,
            "single_mean_error": float(np.mean(np.abs(ages - person.age))) if len(ages) else None,
            "spot_mean_error": float(np.mean(np.abs(at_spot - person.age))) if len(at_spot) else None,
            "single_gender_right": float(np.mean((males >= 0.5) == (person.gender == "male"))) if len(males) else None,
            "photo_age": None if photo is None or photo.age is None else float(photo.age),
            "photo_gender": None if photo is None else photo.gender,
        })
    summary = _summary(rows, people, ended)
    summary["flicker"] = flicker(shown_faces, tracked=True)
    summary["classified_per_person"] = round(worker.stats.faces_classified / max(1, len(people)), 2)
    return {**summary, "rows": rows}


def _summary(rows: List[dict], people: Sequence[Person], ended: List[dict]) -> Dict[str, object]:
    def ratio(reference: str) -> Optional[float]:
        scored = [r for r in rows if r["fused_age"] is not None and r[reference] is not None]
        if not scored:
            return None
        fused = np.mean([abs(r["fused_age"] - r["age"]) for r in scored])
        return round(float(fused / np.mean([r[reference] for r in scored])), 3)

    for row in rows:
        row["fused_error"] = None if row["fused_age"] is None else abs(row["fused_age"] - row["age"])
        row["photo_error"] = None if row["photo_age"] is None else abs(row["photo_age"] - row["age"])
    fused_rows = [r for r in rows if r["fused_gender"] is not None]
    photo_rows = [r for r in rows if r["photo_gender"] is not None]
    single_rows = [r for r in rows if r["single_gender_right"] is not None]
    return {
        "people_shown": len(people),
        "people_counted": len(ended),
        "people_with_one_track": sum(1 for r in rows if r["tracks"] == 1 and r["track_people"] == 1),
        "fused_over_single_error": ratio("single_mean_error"),
        "fused_over_spot_error": ratio("spot_mean_error"),
        "fused_over_photo_error": ratio("photo_error"),
        "fused_mean_error": _mean([r["fused_error"] for r in rows]),
        "single_mean_error": _mean([r["single_mean_error"] for r in rows]),
        "photo_mean_error": _mean([r["photo_error"] for r in rows]),
        "gender_right_fused": _mean([float(r["fused_gender"] == r["gender"]) for r in fused_rows]),
        "gender_right_single": _mean([r["single_gender_right"] for r in single_rows]),
        "gender_right_photo": _mean([float(r["photo_gender"] == r["gender"]) for r in photo_rows]),
    }


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 3) if kept else None


def _overlap(record: dict, span: Sequence[int]) -> int:
    return min(record["last_frame"], span[1]) - max(record["first_frame"], span[0]) + 1


def _track_of(tracks: List[dict], span: Sequence[int]) -> Optional[dict]:
    """The person's track: the one in view longest while they were."""
    best, most = None, 0
    for record in tracks:
        shared = _overlap(record, span)
        if shared > most:
            best, most = record, shared
    return best


def _track_owners(tracks: List[dict], spans: Dict[int, List[int]]) -> Dict[int, int]:
    """Track id -> how many people it was the track of (1 when the tracker kept people apart)."""
    owners = {record["track"]: 0 for record in tracks}
    for span in spans.values():
        track = _track_of(tracks, span)
        if track is not None:
            owners[track["track"]] += 1
    return owners


def _fmt(value: Optional[float], spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stay-s", type=float, nargs=2, default=(1.0, 1.7), metavar=("MIN", "MAX"),
                        help="seconds each person stands at the spot (drawn per person)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. tracking.classify_every_frames=5 (YAML values)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("STREAMER_MODELS_DIR", os.pathsep.join([str(SHARED / "models"), str(REPO / "models")]))
    config = Config()
    if args.set:
        config = override(config, {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)})
    people = pick_people(args.people, args.seed)
    result = evaluate(people, build_analyzer(config), config, args.seed, tuple(args.stay_s),
                      build_analyzer(config, photos=True))
    print("| person | true age | fused age | samples | median single-frame age | mean single-frame error | photo age |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in result["rows"]:
        print(f"| {row['file'][:24]} | {row['age']:.0f} | {_fmt(row['fused_age'])} | {_fmt(row['samples'], 'd')} "
              f"| {_fmt(row['single_median_age'])} | {_fmt(row['single_mean_error'])} | {_fmt(row['photo_age'])} |")
    print(f"\npeople counted {result['people_counted']} / shown {result['people_shown']}, "
          f"{result['people_with_one_track']} with a track of their own")
    print(f"mean age error: per person {_fmt(result['fused_mean_error'], '.2f')}, single frame "
          f"{_fmt(result['single_mean_error'], '.2f')}, photo {_fmt(result['photo_mean_error'], '.2f')}")
    print(f"per-person error / single-frame error: {result['fused_over_single_error']} (all frames), "
          f"{result['fused_over_spot_error']} (at the spot); / photo error: {result['fused_over_photo_error']}")
    print(f"gender right: per person {_fmt(result['gender_right_fused'], '.1%')}, single frame "
          f"{_fmt(result['gender_right_single'], '.1%')}, photo {_fmt(result['gender_right_photo'], '.1%')}")
    print(f"label flicker {result['flicker']['flicker_rate']:.2%} over {result['flicker']['pairs']} pairs; "
          f"classifier runs per person {result['classified_per_person']}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
