"""Label calibration at run time: calibrated age, an age range that covers what it claims, and a
gender probability that means what it says.

The numbers come from ``models/age_calibration.json`` (fitted by ``tools/eval_accuracy.py
--write-calibration`` on the dev sets, cross-validated; its sha256 is pinned in
``models/manifest.json`` under ``calibrations``). This module only applies them:

- age: a monotone (isotonic) map from the network's expected age to age in years. The network's
  0-80 output regresses to the middle (children read old, old people read young); the map undoes
  that as far as the dev sets show it.
- age range: ``age +- k * spread``, where spread is the standard deviation of the network's
  81-way distribution pushed through the same map, and ``k`` was chosen on the dev sets so that
  the range reaches the true age for the stated share of faces (``classifier.age_range_coverage``).
- gender: Platt scaling, ``sigmoid(a * logit(p_male) + b)``.

``LabelCalibration.identity()`` is the uncalibrated fallback: the raw values, and a range from the
raw spread with the normal distribution's k (its coverage is not measured).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

CALIBRATION_SCHEMA = 1
# The range levels of the identity fallback: two-sided normal quantiles, a stand-in until measured.
_NORMAL_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
_NORMAL_K = (0.674, 0.842, 1.036, 1.282, 1.645, 1.960)


@dataclass(frozen=True)
class LabelCalibration:
    """Fitted label calibration. ``age_knots_raw``/``age_knots``: ``(K,)`` float64, the isotonic
    map's knots (raw expected age -> years), non-decreasing, flat beyond the ends;
    ``range_levels``/``range_k``: ``(L,)`` coverage levels and their spread multipliers;
    ``gender_a``/``gender_b``: Platt scaling of logit(p_male). ``source`` says where it came from."""

    age_knots_raw: np.ndarray
    age_knots: np.ndarray
    range_levels: np.ndarray
    range_k: np.ndarray
    gender_a: float
    gender_b: float
    source: str

    @classmethod
    def identity(cls) -> "LabelCalibration":
        return cls(
            np.array([0.0, 80.0]), np.array([0.0, 80.0]), np.array(_NORMAL_LEVELS), np.array(_NORMAL_K),
            1.0, 0.0, "uncalibrated",
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

    def range_k_for(self, coverage: float) -> float:
        """The spread multiplier for a coverage level (interpolated between the fitted levels)."""
        return float(np.interp(coverage, self.range_levels, self.range_k))

    def age_range(self, age: np.ndarray, spread: np.ndarray, coverage: float) -> np.ndarray:
        """``(N, 2)`` float32 [lo, hi] years: ``age +- k(coverage) * spread``, lo at least 0."""
        half = self.range_k_for(coverage) * np.asarray(spread, np.float64)
        age = np.asarray(age, np.float64)
        return np.stack([np.maximum(age - half, 0.0), age + half], axis=1).astype(np.float32)

    def p_male(self, p_male_raw: np.ndarray) -> np.ndarray:
        """Calibrated probability of male for raw network probabilities ``(N,)``; float32."""
        p = np.clip(np.asarray(p_male_raw, np.float64), 1e-6, 1 - 1e-6)
        z = self.gender_a * np.log(p / (1 - p)) + self.gender_b
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def _array(data: Dict[str, Any], key: str, where: str) -> np.ndarray:
    try:
        value = np.asarray(data[key], np.float64)
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{where}: '{key}' missing or not a list of numbers") from None
    if value.ndim != 1 or len(value) < 2 or not np.isfinite(value).all():
        raise ModelError(f"{where}: '{key}' must be a list of at least 2 finite numbers")
    return value


def parse_calibration(data: Any, where: str) -> LabelCalibration:
    """A LabelCalibration from the parsed JSON; ModelError naming the problem if it is malformed
    or not monotone."""
    if not isinstance(data, dict) or data.get("schema_version") != CALIBRATION_SCHEMA:
        raise ModelError(f"{where}: expected a JSON object with schema_version {CALIBRATION_SCHEMA}")
    try:
        age, age_range, gender = data["age"], data["age_range"], data["gender"]
        gender_a, gender_b = float(gender["platt_a"]), float(gender["platt_b"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{where}: expected sections age, age_range and gender (platt_a, platt_b)") from None
    knots_raw = _array(age, "raw_knots", where + " age")
    knots = _array(age, "knots", where + " age")
    levels = _array(age_range, "levels", where + " age_range")
    ks = _array(age_range, "k", where + " age_range")
    if len(knots_raw) != len(knots) or len(levels) != len(ks):
        raise ModelError(f"{where}: knot lists (or levels and k) differ in length")
    if np.any(np.diff(knots_raw) <= 0) or np.any(np.diff(knots) < 0):
        raise ModelError(f"{where}: the age map is not monotone (raw knots must increase, ages must not decrease)")
    if np.any(np.diff(levels) <= 0) or np.any(np.diff(ks) < 0) or levels[0] <= 0 or levels[-1] >= 1 or ks[0] < 0:
        raise ModelError(f"{where}: age_range levels must increase within (0, 1) and k must not decrease")
    if not (np.isfinite(gender_a) and np.isfinite(gender_b)) or gender_a <= 0:
        raise ModelError(f"{where}: gender platt_a must be a positive number (else p_male would invert)")
    return LabelCalibration(knots_raw, knots, levels, ks, gender_a, gender_b, where)


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
                         "damaged or was refitted without updating models/manifest.json (calibrations)")
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
        log.warning("no label calibration pinned for %s in models/manifest.json: ages and gender "
                    "probabilities are the network's own (uncalibrated)", classifier_id)
        return LabelCalibration.identity()
    try:
        return load_calibration(Path(models_dir) / entry[0], entry[1])
    except ModelError as error:
        log.warning("%s; using uncalibrated ages and gender probabilities", error)
        return LabelCalibration.identity()
