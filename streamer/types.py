"""The data contract between stages: small frozen dataclasses, layout in the names.

Images are numpy ``uint8`` arrays ``(H, W, 3)`` in **BGR** order (OpenCV's) unless a name says
otherwise. Boxes are ``xyxy`` in frame pixels (float32, x2/y2 exclusive edges). Times are
``time.monotonic()`` seconds (``t_s``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

GENDERS = ("female", "male")
UNKNOWN = "unknown"  # the row and column of people whose label was not shown, in every count by label


def age_group_labels(groups: Sequence[Tuple[int, int]]) -> Tuple[str, ...]:
    """Display labels of inclusive ``[lo, hi]`` year ranges: "20-29", and "70+" when hi >= 100."""
    return tuple(f"{lo}+" if hi >= 100 else f"{lo}-{hi}" for lo, hi in groups)


def age_group_of(age_years: np.ndarray, groups: Sequence[Tuple[int, int]]) -> Tuple[str, ...]:
    """The label of the group holding each (continuous) age; ages outside all groups clamp to the
    first or last group. ``age_years``: ``(N,)`` float."""
    labels = age_group_labels(groups)
    return tuple(labels[i] for i in age_group_index(age_years, groups).reshape(-1))


def gender_of(p_male: float) -> str:
    """The gender a probability of "male" states: "male" from 0.5 up, else "female"."""
    return GENDERS[int(p_male >= 0.5)]


@dataclass(frozen=True)
class ChildGender:
    """When a child's gender is shown: a face read younger than ``none_below_years`` never gets one;
    one read younger than ``below_years`` only when the probability of its gender is at least
    ``min_p``. Children's faces carry few gender cues, and a guess shown as a label reads as a fact
    (docs/accuracy.md measures what is shown and how often it is right)."""

    below_years: float = 10.0
    min_p: float = 0.9
    none_below_years: float = 3.0

    def shows(self, p_male: float, age_years: float) -> bool:
        """Whether the gender of a face read ``age_years`` old with ``p_male`` may be shown."""
        if age_years < self.none_below_years:
            return False
        return age_years >= self.below_years or max(p_male, 1.0 - p_male) >= self.min_p

    def shown_gender(self, p_male: float, age_years: float) -> Optional[str]:
        """``gender_of(p_male)`` where ``shows`` allows it, else None."""
        return gender_of(p_male) if self.shows(p_male, age_years) else None


def gender_p(gender: str, p_male: float) -> float:
    """The probability of the stated ``gender``, from the probability of "male"."""
    return p_male if gender == "male" else 1.0 - p_male


def age_group_index(age_years, groups: Sequence[Tuple[int, int]]) -> np.ndarray:
    """Index of the group holding each continuous age (group i covers ``[lo_i, hi_i + 1)``); ages
    outside all groups clamp to the first or last. ``age_years``: a float or ``(N,)`` floats."""
    upper_edges = np.array([hi + 1 for _, hi in groups[:-1]], np.float64)
    return np.searchsorted(upper_edges, np.asarray(age_years, np.float64), side="right")


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    ``bgr`` is ``(H, W, 3)`` uint8 BGR; ``index`` counts frames read from the source from 0;
    ``t_s`` is the ``time.monotonic()`` at capture; ``pos_s`` is the position in a file source
    (None for live sources); ``source`` names where it came from (a path or URL).
    """

    bgr: np.ndarray
    index: int
    t_s: float
    source: str
    pos_s: Optional[float] = None

    @property
    def shape_hw(self) -> Tuple[int, int]:
        return int(self.bgr.shape[0]), int(self.bgr.shape[1])

    def clock(self) -> dict:
        """``{"timestamp": Unix seconds}`` of the capture for a live frame (its wall-clock time, for
        reports that say when), ``{}`` for a file's frame (its time is ``pos_s``)."""
        if self.pos_s is not None:
            return {}
        return {"timestamp": round(time.time() - (time.monotonic() - self.t_s), 3)}


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame.

    ``xyxy``: ``(N, 4)`` float32 frame pixels; ``confidence``: ``(N,)`` float32 in [0, 1];
    ``landmarks_xy``: ``(N, 5, 2)`` float32 frame pixels in YuNet's order (right eye, left eye,
    nose tip, right mouth corner, left mouth corner; "right" is the subject's right, on the
    viewer's left), or None when the detector gives no landmarks.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks_xy: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.xyxy.shape != (len(self.confidence), 4):
            raise ValueError(f"xyxy must be (N, 4) with N={len(self.confidence)}, got {self.xyxy.shape}")
        if self.landmarks_xy is not None and self.landmarks_xy.shape != (len(self.confidence), 5, 2):
            raise ValueError(f"landmarks_xy must be (N, 5, 2), got {self.landmarks_xy.shape}")

    @classmethod
    def empty(cls, with_landmarks: bool = False) -> "Detections":
        """No faces, with the same dtypes and trailing shapes as a non-empty result."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros((0,), np.float32),
            landmarks_xy=np.zeros((0, 5, 2), np.float32) if with_landmarks else None,
        )

    def __len__(self) -> int:
        return int(self.confidence.shape[0])

    @classmethod
    def concat(cls, parts: Sequence["Detections"]) -> "Detections":
        """One Detections of all rows of ``parts`` in order (all with landmarks, or none)."""
        if not parts:
            return cls.empty()
        marks = [p.landmarks_xy for p in parts if p.landmarks_xy is not None]
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]).astype(np.float32),
            confidence=np.concatenate([p.confidence for p in parts]).astype(np.float32),
            landmarks_xy=np.concatenate(marks).astype(np.float32) if len(marks) == len(parts) else None,
        )

    def translated(self, dx: float, dy: float) -> "Detections":
        """The same faces with boxes and landmarks shifted by ``(dx, dy)`` pixels (from a crop's
        pixels to the frame's)."""
        offset = np.array([dx, dy], np.float32)
        return Detections(
            xyxy=(self.xyxy + np.tile(offset, 2)).astype(np.float32),
            confidence=self.confidence,
            landmarks_xy=None if self.landmarks_xy is None else (self.landmarks_xy + offset).astype(np.float32),
        )

    def __getitem__(self, keep: np.ndarray) -> "Detections":
        """Select rows with a boolean mask or an index array."""
        return Detections(
            xyxy=self.xyxy[keep],
            confidence=self.confidence[keep],
            landmarks_xy=None if self.landmarks_xy is None else self.landmarks_xy[keep],
        )


@dataclass(frozen=True)
class GenderAge:
    """Classifier outputs for N faces.

    ``p_male``: ``(N,)`` float32 probability the face is male (calibrated when a calibration is
    loaded); ``age_years``: ``(N,)`` float32 age (calibrated likewise); ``age_group``: the group
    label of each age. The rest default to "unknown" when a model cannot give them:
    ``p_male_raw`` / ``age_raw``: ``(N,)`` float32 the network's own values (equal to the
    calibrated ones when uncalibrated); ``age_range``: ``(N, 2)`` float32 [lo, hi] years meant to
    hold the true age for ``classifier.age_range_coverage`` of faces (NaN: none);
    ``age_spread``: ``(N,)`` float32 standard deviation of the network's age distribution in
    years (NaN: none), larger for blurred or turned faces, so a per-person fusion can weight by it.
    """

    p_male: np.ndarray
    age_years: np.ndarray
    age_group: Tuple[str, ...]
    # Optional arguments; __post_init__ fills the defaults, so the fields are always arrays.
    p_male_raw: np.ndarray = None  # type: ignore[assignment]
    age_raw: np.ndarray = None  # type: ignore[assignment]
    age_range: np.ndarray = None  # type: ignore[assignment]
    age_spread: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.p_male)
        defaults = {
            "p_male_raw": self.p_male, "age_raw": self.age_years,
            "age_range": np.full((n, 2), np.nan, np.float32), "age_spread": np.full((n,), np.nan, np.float32),
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            value = np.asarray(default if value is None else value, np.float32)
            expected = (n, 2) if name == "age_range" else (n,)
            if value.shape != expected:
                raise ValueError(f"GenderAge.{name} must have shape {expected}, got {value.shape}")
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls) -> "GenderAge":
        return cls(np.zeros((0,), np.float32), np.zeros((0,), np.float32), ())

    def __len__(self) -> int:
        return int(self.p_male.shape[0])


