"""One person's labels from many views: weighted, robust fusion of classifier samples, the shown
gender and age group with hysteresis, and when someone else has stepped into the box.

Classifying every face on every frame makes labels flicker (docs/tracking.md). A track
classifies its face now and then (``Tracker.needs_classification``); each result is a sample
weighed by face size, detector score and view quality, and the shown labels change only when the
fused ones cross a group edge by a margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..config import TrackingConfig
from ..types import age_group_index, age_group_labels, gender_of, gender_p

AgeGroups = Sequence[Tuple[int, int]]

# Beyond this shorter side a crop is downscaled to the classifier input and carries no more detail,
# so a huge face does not outweigh every other sample.
_FULL_WEIGHT_FACE_PX = 128.0
# A sample from a zero-score detection still counts a little, so weights never sum to zero.
_MIN_SCORE_WEIGHT = 0.01
_MIN_QUALITY = 0.05
# Robust fusion: samples further than this many MADs (scaled to a standard deviation) from the
# weighted median age are left out, but never closer than _OUTLIER_MIN_YEARS: a single view's
# error has a standard deviation of ~10 years (docs/accuracy.md), so views of one face 15 years
# apart are common and neither is an outlier; with fewer than _MIN_SAMPLES_FOR_OUTLIERS views the
# median itself is not to be trusted.
_OUTLIER_MADS = 2.5
_OUTLIER_MIN_YEARS = 15.0
_MIN_SAMPLES_FOR_OUTLIERS = 4
# A person is settled (no more classifier runs) when the fused age's standard error is below this
# and gender is this far from 0.5.
_SETTLED_AGE_SE_YEARS = 1.5
_SETTLED_GENDER_MARGIN = 0.3
# Someone else in the box: a sample this sure of the other gender while the person is this sure
# of theirs, or an age this far (or 1.5 person-ranges) from theirs, _SPLIT_AFTER times in a row.
# One contradicting view is common (a blurred frame); two in a row, a second apart, rarely are.
_SURE_P = 0.85
_AGE_JUMP_YEARS = 20.0
_SPLIT_AFTER = 2


@dataclass(frozen=True)
class _Sample:
    """One classifier result for a track: its labels, its weight, the classifier's age range."""

    p_male: float
    age_years: float
    weight: float
    age_range: Optional[Tuple[float, float]]


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])


