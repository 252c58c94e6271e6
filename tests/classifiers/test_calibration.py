"""Label calibration: the shipped file (checksum, monotone, nested ranges), its fallbacks, and the
range / confidence arithmetic on hand-made distributions and tables."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from streamer.classifiers.calibration import (
    LabelCalibration,
    calibration_entry,
    calibration_for,
    load_calibration,
    parse_calibration,
)
from streamer.classifiers.cydral import CYDRAL_AGE_WEIGHTS, CydralGenderAge
from streamer.config import ClassifierConfig
from streamer.errors import ModelError
from streamer.models.store import MANIFEST_PATH, load_manifest
from streamer.picture.draw import LabelStyle, label_for
from streamer.types import Face, GenderAge

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import label_fit  # noqa: E402

GROUPS = ClassifierConfig().age_groups


def shipped() -> tuple:
    entry = calibration_entry(load_manifest(), "cydral_age_gender")
    assert entry is not None, "streamer/data/manifest.json must pin calibrations.cydral_age_gender (file, sha256)"
    return MANIFEST_PATH.parent / entry[0], entry[1]


def small_doc() -> dict:
    return {
        "schema_version": 1,
        "age": {"raw_knots": [10.0, 30.0, 50.0], "knots": [5.0, 30.0, 70.0]},
        "age_range": {
            "levels": [0.5, 0.8],
            "ages": [10.0, 50.0],
            "lower": [[-1.0, -5.0], [-2.0, -10.0]],
            "upper": [[1.0, 5.0], [2.0, 10.0]],
        },
        "gender": {"platt_a": 0.5, "platt_b": 0.0},
    }


# ---- the shipped file -------------------------------------------------------------------------------


def test_shipped_calibration_loads_with_its_checksum_and_is_monotone():
    path, sha = shipped()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    cal = load_calibration(path, sha)
    assert cal.calibrated
    ages = cal.age(np.linspace(0, 80, 801))
    assert np.all(np.diff(ages) >= 0), "the age map must never decrease"
    assert ages[0] < 10 and ages[-1] > 60, "the map should stretch the network's regression to the middle"
    widths = [np.diff(cal.age_range(np.array([35.0]), c)[0])[0] for c in (0.5, 0.8, 0.95)]
    assert widths == sorted(widths), "higher coverage must give wider ranges"
    p = cal.p_male(np.array([0.01, 0.5, 0.99]))
    assert p[0] < p[1] < p[2]


def test_pipeline_uses_the_shipped_calibration(caplog):
    with caplog.at_level(logging.WARNING):
        cal = calibration_for("cydral_age_gender", MANIFEST_PATH.parent, load_manifest(), enabled=True)
    assert cal.calibrated and not caplog.records


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.unlink(), "cannot be read"),
        (lambda p: p.write_bytes(p.read_bytes() + b" "), "sha256 mismatch"),
        (lambda p: p.write_bytes(p.read_bytes()[:40]), "sha256 mismatch"),
    ],
)
def test_missing_or_damaged_file_is_a_clear_error_and_a_logged_fallback(tmp_path, caplog, damage, message):
    path, sha = shipped()
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    damage(copy)
    with pytest.raises(ModelError, match=message):
        load_calibration(copy, sha)
    manifest = {"calibrations": {"cydral_age_gender": {"file": path.name, "sha256": sha}}}
    with caplog.at_level(logging.WARNING, logger="streamer.classifiers.calibration"):
        cal = calibration_for("cydral_age_gender", tmp_path, manifest, enabled=True)
    assert not cal.calibrated
    assert any(message in r.getMessage() and "uncalibrated" in r.getMessage() for r in caplog.records)


def test_calibration_off_or_unpinned_gives_the_identity(caplog):
    assert not calibration_for("cydral_age_gender", MANIFEST_PATH.parent, load_manifest(), enabled=False).calibrated
    with caplog.at_level(logging.WARNING, logger="streamer.classifiers.calibration"):
        assert not calibration_for("cydral_age_gender", MANIFEST_PATH.parent, {"models": {}}, enabled=True).calibrated
    assert any("no label calibration" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["age"].update(knots=[5.0, 40.0, 30.0]), "not monotone"),
        (lambda d: d["age"].update(raw_knots=[10.0, 10.0, 50.0]), "not monotone"),
        (lambda d: d["age"].update(knots=[5.0, 30.0]), "differ in length"),
        (lambda d: d["age_range"].update(upper=[[3.0, 5.0], [2.0, 10.0]]), "widen"),
        (lambda d: d["age_range"].update(levels=[0.5, 1.0]), "levels must increase"),
        (lambda d: d["age_range"].update(lower=[[-1.0], [-2.0]]), "2 x 2"),
        (lambda d: d["gender"].update(platt_a=-1.0), "positive"),
        (lambda d: d.pop("gender"), "expected sections"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_malformed_calibration_is_rejected(change, message):
    doc = small_doc()
    change(doc)
    with pytest.raises(ModelError, match=message):
        parse_calibration(json.loads(json.dumps(doc)), "test.json")


# ---- arithmetic on hand-made tables and distributions ------------------------------------------------


def test_age_map_interpolates_between_knots_and_is_flat_beyond():
    cal = parse_calibration(small_doc(), "t")
    np.testing.assert_allclose(cal.age(np.array([0.0, 10.0, 20.0, 40.0, 50.0, 80.0])), [5, 5, 17.5, 50, 70, 70])


@pytest.mark.parametrize(
    "age, coverage, expected",
    [
        (10.0, 0.5, (9.0, 11.0)),
        (50.0, 0.8, (40.0, 60.0)),
        (30.0, 0.5, (27.0, 33.0)),  # halfway between the tabulated ages
        (50.0, 0.65, (42.5, 57.5)),  # halfway between the levels
        (1.0, 0.8, (0.0, 3.0)),  # never below 0
        (50.0, 0.99, (40.0, 60.0)),  # beyond the table: its widest level
    ],
)
def test_age_range_from_the_table(age, coverage, expected):
    cal = parse_calibration(small_doc(), "t")
    np.testing.assert_allclose(cal.age_range(np.array([age]), coverage)[0], expected, atol=1e-4)


def test_age_spread_of_hand_made_distributions():
    identity = LabelCalibration.identity()
    one_age = np.zeros((1, 81), np.float32)
    one_age[0, 30] = 1.0
    two_ages = np.zeros((1, 81), np.float32)
    two_ages[0, [20, 40]] = 0.5
    spread = identity.age_spread(np.concatenate([one_age, two_ages]), CYDRAL_AGE_WEIGHTS)
    np.testing.assert_allclose(spread, [0.0, 10.0], atol=1e-4)
    # The spread is measured in calibrated years: a map that doubles ages doubles it.
    doubling = parse_calibration(
        {**small_doc(), "age": {"raw_knots": [0.0, 80.0], "knots": [0.0, 160.0]}}, "t"
    )
    np.testing.assert_allclose(doubling.age_spread(two_ages, CYDRAL_AGE_WEIGHTS), [20.0], atol=1e-3)


@pytest.mark.parametrize("p_raw", [0.001, 0.3, 0.5, 0.9, 0.99999])
def test_platt_scaling_keeps_the_side_and_softens_overconfidence(p_raw):
    cal = parse_calibration(small_doc(), "t")  # a = 0.5: half the logit
    p = float(cal.p_male(np.array([p_raw]))[0])
    assert (p >= 0.5) == (p_raw >= 0.5)
    assert abs(p - 0.5) <= abs(p_raw - 0.5) + 1e-6


def test_postprocess_carries_raw_calibrated_range_and_spread():
    cal = parse_calibration(small_doc(), "t")
    age = np.zeros((1, 81), np.float32)
    age[0, 30] = 1.0
    result = CydralGenderAge._postprocess(np.array([[0.1, 0.9]], np.float32), age, GROUPS, cal, 0.5)
    assert result.age_raw[0] == pytest.approx(30.0) and result.age_years[0] == pytest.approx(30.0)
    assert result.p_male_raw[0] == pytest.approx(0.9) and 0.5 < result.p_male[0] < 0.9
    np.testing.assert_allclose(result.age_range[0], (27.0, 33.0), atol=1e-4)
    assert result.age_spread[0] == pytest.approx(0.0, abs=1e-4)
    assert result.age_group == ("30-39",)


def test_gender_age_defaults_keep_shapes_for_models_without_ranges():
    labels = GenderAge(np.array([0.7], np.float32), np.array([30.0], np.float32), ("30-39",))
    assert labels.age_raw[0] == 30.0 and labels.p_male_raw[0] == pytest.approx(0.7)
    assert labels.age_range.shape == (1, 2) and np.isnan(labels.age_range).all()
    empty = GenderAge.empty()
    assert empty.age_range.shape == (0, 2) and empty.age_range.dtype == np.float32
    with pytest.raises(ValueError, match="age_range"):
        GenderAge(np.zeros(2, np.float32), np.zeros(2, np.float32), ("a", "b"), age_range=np.zeros((2, 3)))


# ---- label text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "face, text",
    [
        (Face((0, 0, 1, 1), 0.9, "female", 0.93, 34.4, "30-39", True, age_range=(29.6, 40.2)), "female 93% | 34y (30-40)"),
        (Face((0, 0, 1, 1), 0.9, "female", 0.62, 34.4, "30-39", True, age_range=(29.6, 40.2)), "female? | 34y (30-40)"),
        (Face((0, 0, 1, 1), 0.9, "male", 0.95, 36.0, "30-39", True, age_range=(24.0, 49.0)), "male 95% | age 24-49"),
        (Face((0, 0, 1, 1), 0.9, "male", 0.55, 36.0, "30-39", True, age_range=(24.0, 49.0), track=7), "#7 male? | age 24-49"),
        (Face((0, 0, 1, 1), 0.9, "male", 0.9, 36.0, "30-39", True), "male 90% | 36y (30-39)"),  # no range: the group
    ],
)
def test_label_admits_doubt(face, text):
    assert label_for(face, LabelStyle(min_gender_p=0.8, max_age_range_years=20)) == text


def test_label_style_from_config():
    style = LabelStyle.from_config(ClassifierConfig(label_min_gender_p=0.5, label_max_age_range_years=100))
    face = Face((0, 0, 1, 1), 0.9, "female", 0.6, 34.0, "30-39", True, age_range=(24.0, 49.0))
    assert label_for(face, style) == "female 60% | 34y (24-49)"


def test_face_event_carries_raw_age_and_range():
    event = Face((0, 0, 1, 1), 0.9, "female", 0.9, 34.44, "30-39", True, age_raw=31.26, age_range=(29.61, 40.2)).to_event()
    assert event["age_raw"] == 31.3 and event["age_range"] == [29.6, 40.2]
    assert Face((0, 0, 1, 1), 0.9, too_small=True).to_event()["age_range"] is None


# ---- the fitting tool (numpy only) ------------------------------------------------------------------


def test_isotonic_interval_l1_pools_violators_and_uses_intervals():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    knots_x, knots_y = label_fit.isotonic_interval_l1(x, np.array([10.0, 30.0, 20.0, 40.0]), np.array([10.0, 30.0, 20.0, 40.0]))
    assert np.all(np.diff(knots_y) >= 0)
    np.testing.assert_allclose(knots_y, [10.0, 25.0, 40.0])  # 30 and 20 pooled to their median
    # An interval truth costs nothing inside it: [0, 100] never pulls the fit.
    _, ys = label_fit.isotonic_interval_l1(np.array([1.0, 2.0]), np.array([0.0, 50.0]), np.array([100.0, 50.0]))
    assert ys[-1] == 50.0 and ys[0] <= 50.0


def test_platt_fit_recovers_a_known_scaling():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 6, 4000)
    truth = rng.random(4000) < 1 / (1 + np.exp(-(0.4 * z + 0.3)))
    a, b = label_fit.fit_platt(1 / (1 + np.exp(-z)), truth)
    assert a == pytest.approx(0.4, abs=0.05) and b == pytest.approx(0.3, abs=0.15)


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy():
    p = np.array([0.9] * 10 + [0.1] * 10)
    truth = np.array([True] * 9 + [False] + [False] * 9 + [True])
    assert label_fit.expected_calibration_error(p, truth) == pytest.approx(0.0, abs=1e-9)
    assert label_fit.expected_calibration_error(np.full(10, 0.99), np.zeros(10, bool)) == pytest.approx(0.99)
