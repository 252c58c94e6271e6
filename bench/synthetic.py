"""Synthetic clips with ground truth for the tracking benchmark: real faces moving over a background.

    python3 bench/synthetic.py --out out/synthetic [--scenarios crossing queue] [--seed 0] [--frames N]

Each clip is 640x480 at 30 fps. People are real faces cropped (with hair and shoulders) from the
shared photos and, for labelled people, UTKFace chips; each is pasted through a soft elliptical
mask onto a blurred frame of Caminandes (which has no human faces) and moves along a scripted
path: crossing, entering and leaving the frame, pausing, coming closer, and a queue where one
person steps into the spot another has just left. Everything is deterministic from the seed.

Ground truth per frame: for every person pasted at least partly in the frame, its id, the face
box (``xyxy``, frame pixels, clipped to the frame: empty when only the shoulders are in), the
pasted region, and ``visible``:
at least half of the face box is in the frame and not covered by a person pasted in front.
Each person also carries its source file, and age and gender where the source has labels
(UTKFace; the photos have none), for the age/gender work.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import SHARED  # noqa: E402

FRAME_WH = (640, 480)
FPS = 30.0
SCENARIO_FRAMES = 240  # 8 s: long enough for tracks to confirm, coast, end and be replaced
BACKGROUND_CLIP = "blender_caminandes_10s.mp4"  # no human faces: any box on it is a false one
BACKGROUND_FRAME = 120
BACKGROUND_BLUR_SIGMA = 2.0  # out of focus behind the people, as a webcam sees a room
NOISE_SIGMA = 1.5  # sensor noise, well under the motion gate's threshold of 25 grey levels
NOISE_FRAMES = 7  # noise patterns cycled through the clip
# Sprite = face box plus this margin per side (fraction of the face box): hair, ears, shoulders.
# Detectors need that context to fire; the elliptical mask then trims the corners, where a
# neighbour's face could sit in a group photo.
SPRITE_MARGIN = 0.45
SPRITE_FACE_MAX_PX = 200.0  # sources are stored at most this large (the scenarios need <= ~160)
MASK_FEATHER = 0.12  # soft edge of the ellipse, as a fraction of the sprite's shorter side
VISIBLE_FRACTION = 0.5  # share of the face box that must be in frame and uncovered

# Faces in the shared photos: YuNet (2023mar) boxes at full resolution (women_on_phones at half,
# mapped back), each checked by eye. The fifth face of the meeting photo (cut by the top edge,
# looking down) is left out.
PHOTO_FACES: Tuple[Tuple[str, Tuple[int, int, int, int]], ...] = (
    ("pexels_group_meeting_1080865.jpeg", (165, 245, 296, 415)),
    ("pexels_group_meeting_1080865.jpeg", (312, 9, 430, 158)),
    ("pexels_group_meeting_1080865.jpeg", (951, 289, 1099, 463)),
    ("pexels_group_meeting_1080865.jpeg", (626, 69, 747, 233)),
    ("skimage_astronaut.png", (178, 63, 268, 176)),
    ("pexels_women_on_phones.jpg", (2288, 152, 2716, 736)),
    ("pexels_women_on_phones.jpg", (564, 674, 710, 856)),  # out of focus: a hard face
)
UTK_DIR = "datasets/utkface_dev"
# UTKFace chips are cropped from the eyebrows to the chin; the face box is the chip less thin side
# strips (YuNet's box on a padded chip runs from ~5 % to ~92 % of the width and above the chip).
UTK_FACE_BOX_FRAC = (0.05, 0.0, 0.93, 0.97)
UTK_MIN_SHARPNESS = 60.0  # variance of the Laplacian: skips the blurriest chips
UTK_AGES = (18, 75)  # adults, whom the people-counting use case sees

Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class Person:
    """One synthetic person: where its face comes from and, when known, its labels."""

    id: int
    source: str  # file name under ../shared (media/... or datasets/utkface_dev/...)
    face_box_px: Tuple[int, int, int, int]  # xyxy of the face in the source image
    age: Optional[int] = None
    gender: Optional[str] = None


@dataclass(frozen=True)
class Key:
    """A path key: at ``frame``, the face centre is at ``centre_xy`` (frame px) and the face is
    ``size_px`` across (sqrt of the face box area)."""

    frame: int
    centre_xy: Tuple[float, float]
    size_px: float


@dataclass(frozen=True)
class GtFace:
    """Ground truth for one person in one frame. ``xyxy``: face box, frame pixels, clipped to the
    frame; ``paste_xyxy``: where the sprite went (clipped); ``visible``: see module docstring."""

    person: int
    xyxy: Box
    paste_xyxy: Box
    visible: bool


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    paths: Tuple[Tuple[Key, ...], ...]  # one path per person, keys in frame order


def _k(frame: int, x: float, y: float, size: float) -> Key:
    return Key(frame, (float(x), float(y)), float(size))


# Paths on a 640x480 frame over SCENARIO_FRAMES frames. A person exists from its first key to its
# last; off-frame keys (x < 0 or > 640) make it walk in or out.
SCENARIOS: Dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "crossing",
            "two people walk across each other (the nearer one hides the other), a third stands, then comes closer",
            (
                (_k(0, -70, 210, 85), _k(239, 710, 230, 85)),
                (_k(0, 710, 250, 110), _k(239, -70, 240, 110)),
                (_k(0, 520, 120, 60), _k(140, 520, 125, 60), _k(220, 470, 250, 150), _k(239, 470, 250, 150)),
            ),
        ),
        Scenario(
            "enter_pause_leave",
            "one walks in, stops for two seconds and walks out; another comes in small and grows",
            (
                (_k(0, -70, 300, 100), _k(60, 260, 260, 100), _k(120, 262, 258, 100), _k(180, 710, 240, 95)),
                (_k(30, 600, 90, 45), _k(120, 520, 150, 70), _k(200, 420, 260, 130), _k(239, 380, 300, 140)),
            ),
        ),
        Scenario(
            "queue",
            "a queue at a counter: A leaves the spot, B steps into it half a second later, then C after B",
            (
                (_k(0, 320, 220, 110), _k(70, 322, 218, 110), _k(85, 720, 230, 110)),
                (_k(0, 450, 170, 55), _k(80, 452, 168, 55), _k(100, 320, 220, 110), _k(170, 318, 221, 110),
                 _k(185, -80, 230, 110)),
                (_k(60, 710, 170, 55), _k(90, 560, 170, 55), _k(170, 561, 170, 56), _k(200, 320, 220, 110),
                 _k(239, 321, 219, 110)),
            ),
        ),
        Scenario(
            "group",
            "four smaller faces wander, cross and pause; one leaves and comes back after three seconds",
            (
                (_k(0, 120, 140, 60), _k(80, 300, 160, 60), _k(160, 150, 180, 62), _k(239, 320, 150, 60)),
                (_k(0, 480, 150, 55), _k(80, 330, 150, 55), _k(160, 500, 140, 55), _k(239, 480, 160, 55)),
                (_k(0, 250, 330, 80), _k(50, 260, 330, 80), _k(80, 700, 330, 80), _k(170, 700, 330, 80),
                 _k(200, 420, 320, 80), _k(239, 430, 320, 80)),
                (_k(20, 560, 350, 70), _k(120, 100, 340, 75), _k(239, 560, 360, 70)),
            ),
        ),
    )
}


# -- sources -------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _utk_candidates(shared: Path) -> Tuple[Tuple[str, int, str], ...]:
    """(file, age, gender) of the sharper adult UTKFace chips, in labels.csv order."""
    rows = []
    with open(shared / UTK_DIR / "labels.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            age = int(row["age"])
            if UTK_AGES[0] <= age <= UTK_AGES[1]:
                rows.append((row["file"], age, row["gender"]))
    sharp = []
    for name, age, gender in rows:
        grey = cv2.imread(str(shared / UTK_DIR / name), cv2.IMREAD_GRAYSCALE)
        if grey is not None and cv2.Laplacian(grey, cv2.CV_64F).var() >= UTK_MIN_SHARPNESS:
            sharp.append((name, age, gender))
    return tuple(sharp)


def pick_people(n: int, seed: int, shared: Path = SHARED) -> List[Person]:
    """``n`` distinct people, alternating photo faces and labelled UTKFace chips, chosen by seed."""
    rng = np.random.default_rng(seed)
    photos = [PHOTO_FACES[i] for i in rng.permutation(len(PHOTO_FACES))]
    utk = _utk_candidates(shared)
    chips = [utk[i] for i in rng.permutation(len(utk))]
    people: List[Person] = []
    for i in range(n):
        if i % 2 == 0 and photos:
            name, box = photos.pop(0)
            people.append(Person(i + 1, f"media/{name}", box))
        else:
            name, age, gender = chips.pop(0)
            w = h = 200  # every UTKFace chip is 200x200
            fx1, fy1, fx2, fy2 = UTK_FACE_BOX_FRAC
            box = (round(fx1 * w), round(fy1 * h), round(fx2 * w), round(fy2 * h))
            people.append(Person(i + 1, f"{UTK_DIR}/{name}", box, age, gender))
    return people


@dataclass(frozen=True)
class Sprite:
    """A person's face with context, ready to paste: ``bgr`` (h, w, 3) uint8, ``alpha`` (h, w)
    float32 in [0, 1], and the face box inside it (xyxy, sprite pixels)."""

    bgr: np.ndarray
    alpha: np.ndarray
    face_xyxy: Box


def load_sprite(person: Person, shared: Path = SHARED) -> Sprite:
    """Crop the face of ``person`` with SPRITE_MARGIN context."""
    image = cv2.imread(str(shared / person.source), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"synthetic person {person.id}: cannot read {shared / person.source}")
    x1, y1, x2, y2 = person.face_box_px
    mx, my = SPRITE_MARGIN * (x2 - x1), SPRITE_MARGIN * (y2 - y1)
    h, w = image.shape[:2]
    cx1, cy1, cx2, cy2 = int(x1 - mx), int(y1 - my), int(x2 + mx), int(y2 + my)
    if person.age is None:
        # A photo face near the image edge (the meeting photo's top) gets its missing margin by
        # repeating the edge, so it stays centred in the elliptical mask.
        pads = (max(0, -cy1), max(0, cy2 - h), max(0, -cx1), max(0, cx2 - w))
    else:
        # A UTKFace chip is all face: no context to add, and a smeared border would look like none.
        cx1, cy1, cx2, cy2 = max(0, cx1), max(0, cy1), min(w, cx2), min(h, cy2)
        pads = (0, 0, 0, 0)
    crop = image[max(0, cy1):min(h, cy2), max(0, cx1):min(w, cx2)]
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REPLICATE)
    face = (x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1)
    # Scenarios show faces up to ~160 px; resizing a 600 px face down every frame would cost more
    # than everything else.
    shrink = SPRITE_FACE_MAX_PX / np.sqrt((x2 - x1) * (y2 - y1))
    if shrink < 1.0:
        crop = cv2.resize(crop, (round(crop.shape[1] * shrink), round(crop.shape[0] * shrink)),
                          interpolation=cv2.INTER_AREA)
        sx, sy = crop.shape[1] / (cx2 - cx1), crop.shape[0] / (cy2 - cy1)
        face = (face[0] * sx, face[1] * sy, face[2] * sx, face[3] * sy)
    crop = np.ascontiguousarray(crop)
    return Sprite(crop, _ellipse_alpha(crop.shape[:2]), face)


def _ellipse_alpha(shape_hw: Tuple[int, int]) -> np.ndarray:
    h, w = shape_hw
    feather = max(1.0, MASK_FEATHER * min(h, w))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Signed distance-like value: 0 on the ellipse inscribed in the sprite, scaled to pixels.
    r = np.sqrt(((xx + 0.5 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - h / 2) / (h / 2)) ** 2)
    inside_px = (1.0 - r) * min(h, w) / 2
    return np.clip(inside_px / feather, 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=2)
def _background_cached(shared: str) -> np.ndarray:
    capture = cv2.VideoCapture(str(Path(shared) / "media" / BACKGROUND_CLIP))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, BACKGROUND_FRAME)
        ok, bgr = capture.read()
    finally:
        capture.release()
    if not ok:
        raise FileNotFoundError(f"synthetic background: cannot decode frame {BACKGROUND_FRAME} of "
                                f"{Path(shared) / 'media' / BACKGROUND_CLIP}")
    w, h = FRAME_WH
    scale = max(w / bgr.shape[1], h / bgr.shape[0])
    bgr = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    top, left = (bgr.shape[0] - h) // 2, (bgr.shape[1] - w) // 2
    bgr = bgr[top:top + h, left:left + w]
    bgr = cv2.GaussianBlur(bgr, (0, 0), BACKGROUND_BLUR_SIGMA)
    bgr.setflags(write=False)
    return bgr


def background(shared: Path = SHARED) -> np.ndarray:
    """The empty scene, (480, 640, 3) uint8 BGR (read-only)."""
    return _background_cached(str(shared))


# -- clips ---------------------------------------------------------------------------------------


def _interpolate(path: Sequence[Key], frame: int) -> Optional[Tuple[float, float, float]]:
    """(cx, cy, size) at ``frame``, or None outside the path's time span."""
    if frame < path[0].frame or frame > path[-1].frame:
        return None
    for a, b in zip(path, path[1:]):
        if a.frame <= frame <= b.frame:
            t = 0.0 if b.frame == a.frame else (frame - a.frame) / (b.frame - a.frame)
            return (a.centre_xy[0] + t * (b.centre_xy[0] - a.centre_xy[0]),
                    a.centre_xy[1] + t * (b.centre_xy[1] - a.centre_xy[1]),
                    a.size_px + t * (b.size_px - a.size_px))
    return path[0].centre_xy[0], path[0].centre_xy[1], path[0].size_px