class PersonLabels:
    """The labels of one tracked person.

    ``samples`` classifier results added; ``p_male`` and ``age_years`` their weighted means (None
    before the first); ``gender`` ("female"/"male"), ``gender_p`` (probability of that label),
    ``age_group`` (e.g. "30-39") and ``age_range`` are the *shown* labels, None until
    ``label_ready``. ``last_sample_frame``, ``last_sample_t_s`` and ``last_sample_area``: when and
    how large the face was at the latest sample (the classification schedule reads them).
    """

    def __init__(self, cfg: TrackingConfig, groups: AgeGroups) -> None:
        self.samples = 0
        self.p_male: Optional[float] = None
        self.age_years: Optional[float] = None
        self.gender: Optional[str] = None
        self.age_group: Optional[str] = None
        self.age_range: Optional[Tuple[float, float]] = None
        self.outliers = 0
        self.last_sample_frame: Optional[int] = None
        self.last_sample_t_s: Optional[float] = None
        self.last_sample_area = 0.0
        self._cfg = cfg
        self._groups = tuple(groups)
        self._labels = age_group_labels(groups)
        self._group_index: Optional[int] = None
        self._samples: List[_Sample] = []
        self._contradicting: List[_Sample] = []
        self._age_se: Optional[float] = None

    @property
    def label_ready(self) -> bool:
        """True once the track has ``min_samples`` samples; show "analysing..." before."""
        return self.samples >= self._cfg.min_samples

    @property
    def gender_p(self) -> Optional[float]:
        """Averaged probability of the shown gender, or None when none is shown."""
        if self.gender is None or self.p_male is None:
            return None
        return gender_p(self.gender, self.p_male)

    def add(
        self,
        p_male: float,
        age_years: float,
        face_px: float,
        score: float,
        *,
        quality: float = 1.0,
        age_range: Optional[Tuple[float, float]] = None,
        taken_at: Tuple[int, float, float] = (0, 0.0, 0.0),
    ) -> None:
        """Fold one classifier result into the person's labels.

        ``p_male`` in [0, 1]; ``age_years`` >= 0; ``face_px`` the shorter side of the classified crop
        (> 0); ``score`` the detector confidence in [0, 1]; ``quality`` in (0, 1]: what else makes
        this view reliable (sharpness, frontalness: see ``worker.sample_quality``); ``age_range``
        the classifier's ``(lo, hi)`` for this view. The sample weighs face size (capped) x score x
        quality. The person's age is the weighted mean of the samples within a robust band around
        their weighted median (one blurred or turned view does not drag it), gender the weighted
        mean of p_male. ``taken_at`` ``(frame_index, t_s, box area)`` of the view, for the
        classification schedule. A sample that contradicts a settled person (see
        ``changed_person``) is counted, not folded in; past ``max_samples`` a sample only checks
        that it is still the same person.
        """
        for name, value, lo, hi in (
            ("p_male", p_male, 0.0, 1.0),
            ("age_years", age_years, 0.0, math.inf),
            ("score", score, 0.0, 1.0),
            ("quality", quality, 0.0, 1.0),
        ):
            if not (lo <= float(value) <= hi):
                raise ValueError(
                    f"add_sample {name}: expected a number in [{lo}, {hi}], got {value!r}; "
                    "pass the classifier's output for this face"
                )
        if not float(face_px) > 0:
            raise ValueError(
                f"add_sample face_px: expected the crop's shorter side in pixels > 0, got {face_px!r}"
            )
        weight = (
            max(float(score), _MIN_SCORE_WEIGHT) * min(float(face_px), _FULL_WEIGHT_FACE_PX)
            * max(float(quality), _MIN_QUALITY)
        )
        sample = _Sample(float(p_male), float(age_years), weight, age_range)
        self.last_sample_frame, self.last_sample_t_s, self.last_sample_area = taken_at
        if self.label_ready and self._contradicts(sample):
            self._contradicting.append(sample)
            return
        self._contradicting.clear()
        if self.samples >= self._cfg.max_samples:
            return  # a check of who it is, past the cap: it agrees, and memory stays bounded
        self._fold([sample])

    def _fold(self, samples: Sequence["_Sample"]) -> None:
        self._samples.extend(samples)
        self.samples += len(samples)
        self._fuse()
        if self.label_ready:
            self._update_shown_labels()

    @property
    def contradicted(self) -> bool:
        """The latest sample contradicted the person's labels (it was counted, not folded in)."""
        return bool(self._contradicting)

    @property
    def changed_person(self) -> bool:
        """True when the last ``_SPLIT_AFTER`` samples all contradicted the person's settled
        labels (a confident opposite gender, or an age far outside the person's range): someone
        else stepped into the box. The tracker then ends the track and starts another."""
        return len(self._contradicting) >= _SPLIT_AFTER

    def take_contradicting(self) -> List["_Sample"]:
        """The samples that contradicted this person, handed to the track that replaces it."""
        taken, self._contradicting = self._contradicting, []
        return taken

    def adopt(self, samples: Sequence["_Sample"]) -> None:
        """Fold in another track's contradicting samples: they are views of this person."""
        self._fold(samples)

    def explains(self, other: "PersonLabels") -> bool:
        """The samples that contradicted ``other`` (at least one) fit this person's shown labels:
        this person's face is the one in ``other``'s box."""
        return self.label_ready and bool(other._contradicting) and not any(
            self._contradicts(sample) for sample in other._contradicting
        )

    @property
    def settled(self) -> bool:
        """Enough agreeing samples that more would not change the labels: at least twice
        ``min_samples``, gender clear of 0.5 by ``_SETTLED_GENDER_MARGIN`` and the fused age's
        standard error under ``_SETTLED_AGE_SE_YEARS``. The schedule then stops classifying, but
        for a check of who it is when the face is back after being hidden."""
        if self.samples < 2 * self._cfg.min_samples or self.p_male is None or self._age_se is None:
            return False
        return abs(self.p_male - 0.5) >= _SETTLED_GENDER_MARGIN and self._age_se <= _SETTLED_AGE_SE_YEARS

    def _contradicts(self, sample: "_Sample") -> bool:
        assert self.p_male is not None and self.age_years is not None
        gender_flip = (self.p_male >= _SURE_P and sample.p_male <= 1 - _SURE_P) or (
            self.p_male <= 1 - _SURE_P and sample.p_male >= _SURE_P
        )
        spread = _AGE_JUMP_YEARS
        if self.age_range is not None:
            spread = max(spread, 1.5 * (self.age_range[1] - self.age_range[0]))
        return gender_flip or abs(sample.age_years - self.age_years) > spread

    def _fuse(self) -> None:
        ages = np.array([s.age_years for s in self._samples], np.float64)
        weights = np.array([s.weight for s in self._samples], np.float64)
        median = _weighted_median(ages, weights)
        mad = _weighted_median(np.abs(ages - median), weights)
        keep = np.abs(ages - median) <= max(_OUTLIER_MADS * 1.4826 * mad, _OUTLIER_MIN_YEARS)
        if len(ages) < _MIN_SAMPLES_FOR_OUTLIERS:
            keep[:] = True  # two views that disagree: no telling which is wrong
        w = weights[keep]
        self.age_years = float(np.sum(w * ages[keep]) / np.sum(w))
        self.outliers = int((~keep).sum())
        n_eff = float(np.sum(w) ** 2 / np.sum(w**2))
        if n_eff > 1.0:
            var = float(np.sum(w * (ages[keep] - self.age_years) ** 2) / np.sum(w))
            self._age_se = math.sqrt(var / (n_eff - 1.0))
        else:
            self._age_se = None
        p_male = np.array([s.p_male for s in self._samples], np.float64)
        self.p_male = float(np.sum(weights * p_male) / np.sum(weights))
        ranges = [(s.age_range, s.weight) for s, k in zip(self._samples, keep) if k and s.age_range is not None]
        if ranges:
            # Views of one face make correlated errors, so averaging them narrows the range little:
            # the person's range is the samples' mean width, centred on the fused age.
            total = sum(wt for _, wt in ranges)
            half = sum(wt * (hi - lo) for (lo, hi), wt in ranges) / total / 2.0
            self.age_range = (max(0.0, self.age_years - half), self.age_years + half)

    def _update_shown_labels(self) -> None:
        assert self.p_male is not None and self.age_years is not None
        margin = self._cfg.gender_hysteresis
        if self.gender is None:
            self.gender = gender_of(self.p_male)
        elif self.gender == "female" and self.p_male >= 0.5 + margin:
            self.gender = "male"
        elif self.gender == "male" and self.p_male <= 0.5 - margin:
            self.gender = "female"

        index = int(age_group_index(self.age_years, self._groups))
        if self._group_index is not None and index != self._group_index:
            lo, hi = self._groups[self._group_index]
            margin_years = self._cfg.age_hysteresis_years
            if lo - margin_years <= self.age_years < hi + 1 + margin_years:
                index = self._group_index
        self._group_index = index
        self.age_group = self._labels[index]

    def fields(self) -> dict:
        """The label fields of a track record: shown labels, None before ``label_ready``."""
        shown_p = self.gender_p
        ready = self.label_ready
        return {
            "samples": self.samples,
            "gender": self.gender,
            "gender_p": None if shown_p is None else round(shown_p, 4),
            "age": None if not ready or self.age_years is None else round(self.age_years, 1),
            "age_group": self.age_group,
            "age_range": None if not ready or self.age_range is None else [round(v, 1) for v in self.age_range],
        }