@dataclass(frozen=True)
class Face:
    """One face in the per-frame results (what the overlay draws and the events carry).

    ``xyxy`` frame pixels; ``score`` detector confidence; ``gender`` is "male"/"female" and
    ``gender_p`` the probability of that label; ``age`` expected age in years; ``age_group`` a
    label such as "25-32". ``gender`` and ``gender_p`` alone are None for a classified child whose
    gender is not shown (``ChildGender``). All four are None when ``classified`` is False: ``too_small`` (shorter
    side below ``classifier.min_face_px``, never classified), ``turned`` (turned further than
    ``classifier.max_yaw``: a label would be a guess) or not yet analysed (a new track gathering
    samples). ``track`` is a track id when tracking is on. ``age_raw`` is the network's own age
    before calibration; ``age_range`` ``(lo, hi)`` years meant to hold the true age for
    ``classifier.age_range_coverage`` of faces (None when unknown). With zones configured,
    ``zones`` names the zones the person is in (past their inertia); ``looking``: the person looks
    at the camera (the latest frontal test of their face; None: not measured).
    """

    xyxy: Tuple[float, float, float, float]
    score: float
    gender: Optional[str] = None
    gender_p: Optional[float] = None
    age: Optional[float] = None
    age_group: Optional[str] = None
    classified: bool = False
    track: Optional[int] = None
    too_small: bool = False
    age_raw: Optional[float] = None
    age_range: Optional[Tuple[float, float]] = None
    turned: bool = False
    zones: Optional[Tuple[str, ...]] = None
    looking: Optional[bool] = None

    def to_event(self) -> dict:
        """The JSON object of this face in the events file (schema in README)."""
        event = {
            "xyxy": [round(float(v), 1) for v in self.xyxy],
            "score": round(float(self.score), 4),
            "gender": self.gender,
            "gender_p": None if self.gender_p is None else round(float(self.gender_p), 4),
            "age": None if self.age is None else round(float(self.age), 1),
            "age_group": self.age_group,
            "classified": self.classified,
            "too_small": self.too_small,
            "age_raw": None if self.age_raw is None else round(float(self.age_raw), 1),
            "age_range": None if self.age_range is None else [round(float(v), 1) for v in self.age_range],
            "turned": self.turned,
        }
        if self.track is not None:
            event["track"] = self.track
        if self.zones is not None:
            event["zones"] = list(self.zones)
        if self.looking is not None:
            event["looking"] = self.looking
        return event