def _jittered(paths: Sequence[Sequence[Key]], rng: np.random.Generator) -> List[Tuple[Key, ...]]:
    """Each key moved by up to 12 px and scaled by up to 8 %: the seed varies the clip, not its plot."""
    out = []
    for path in paths:
        keys = []
        for key in path:
            dx, dy = rng.uniform(-12, 12, 2)
            keys.append(Key(key.frame, (key.centre_xy[0] + dx, key.centre_xy[1] + dy),
                            key.size_px * rng.uniform(0.92, 1.08)))
        out.append(tuple(keys))
    return out


class SyntheticClip:
    """One scenario rendered from a seed. ``frames()`` yields ``(bgr, faces)`` one frame at a time:
    ``bgr`` (480, 640, 3) uint8 BGR and a list of GtFace."""

    def __init__(self, scenario: str, seed: int = 0, n_frames: Optional[int] = None, noise: bool = True,
                 shared: Path = SHARED) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"synthetic scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
        self.scenario = SCENARIOS[scenario]
        self.seed = seed
        self.shared = shared
        self.noise = noise
        self.n_frames = SCENARIO_FRAMES if n_frames is None else max(1, min(n_frames, SCENARIO_FRAMES))
        rng = np.random.default_rng([seed, sorted(SCENARIOS).index(scenario)])
        self.paths = _jittered(self.scenario.paths, rng)
        self.people = pick_people(len(self.paths), int(rng.integers(1 << 31)), shared)
        # Per-person walking bob (phase, amplitude px): faces never move on perfectly straight lines.
        self._bob = [(rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 3.0)) for _ in self.paths]
        self._noise_seed = int(rng.integers(1 << 31))

    @property
    def name(self) -> str:
        return f"synthetic_{self.scenario.name}_s{self.seed}"

    def frames(self) -> Iterator[Tuple[np.ndarray, List[GtFace]]]:
        sprites = [load_sprite(p, self.shared) for p in self.people]
        base = background(self.shared)
        noise = self._noise_frames(base.shape) if self.noise else None
        for index in range(self.n_frames):
            bgr = base.copy()
            placed = []
            for i, (path, sprite) in enumerate(zip(self.paths, sprites)):
                state = _interpolate(path, index)
                if state is not None:
                    cx, cy, size = state
                    phase, amp = self._bob[i]
                    placed.append((size, i, cx, cy + amp * np.sin(phase + index * 2 * np.pi / 30.0), sprite))
            placed.sort(key=lambda item: (item[0], item[1]))  # far (small) first, near on top
            owner = np.full(bgr.shape[:2], -1, np.int8)
            boxes: Dict[int, Tuple[Box, Box]] = {}
            for size, i, cx, cy, sprite in placed:
                boxes[i] = _paste(bgr, owner, sprite, i, cx, cy, size)
            if noise is not None:
                bgr = cv2.add(bgr, noise[index % len(noise)], dtype=cv2.CV_8U)
            yield bgr, self._truth(boxes, owner)

    def _noise_frames(self, shape: Tuple[int, ...]) -> List[np.ndarray]:
        """NOISE_FRAMES frames of zero-mean noise (int16), cycled: drawing fresh noise for every
        frame would cost more than the rest of the rendering."""
        rng = np.random.default_rng(self._noise_seed)
        return [np.round(rng.normal(0.0, NOISE_SIGMA, shape)).astype(np.int16) for _ in range(NOISE_FRAMES)]

    def _truth(self, boxes: Dict[int, Tuple[Box, Box]], owner: np.ndarray) -> List[GtFace]:
        w, h = FRAME_WH
        faces = []
        for i, (face, paste) in sorted(boxes.items()):
            clipped, pasted = _clip(face, w, h), _clip(paste, w, h)
            if pasted[2] <= pasted[0] or pasted[3] <= pasted[1]:
                continue  # wholly off frame
            x1, y1, x2, y2 = (int(round(v)) for v in clipped)
            full_area = (face[2] - face[0]) * (face[3] - face[1])
            own = float((owner[y1:y2, x1:x2] == i).sum())
            faces.append(GtFace(self.people[i].id, tuple(round(v, 1) for v in clipped),
                                tuple(round(v, 1) for v in pasted),
                                own >= VISIBLE_FRACTION * full_area))
        return faces

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "seed": self.seed,
            "fps": FPS,
            "size_wh": list(FRAME_WH),
            "frames": self.n_frames,
            "people": [asdict(p) for p in self.people],
        }


