"""Fitting the label calibration (numpy only): isotonic age map, age-range width, gender scaling.

Used by ``tools/eval_accuracy.py`` (cross-validated measurement, and ``--write-calibration``).
The run-time side, which only applies what is fitted here, is ``streamer/classifiers/calibration.py``.

Age truths may be exact (UTKFace: ``lo == hi``) or an age group (FairFace: ``lo < hi``). Every fit
minimises the distance from the prediction to the truth's interval (0 inside it), which is the
absolute error for exact ages: the same L1 loss that the MAE reports.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The midpoint of the set of weighted medians (values sorted or not)."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    half = cum[-1] / 2.0
    lo = v[np.searchsorted(cum, half, side="left")]
    # Where the cumulative weight hits exactly one half, every value up to the next one is a median.
    hi = v[min(np.searchsorted(cum, half, side="right"), len(v) - 1)] if np.isclose(cum, half).any() else lo
    return float((lo + hi) / 2.0)


def isotonic_interval_l1(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Non-decreasing f minimising sum_i dist(f(x_i), [lo_i, hi_i]); returns knots ``(xs, ys)``.

    dist(y, [lo, hi]) equals (|y - lo| + |y - hi|) / 2 minus a constant, so this is L1 isotonic
    regression with every sample entered twice (at lo and at hi, half weight), solved by
    pool-adjacent-violators with weighted medians. Knots sit at each pooled block's mean x, for
    linear interpolation (``np.interp``: flat beyond the ends), which keeps the map monotone.
    """
    x, lo, hi = (np.asarray(a, np.float64) for a in (x, lo, hi))
    order = np.argsort(x, kind="stable")
    x, lo, hi = x[order], lo[order], hi[order]
    # Blocks: [x values, targets, weights, value]; equal x must share a value, so they start pooled.
    blocks: List[Tuple[List[float], List[float], List[float], float]] = []
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and x[end + 1] == x[start]:
            end += 1
        xs = list(x[start : end + 1])
        targets = list(lo[start : end + 1]) + list(hi[start : end + 1])
        weights = [0.5] * len(targets)
        value = weighted_median(np.array(targets), np.array(weights))
        blocks.append((xs, targets, weights, value))
        while len(blocks) > 1 and blocks[-2][3] > blocks[-1][3]:
            b = blocks.pop()
            a = blocks.pop()
            targets = a[1] + b[1]
            weights = a[2] + b[2]
            blocks.append((a[0] + b[0], targets, weights, weighted_median(np.array(targets), np.array(weights))))
        start = end + 1
    knots_x = np.array([np.mean(b[0]) for b in blocks])
    knots_y = np.array([b[3] for b in blocks])
    return knots_x, knots_y


def interval_distance(pred: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far each prediction is outside its truth interval (0 inside); the MAE for exact ages."""
    return np.maximum(lo - pred, 0.0) + np.maximum(pred - hi, 0.0)


def range_table(pred: np.ndarray, truth: np.ndarray, ages: Sequence[float],
                levels: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Quantiles of the error ``truth - pred`` among faces predicted near each of ``ages``:
    ``(lower, upper)``, each ``(len(levels), len(ages))``, the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles over the faces whose prediction lies between the neighbouring
    ages (a window as wide as the table's spacing there). Ranges widen with the level."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    error = truth - pred
    centres = np.asarray(ages, np.float64)
    lower = np.zeros((len(levels), len(centres)))
    upper = np.zeros_like(lower)
    for j, centre in enumerate(centres):
        left = centres[j - 1] if j > 0 else -np.inf
        right = centres[j + 1] if j + 1 < len(centres) else np.inf
        window = error[(pred >= left) & (pred <= right)]
        if len(window) < 10:
            raise ValueError(f"only {len(window)} faces predicted near age {centre:g}; use fewer table ages")
        for i, level in enumerate(levels):
            lower[i, j] = np.quantile(window, (1 - level) / 2)
            upper[i, j] = np.quantile(window, (1 + level) / 2)
    return np.minimum.accumulate(lower, axis=0), np.maximum.accumulate(upper, axis=0)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _log_loss(features: np.ndarray, t: np.ndarray, params: np.ndarray, ridge: float) -> float:
    z = features @ params
    # log(1 + exp(-z)) for t = 1, log(1 + exp(z)) for t = 0, without overflow.
    return float(np.sum(np.logaddexp(0.0, np.where(t > 0.5, -z, z))) + 0.5 * ridge * params @ params)


def fit_platt(p: np.ndarray, truth: np.ndarray, iterations: int = 100) -> Tuple[float, float]:
    """``(a, b)`` of sigmoid(a * logit(p) + b) that minimise the log loss on ``truth`` (bool):
    Newton's method with step halving (the raw network is so over-confident that a full Newton
    step from a = 1 overshoots), and a small ridge so that separable data stays finite."""
    z = logit(p)
    t = np.asarray(truth, np.float64)
    features = np.stack([z, np.ones_like(z)], axis=1)
    params = np.array([1.0, 0.0])
    ridge = 1e-3
    loss = _log_loss(features, t, params, ridge)
    for _ in range(iterations):
        q = 0.5 * (1.0 + np.tanh(0.5 * (features @ params)))
        grad = features.T @ (q - t) + ridge * params
        hess = (features * (q * (1 - q))[:, None]).T @ features + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:
            trial = params - scale * step
            trial_loss = _log_loss(features, t, trial, ridge)
            if trial_loss <= loss:
                break
            scale /= 2.0
        else:
            break
        params, improvement, loss = trial, loss - trial_loss, trial_loss
        if improvement < 1e-10:
            break
    return float(params[0]), float(params[1])


def expected_calibration_error(p_male: np.ndarray, truth_male: np.ndarray, bins: int = 10) -> float:
    """ECE of the stated gender's confidence max(p, 1 - p): the count-weighted gap between mean
    confidence and accuracy over ``bins`` equal-width confidence bins in [0.5, 1]."""
    p = np.asarray(p_male, np.float64)
    conf = np.maximum(p, 1 - p)
    right = (p >= 0.5) == np.asarray(truth_male, bool)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(conf[mask].mean() - right[mask].mean())
    return float(total / max(len(p), 1))


def stratified_folds(strata: Sequence[object], folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per sample, each stratum (dataset x age group x gender) dealt round-robin
    over the folds after a seeded shuffle, so every fold holds every kind of face."""
    rng = np.random.default_rng(seed)
    strata = np.asarray([str(s) for s in strata])
    fold = np.zeros(len(strata), np.int64)
    offset = 0
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        rng.shuffle(members)
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold
