"""Looking at the camera: head yaw and pitch from the 5 landmarks the detector already gives, and
each person's glances and attention time.

Head pose from 5 points, without solving a full PnP: on a face far from the camera (orthographic
projection), turning the head by a yaw angle shifts the nose tip sideways by its depth times the
sine and shortens the eye line by the cosine, so the nose's offset along the eye line in eye
distances is ``NOSE_DEPTH * tan(yaw)`` (``classifiers.align.yaw_ratio`` measures that offset).
Tilting it moves the nose up or down against the eyes and the mouth: the nose's share of the
eye-to-mouth drop (0.525 on a frontal face) gives the pitch. Both are measured along and across
the eye line, so a tilted (rolled) head reads the same. The face model (in eye distances, eye
midpoint at the origin, y down, z towards the camera) is dlib's mean face for x and y (the same
template ``align.py`` uses) with typical depths; faces differ, so pitch is rougher than yaw.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..classifiers.align import MEAN_FACE_YUNET

_EYE_DISTANCE = float(MEAN_FACE_YUNET[1, 0] - MEAN_FACE_YUNET[0, 0])
_EYE_Y = float(MEAN_FACE_YUNET[:2, 1].mean())
# Drops below the eye line, in eye distances, from the mean face: nose tip 0.56, mouth 1.06.
NOSE_DROP = (float(MEAN_FACE_YUNET[2, 1]) - _EYE_Y) / _EYE_DISTANCE
MOUTH_DROP = (float(MEAN_FACE_YUNET[3:, 1].mean()) - _EYE_Y) / _EYE_DISTANCE
# Depths in front of the eyes, in eye distances: the nose tip stands about half an eye distance
# out (a three-quarter view, 45 degrees, puts it half an eye distance off centre: align.yaw_ratio's
# "~0.5"), the mouth corners a fifth.
NOSE_DEPTH = 0.5
MOUTH_DEPTH = 0.2
# A face nodding so far down that its nose tip is level with its eyes (about 40 degrees) has no depth
# left to measure a turn with; past that the yaw is read against this much.
_MIN_NOSE_DEPTH = 0.1
MOUTH_HALF_WIDTH = (float(MEAN_FACE_YUNET[4, 0] - MEAN_FACE_YUNET[3, 0]) / 2.0) / _EYE_DISTANCE


def face_model_3d() -> np.ndarray:
    """The 5 landmarks of the face model in YuNet's order: ``(5, 3)`` float64 eye distances, eye
    midpoint at the origin, x to the viewer's right, y down, z towards the camera."""
    return np.array([
        [-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, NOSE_DROP, NOSE_DEPTH],
        [-MOUTH_HALF_WIDTH, MOUTH_DROP, MOUTH_DEPTH], [MOUTH_HALF_WIDTH, MOUTH_DROP, MOUTH_DEPTH],
    ], np.float64)


