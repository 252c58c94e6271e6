"""Label calibration at run time: calibrated age, an age range that covers what it claims, and a
gender probability that means what it says.

The numbers come from ``streamer/data/age_calibration.json`` (fitted by ``tools/eval_accuracy.py
--write-calibration`` on the dev sets, cross-validated; its sha256 is pinned in
``streamer/data/manifest.json`` under ``calibrations``). This module only applies them:

- age: a monotone (isotonic) map from the network's expected age to age in years. The network's
  0-80 output regresses to the middle (children read old, old people read young); the map undoes
  that as far as the dev sets show it.
- age range: ``[age + lower(age), age + upper(age)]``, where lower and upper are quantiles of the
  dev sets' errors (true - calibrated) among faces given a similar age, tabulated for several
  coverage levels (``classifier.age_range_coverage`` picks one). The error depends far more on the
  age itself (1-2 years for toddlers, 10-14 for adults) than on the spread of the network's
  distribution: at the same measured coverage, ranges from the spread were 1.6x wider (YuNet chips).
- gender: Platt scaling, ``sigmoid(a * logit(p_male) + b)``; the raw network says >= 95 % for
  73 % of the dev-set faces and is right for 93 % of those, and for 52-66 % of the rest.

``age_spread`` (standard deviation of the 81-way distribution, in calibrated years) is per face:
the range does not use it, but it does tell a blurred or turned view of a person from a clear one,
which is what a per-person fusion can weight by.

``LabelCalibration.identity()`` is the uncalibrated fallback: the raw values, and a rough
symmetric range (normal quantiles of a 9-year error, about the raw dev-set error; not measured).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import ModelError
from ..types import GenderAge, age_group_of

log = logging.getLogger(__name__)

CALIBRATION_SCHEMA = 1
# The range levels of the identity fallback: two-sided normal quantiles, a stand-in until measured.
_NORMAL_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
_NORMAL_K = (0.674, 0.842, 1.036, 1.282, 1.645, 1.960)
_FALLBACK_ERROR_YEARS = 9.0


@dataclass(frozen=True)
class LabelCalibration:
    """Fitted label calibration.

    ``age_knots_raw``/``age_knots``: ``(K,)`` float64 knots of the isotonic map (raw expected age
    -> years), raw increasing, years non-decreasing, flat beyond the ends. ``range_levels``:
    ``(L,)`` coverage levels, increasing in (0, 1); ``range_ages``: ``(A,)`` calibrated ages where
    the range is tabulated; ``range_lower``/``range_upper``: ``(L, A)`` years added to the age for
    the range's ends (nested: wider for higher levels). ``gender_a``/``gender_b``: Platt scaling
    of logit(p_male). ``source`` says where it came from ("uncalibrated" for the identity).
    """

    age_knots_raw: np.ndarray
    age_knots: np.ndarray
    range_levels: np.ndarray
    range_ages: np.ndarray
    range_lower: np.ndarray
    range_upper: np.ndarray
    gender_a: float
    gender_b: float
    source: str

    @classmethod
    def identity(cls) -> "LabelCalibration":
        half = np.array(_NORMAL_K)[:, None] * _FALLBACK_ERROR_YEARS * np.ones((1, 2))
        # The age map is the identity up to 120: face-api's regression, unlike Cydral's 0-80 bins, passes 80.
        return cls(
            np.array([0.0, 120.0]), np.array([0.0, 120.0]), np.array(_NORMAL_LEVELS), np.array([0.0, 80.0]),
            -half, half, 1.0, 0.0, "uncalibrated",
        )

    @property
    def calibrated(self) -> bool:
        return self.source != "uncalibrated"

    def age(self, age_raw: np.ndarray) -> np.ndarray:
        """Calibrated age in years for raw expected ages ``(N,)``; float32."""
        return np.interp(np.asarray(age_raw, np.float64), self.age_knots_raw, self.age_knots).astype(np.float32)

    def age_spread(self, age_prob: np.ndarray, age_weights: np.ndarray) -> np.ndarray:
        """Standard deviation in years of each ``(N, B)`` age distribution over ``age_weights``
        ``(B,)`` after the age map: ``(N,)`` float32."""
        prob = np.asarray(age_prob, np.float64)
        prob = prob / np.maximum(prob.sum(axis=1, keepdims=True), 1e-12)
        atoms = np.interp(np.asarray(age_weights, np.float64), self.age_knots_raw, self.age_knots)
        mean = prob @ atoms
        var = prob @ atoms**2 - mean**2
        return np.sqrt(np.maximum(var, 0.0)).astype(np.float32)

    def age_range(self, age: np.ndarray, coverage: float) -> np.ndarray:
        """``(N, 2)`` float32 [lo, hi] years meant to hold the true age for ``coverage`` of faces
        (interpolated between the tabulated levels and ages; lo at least 0)."""
        age = np.asarray(age, np.float64).reshape(-1)
        level = float(np.clip(coverage, self.range_levels[0], self.range_levels[-1]))
        ends = []
        for table in (self.range_lower, self.range_upper):
            at_ages = np.stack([np.interp(age, self.range_ages, row) for row in table])  # (L, N)
            ends.append(np.array([np.interp(level, self.range_levels, column) for column in at_ages.T]))
        lo = np.maximum(age + ends[0], 0.0)
        hi = np.maximum(age + ends[1], lo)
        return np.stack([lo, hi], axis=1).astype(np.float32)

    def p_male(self, p_male_raw: np.ndarray) -> np.ndarray:
        """Calibrated probability of male for raw network probabilities ``(N,)``; float32."""
        p = np.clip(np.asarray(p_male_raw, np.float64), 1e-6, 1 - 1e-6)
        z = self.gender_a * np.log(p / (1 - p)) + self.gender_b
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def labels(self, p_male_raw: np.ndarray, age_raw: np.ndarray, groups: Sequence[Tuple[int, int]],
               coverage: float, min_age: Optional[float] = None,
               age_spread: Optional[np.ndarray] = None) -> GenderAge:
        """A classifier's results for N faces from its own ``(N,)`` p_male and ages: both
        calibrated (the age never below ``min_age`` when given), the age group of each in
        ``groups``, the age range at ``coverage``, and ``age_spread`` as the network gives it."""
        age_years = self.age(age_raw)
        if min_age is not None:
            age_years = np.maximum(age_years, min_age).astype(np.float32)
        spread = {} if age_spread is None else {"age_spread": age_spread}  # else NaN: none
        return GenderAge(
            p_male=self.p_male(p_male_raw),
            age_years=age_years,
            age_group=age_group_of(age_years, groups),
            p_male_raw=p_male_raw,
            age_raw=age_raw,
            age_range=self.age_range(age_years, coverage),
            **spread,
        )


def _array(data: Dict[str, Any], key: str, where: str) -> np.ndarray:
    try:
        value = np.asarray(data[key], np.float64)
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{where}: '{key}' missing or not a list of numbers") from None
    if value.ndim != 1 or len(value) < 2 or not np.isfinite(value).all():
        raise ModelError(f"{where}: '{key}' must be a list of at least 2 finite numbers")
    return value


def parse_calibration(data: Any, where: str) -> LabelCalibration:
    """A LabelCalibration from the parsed JSON; ModelError naming the problem if it is malformed,
    not monotone, or its ranges are not nested."""
    if not isinstance(data, dict) or data.get("schema_version") != CALIBRATION_SCHEMA:
        raise ModelError(f"{where}: expected a JSON object with schema_version {CALIBRATION_SCHEMA}")
    try:
        age, age_range, gender = data["age"], data["age_range"], data["gender"]
        gender_a, gender_b = float(gender["platt_a"]), float(gender["platt_b"])
        lower = np.asarray(age_range["lower"], np.float64)
        upper = np.asarray(age_range["upper"], np.float64)
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{where}: expected sections age, age_range (levels, ages, lower, upper) and "
                         "gender (platt_a, platt_b)") from None
    knots_raw = _array(age, "raw_knots", where + " age")
    knots = _array(age, "knots", where + " age")
    levels = _array(age_range, "levels", where + " age_range")
    ages = _array(age_range, "ages", where + " age_range")
    if len(knots_raw) != len(knots):
        raise ModelError(f"{where}: age raw_knots and knots differ in length")
    if np.any(np.diff(knots_raw) <= 0) or np.any(np.diff(knots) < 0):
        raise ModelError(f"{where}: the age map is not monotone (raw knots must increase, ages must not decrease)")
    if lower.shape != (len(levels), len(ages)) or upper.shape != lower.shape or not np.isfinite([lower, upper]).all():
        raise ModelError(f"{where}: age_range lower and upper must be {len(levels)} x {len(ages)} finite numbers")
    if np.any(np.diff(levels) <= 0) or levels[0] <= 0 or levels[-1] >= 1 or np.any(np.diff(ages) <= 0):
        raise ModelError(f"{where}: age_range levels must increase within (0, 1) and ages must increase")
    if np.any(lower > upper) or np.any(np.diff(lower, axis=0) > 0) or np.any(np.diff(upper, axis=0) < 0):
        raise ModelError(f"{where}: age ranges must have lower <= upper and widen with the coverage level")
    if not (np.isfinite(gender_a) and np.isfinite(gender_b)) or gender_a <= 0:
        raise ModelError(f"{where}: gender platt_a must be a positive number (else p_male would invert)")
    return LabelCalibration(knots_raw, knots, levels, ages, lower, upper, gender_a, gender_b, where)


def load_calibration(path: Path, sha256: Optional[str]) -> LabelCalibration:
    """Read, checksum and validate a calibration file; ModelError naming the fix if it is missing,
    damaged (sha256 differs from ``sha256``) or malformed."""
    import hashlib

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ModelError(f"label calibration {path} cannot be read ({error}); restore it with "
                         f"`git checkout -- {path.name}` or set classifier.calibrate: false") from None
    got = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and got != sha256:
        raise ModelError(f"label calibration {path}: sha256 mismatch, expected {sha256}, got {got}; the file is "
                         "damaged or was refitted without updating streamer/data/manifest.json (calibrations)")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelError(f"label calibration {path} is not valid JSON: {error}") from None
    return parse_calibration(data, str(path))


def calibration_entry(manifest: Dict[str, Any], classifier_id: str) -> Optional[Tuple[str, str]]:
    """``(file name, sha256)`` of the calibration the manifest pins for a classifier model, or None."""
    entry = (manifest.get("calibrations") or {}).get(classifier_id)
    if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
        return None
    return str(entry["file"]), str(entry["sha256"])


def calibration_for(classifier_id: str, models_dir: Path, manifest: Dict[str, Any], enabled: bool) -> LabelCalibration:
    """The calibration to use for ``classifier_id``: the pinned file when ``enabled``, else (or
    when the file is missing or damaged: logged as a warning) the uncalibrated identity."""
    if not enabled:
        return LabelCalibration.identity()
    entry = calibration_entry(manifest, classifier_id)
    if entry is None:
        log.warning("no label calibration pinned for %s in streamer/data/manifest.json: ages and gender "
                    "probabilities are the network's own (uncalibrated)", classifier_id)
        return LabelCalibration.identity()
    try:
        return load_calibration(Path(models_dir) / entry[0], entry[1])
    except ModelError as error:
        log.warning("%s; using uncalibrated ages and gender probabilities", error)
        return LabelCalibration.identity()
