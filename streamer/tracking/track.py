"""One face followed over frames and its person's labels: the tracker's unit (``tracker.py``
decides which detection is which track; a track keeps its box, motion, colour and labels)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..boxes import box_area as _area
from ..config import TrackingConfig
from ..types import Detections
from .labels import AgeGroups, PersonLabels

# Velocity is a running mean of per-frame box motion; 0.5 follows a change of direction within two
# updates while halving detector jitter.
_VELOCITY_ALPHA = 0.5


# Where a hidden face is looked for: its motion is predictable for a fraction of a second; past
# this many frames it may have stopped or turned back.
_MAX_EXTRAPOLATION_FRAMES = 10


# How fast a track's colour histogram follows new detections: a few detections (a second or two)
# to adapt to a light change, while one odd frame (a hand in front) moves it little.
_APPEARANCE_ALPHA = 0.3


class Track:
    """One face followed over frames, and its person's labels.

    Geometry: ``id`` (int from 1), ``xyxy`` float32 ``(4,)`` current box (detected on this frame,
    or moved there by optical flow: never extrapolated), ``first_frame``/``first_t_s`` and
    ``last_frame``/``last_t_s`` of the first and latest detection, ``hits`` detections, ``missed``
    checks in a row that found no face where the track is (a full-frame detector run without a
    match, then a look at its region), ``confirmed`` once ``hits`` reached ``min_hits``.
    ``detection``: this frame's detection of the face (one row, with landmarks when the detector
    gives them), None when it was not detected on this frame. ``score``: the latest detection's
    confidence. ``appearance``: a running colour histogram of the face (``appearance.py``).

    ``view_frame``/``view_t_s``: when the face came into view, at first sight or back after being
    hidden (someone else may have stepped into the spot: the schedule checks who it is).
    ``speed``: how fast the face moves, None until it has moved once.

    ``labels``: the person's :class:`~streamer.tracking.labels.PersonLabels` (``add_sample`` adds a view of
    this track's latest detection). Owned and driven by the :class:`Tracker` (``hit``, ``moved``,
    ``miss``); use :meth:`to_record` for a copy.
    """

    def __init__(
        self,
        track_id: int,
        xyxy: np.ndarray,
        frame_index: int,
        t_s: float,
        cfg: TrackingConfig,
        groups: AgeGroups,
    ) -> None:
        self.id = track_id
        self.xyxy = np.asarray(xyxy, np.float32).copy()
        self.first_frame = self.last_frame = self.view_frame = frame_index
        self.first_t_s = self.last_t_s = self.view_t_s = t_s
        self.hits = 1
        self.missed = 0
        self.confirmed = False
        self.detection: Optional[Detections] = None
        self.score = 0.0
        self.appearance: Optional[np.ndarray] = None
        self.labels = PersonLabels(cfg, groups)
        self._cfg = cfg
        self._detected_xyxy = self.xyxy.copy()
        # Per-frame box motion, from every piece of evidence (detections and flow); used only to
        # look for a hidden face where it was heading, never to draw a box.
        self._velocity_xyxy = np.zeros(4, np.float32)
        self._evidence_frame = frame_index
        self._velocity_known = False

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.0f}" for v in self.xyxy)
        return (
            f"Track(id={self.id}, xyxy=[{box}], hits={self.hits}, missed={self.missed}, "
            f"samples={self.labels.samples}, gender={self.labels.gender}, age_group={self.labels.age_group})"
        )

    @property
    def speed(self) -> Optional[float]:
        """How fast the face moves: its box centre's recent motion per frame over the box's shorter
        side (face widths per frame); None at first sight and just after coming back, when its
        motion is not known yet."""
        if not self._velocity_known:
            return None
        v = self._velocity_xyxy
        side = max(min(float(self.xyxy[2] - self.xyxy[0]), float(self.xyxy[3] - self.xyxy[1])), 1.0)
        return float(np.hypot(v[0] + v[2], v[1] + v[3])) / 2.0 / side

    @property
    def seen_s(self) -> float:
        """Seconds between the first and the latest matched detection."""
        return self.last_t_s - self.first_t_s

    def add_sample(self, p_male: float, age_years: float, face_px: float, score: float, *,
                   quality: float = 1.0, age_range: Optional[Tuple[float, float]] = None) -> None:
        """A classifier result for this track's latest detection (its frame, time and box):
        ``PersonLabels.add`` says what each argument is and how the view is weighed."""
        self.labels.add(p_male, age_years, face_px, score, quality=quality, age_range=age_range,
                        taken_at=(self.last_frame, self.last_t_s, float(_area(self._detected_xyxy))))

    def to_record(self) -> dict:
        """The JSON object of a track (the ``end`` record and a report row): final shown labels
        (None when the track never reached ``min_samples``), first/last frame and time, seen seconds."""
        return {
            "track": self.id,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "first_t_s": round(self.first_t_s, 4),
            "last_t_s": round(self.last_t_s, 4),
            "seen_s": round(self.seen_s, 3),
            "hits": self.hits,
            **self.labels.fields(),
        }

    # --- geometry, driven by the Tracker ---

    @property
    def shown(self) -> bool:
        """Drawn and counted on this frame: confirmed and not missed more than ``max_missed``
        checks in a row."""
        return self.confirmed and self.missed <= self._cfg.max_missed

    def predicted(self, frame_index: int) -> np.ndarray:
        """Where to look for this face on ``frame_index``: its box moved on by its recent
        velocity for the frames since the last evidence (at most ``_MAX_EXTRAPOLATION_FRAMES``)."""
        steps = min(max(frame_index - self._evidence_frame, 0), _MAX_EXTRAPOLATION_FRAMES)
        return (self.xyxy + steps * self._velocity_xyxy).astype(np.float32)

    def hit(self, detection: Detections, frame_index: int, t_s: float, appearance: Optional[np.ndarray]) -> None:
        """The face was detected on this frame: ``detection`` is its one row."""
        xyxy = np.asarray(detection.xyxy[0], np.float32)
        back = self.missed > self._cfg.max_missed
        if back:
            self.view_frame, self.view_t_s = frame_index, t_s
        self._evidence(xyxy, frame_index, reset=back)
        self._detected_xyxy = xyxy.copy()
        self.detection = detection
        self.score = float(detection.confidence[0])
        self.last_frame, self.last_t_s = frame_index, t_s
        self.hits += 1
        self.missed = 0
        if appearance is not None:
            self.appearance = (
                appearance if self.appearance is None
                else (_APPEARANCE_ALPHA * appearance + (1.0 - _APPEARANCE_ALPHA) * self.appearance).astype(np.float32)
            )

    def moved(self, xyxy: np.ndarray, frame_index: int) -> None:
        """Optical flow followed the face to ``xyxy`` on this frame."""
        self._evidence(np.asarray(xyxy, np.float32), frame_index, reset=False)

    def miss(self) -> None:
        """A check found no face where the track is."""
        self.missed += 1

    def hide(self) -> None:
        """Stop showing the track now (its box is on another track's face); it can still be
        matched again until ``max_age_s``."""
        self.missed = max(self.missed + 1, self._cfg.max_missed + 1)

    def _evidence(self, xyxy: np.ndarray, frame_index: int, reset: bool) -> None:
        if reset:
            # Back after being hidden: the gap says nothing about its speed.
            self._velocity_xyxy[:] = 0.0
            self._velocity_known = False
        else:
            steps = max(frame_index - self._evidence_frame, 1)
            measured = (xyxy - self.xyxy) / steps
            # The first step is the first measure of its motion, not a change from standing still.
            alpha = _VELOCITY_ALPHA if self._velocity_known else 1.0
            self._velocity_xyxy = (alpha * measured + (1.0 - alpha) * self._velocity_xyxy).astype(np.float32)
            self._velocity_known = True
        self.xyxy = xyxy.copy()
        self._evidence_frame = frame_index