@dataclass(frozen=True)
class GateDecision:
    """What the motion gate decided for one frame.

    ``analyse``: run the models; ``changed_frac``: share of the working image that changed
    (0-1); ``reason``: "motion", "still", "tracked" (motion only on faces already tracked),
    "refresh", "first", "recalibrate" or "off".
    """

    analyse: bool
    changed_frac: float
    reason: str


@dataclass(frozen=True)
class FrameResult:
    """Everything known about one frame after the worker.

    ``stale`` is True when the faces were reused from an earlier analysed frame (the gate was
    closed); ``frames_since_analysis`` counts frames since the models last ran (0 when fresh).
    ``timings_ms`` maps stage name to milliseconds spent on this frame.
    """

    frame: Frame
    faces: Tuple[Face, ...]
    stale: bool = False
    frames_since_analysis: int = 0
    gate: Optional[GateDecision] = None
    timings_ms: dict = field(default_factory=dict)

    def to_event(self) -> dict:
        """One JSON Lines object (schema in README); keys are only ever added, never changed."""
        event = {
            "source": self.frame.source,
            "frame": self.frame.index,
            "t_s": round(self.frame.pos_s if self.frame.pos_s is not None else self.frame.t_s, 4),
            **self.frame.clock(),
            "faces": [face.to_event() for face in self.faces],
            "stale": self.stale,
            "frames_since_analysis": self.frames_since_analysis,
        }
        if self.gate is not None:
            event["gate"] = {
                "analyse": self.gate.analyse,
                "changed_frac": round(self.gate.changed_frac, 5),
                "reason": self.gate.reason,
            }
        return event