def _clip(box: Box, w: int, h: int) -> Box:
    return (min(max(box[0], 0.0), w), min(max(box[1], 0.0), h), min(max(box[2], 0.0), w), min(max(box[3], 0.0), h))


def _paste(canvas: np.ndarray, owner: np.ndarray, sprite: Sprite, i: int, cx: float, cy: float,
           size: float) -> Tuple[Box, Box]:
    """Alpha-blend ``sprite`` into ``canvas`` (uint8 BGR, in place) scaled so its face is ``size``
    px across and centred at (cx, cy); mark the pixels it owns (alpha > 0.5) with ``i``.
    Returns the face box and the pasted box, both unclipped frame pixels."""
    fx1, fy1, fx2, fy2 = sprite.face_xyxy
    scale = size / np.sqrt((fx2 - fx1) * (fy2 - fy1))
    sh, sw = sprite.bgr.shape[:2]
    out_w, out_h = max(1, int(round(sw * scale))), max(1, int(round(sh * scale)))
    sx, sy = out_w / sw, out_h / sh  # the scale actually applied, after rounding
    left = int(round(cx - (fx1 + fx2) / 2 * sx))
    top = int(round(cy - (fy1 + fy2) / 2 * sy))
    face = (left + fx1 * sx, top + fy1 * sy, left + fx2 * sx, top + fy2 * sy)
    paste = (float(left), float(top), float(left + out_w), float(top + out_h))
    H, W = canvas.shape[:2]
    x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + out_w, W), min(top + out_h, H)
    if x2 <= x1 or y2 <= y1:
        return face, paste
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    bgr = cv2.resize(sprite.bgr, (out_w, out_h), interpolation=interp)[y1 - top:y2 - top, x1 - left:x2 - left]
    alpha = cv2.resize(sprite.alpha, (out_w, out_h), interpolation=cv2.INTER_LINEAR)[y1 - top:y2 - top, x1 - left:x2 - left]
    region = canvas[y1:y2, x1:x2].astype(np.float32)
    region += alpha[..., None] * (bgr.astype(np.float32) - region)
    canvas[y1:y2, x1:x2] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    owner[y1:y2, x1:x2][alpha > 0.5] = i
    return face, paste


