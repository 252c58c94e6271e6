"""A queue of labelled faces at one spot (issue 16): one person per face, and per-person ages that
are no worse than single frames. Real models, UTKFace chips from ../shared, bench/fusion.py's clip."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamer.config import Config
from streamer.pipeline import build_analyzer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import fusion  # noqa: E402

pytestmark = pytest.mark.integration


def test_a_queue_of_people_is_counted_person_by_person(models_env):
    config = Config()
    people = fusion.pick_people(6, seed=0)  # 1, 7, 16, 20, 39 and 45 years
    result = fusion.evaluate(people, build_analyzer(config), config, seed=0)
    assert result["people_counted"] == len(people), result["rows"]
    rows = result["rows"]
    assert all(row["fused_age"] is not None for row in rows), rows
    assert result["fused_over_single_error"] <= 1.0, rows