def head_pose(landmarks_xy: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(yaw_deg, pitch_deg)``, each ``(N,)`` float32, of faces with landmarks ``(N, 5, 2)`` in
    YuNet's order (frame pixels). Yaw is positive when the nose points to the viewer's right, pitch
    when the face looks up; 0 and 0 face the camera. Faces whose eyes coincide read 0 yaw and 90
    pitch (not frontal)."""
    rows = np.asarray(landmarks_xy, np.float64).reshape(-1, 10).tolist()
    poses = [_pose(*row) for row in rows]
    yaw = np.array([pose[0] for pose in poses], np.float32)
    pitch = np.array([pose[1] for pose in poses], np.float32)
    return yaw, pitch


def _pose(rx: float, ry: float, lx: float, ly: float, nx: float, ny: float, mrx: float, mry: float, mlx: float,
          mly: float) -> Tuple[float, float]:
    """One face's yaw and pitch in degrees from its 5 landmarks (right eye, left eye, nose tip,
    right and left mouth corner). Plain floats: a frame has a handful of faces, and numpy's
    per-call cost on arrays of five points is larger than the arithmetic (bench/audience.py)."""
    ex, ey = lx - rx, ly - ry  # the eye line
    length = math.hypot(ex, ey)
    if length <= 1e-6:
        return 0.0, 90.0
    ux, uy = ex / length, ey / length  # along the eye line; (-uy, ux) across it, towards the mouth
    cx, cy = (rx + lx) / 2.0, (ry + ly) / 2.0
    # The nose tip's offset along the eye line in eye distances: classifiers.align.yaw_ratio.
    ratio = ((nx - cx) * ux + (ny - cy) * uy) / length
    nose = (nx - cx) * -uy + (ny - cy) * ux
    mouth = ((mrx + mlx) / 2.0 - cx) * -uy + ((mry + mly) / 2.0 - cy) * ux
    share = nose / (mouth if abs(mouth) > 1e-6 else 1e-6)
    # share = (NOSE_DROP - NOSE_DEPTH t) / (MOUTH_DROP - MOUTH_DEPTH t), t = tan(pitch), solved for t.
    pitch = math.atan2(NOSE_DROP - share * MOUTH_DROP, NOSE_DEPTH - share * MOUTH_DEPTH)
    # A nod moves the nose tip nearer or further (the head turns on the neck, then nods): its depth
    # in front of the eyes after the nod is what a turn shifts sideways.
    depth = max(NOSE_DROP * math.sin(pitch) + NOSE_DEPTH * math.cos(pitch), _MIN_NOSE_DEPTH)
    return math.degrees(math.atan(ratio / depth)), math.degrees(pitch)


def looking(landmarks_xy: np.ndarray, max_yaw_deg: float, max_pitch_deg: float) -> np.ndarray:
    """``(N,)`` bool: the face looks at the camera (yaw and pitch within the limits)."""
    yaw, pitch = head_pose(landmarks_xy)
    return (np.abs(yaw) <= max_yaw_deg) & (np.abs(pitch) <= max_pitch_deg)


class Glances:
    """One person's looks at the camera, from the frontal test on the frames where their face was
    detected (the state holds in between: the tracker's frames have no landmarks).

    A look runs from a frontal face until the face has been turned away for ``gap_s`` (shorter
    turns are part of it); it is a glance once its frontal time reaches ``min_glance_s``, and only
    glances count as attention. ``update`` is called once per frame the person is seen, with the
    seconds since their previous frame (0 after a gap) and the zones they are in, so each zone's
    visit gets the attention paid during it (:meth:`take`).
    """

    def __init__(self, min_glance_s: float, gap_s: float) -> None:
        self.min_glance_s, self.gap_s = min_glance_s, gap_s
        self.looking: Optional[bool] = None  # the latest frontal test; None: never measured
        self.count = 0
        self.attention_s = 0.0
        self._run_s: Optional[float] = None  # frontal time of the current look; None: not in one
        self._qualified = False
        self._away_since: Optional[float] = None
        self._pending: Dict[str, float] = {}  # a look's time per zone, until it is a glance
        self._zone_s: Dict[str, float] = {}  # glance time per zone, until the visit takes it

    def update(self, t_s: float, dt_s: float, measured: Optional[bool], zones: Sequence[str] = ()) -> None:
        """``dt_s`` seconds passed with the held state, then (if not None) a new frontal test at ``t_s``."""
        if self.looking and self._run_s is not None and dt_s > 0:
            self._run_s += dt_s
            if self._qualified:
                self.attention_s += dt_s
            target = self._zone_s if self._qualified else self._pending
            for zone in zones:
                target[zone] = target.get(zone, 0.0) + dt_s
        if measured is not None:
            self.looking = measured
            if measured:
                if self._run_s is None:
                    self._run_s, self._qualified, self._pending = 0.0, False, {}
                self._away_since = None
            elif self._run_s is not None and self._away_since is None:
                self._away_since = t_s
        if self._run_s is not None and self._away_since is not None and t_s - self._away_since >= self.gap_s:
            self._run_s = None  # the look is over; if it never made a glance, its time is dropped
            self._pending = {}
        if self._run_s is not None and not self._qualified and self._run_s >= self.min_glance_s:
            self._qualified = True
            self.count += 1
            self.attention_s += self._run_s
            for zone, seconds in self._pending.items():
                self._zone_s[zone] = self._zone_s.get(zone, 0.0) + seconds
            self._pending = {}

    def take(self, zone: str) -> float:
        """The glance time paid during the person's visit to ``zone``, now that it ends."""
        self._pending.pop(zone, None)
        return self._zone_s.pop(zone, 0.0)