# -- files for the command line ------------------------------------------------------------------


def write_clip(clip: SyntheticClip, out_dir: Path) -> Tuple[Path, Path]:
    """``clip`` as ``<name>.mp4`` (mp4v, 30 fps) and ``<name>.json`` (metadata + ground truth) in
    ``out_dir``, frame by frame. Both are written under temporary names and moved into place only
    when complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    video, truth = out_dir / f"{clip.name}.mp4", out_dir / f"{clip.name}.json"
    tmp_video = out_dir / f".{clip.name}.tmp.mp4"
    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, FRAME_WH)
    if not writer.isOpened():
        raise OSError(f"cannot write {tmp_video} with mp4v; check OpenCV's FFmpeg support")
    frames: List[List[dict]] = []
    try:
        for bgr, faces in clip.frames():
            writer.write(bgr)
            frames.append([{"person": f.person, "xyxy": list(f.xyxy), "paste_xyxy": list(f.paste_xyxy),
                            "visible": f.visible} for f in faces])
    finally:
        writer.release()
    if not tmp_video.is_file() or tmp_video.stat().st_size == 0:
        raise OSError(f"{tmp_video}: the video writer produced no file")
    tmp_json = out_dir / f".{clip.name}.tmp.json"
    with open(tmp_json, "w", encoding="utf-8") as handle:
        json.dump({**clip.metadata(), "truth": frames}, handle)
    os.replace(tmp_video, video)
    os.replace(tmp_json, truth)
    return video, truth


def read_truth(path: Path) -> Tuple[dict, List[List[GtFace]]]:
    """The metadata and per-frame ground truth written by ``write_clip``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    frames = [[GtFace(f["person"], tuple(f["xyxy"]), tuple(f["paste_xyxy"]), f["visible"]) for f in faces]
              for faces in data.pop("truth")]
    return data, frames


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for <name>.mp4 and <name>.json")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, help=f"at most this many frames (default {SCENARIO_FRAMES})")
    args = parser.parse_args(argv)
    for name in args.scenarios:
        video, truth = write_clip(SyntheticClip(name, args.seed, args.frames), args.out)
        print(f"{video}  {truth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
