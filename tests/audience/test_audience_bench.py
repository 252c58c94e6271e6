"""bench/audience.py still runs (tiniest settings) and reports every case; no timing thresholds."""

from __future__ import annotations

import importlib.util
import json
import sys

from conftest import REPO


def test_the_audience_bench_reports_every_case(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_audience", REPO / "bench" / "audience.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--frames", "30", "--repeats", "1", "--json", str(tmp_path / "b.json")]) == 0
    figures = json.loads((tmp_path / "b.json").read_text())
    assert [(r["zones"], r["lines"], r["faces"]) for r in figures["update"]] == list(module.CASES)
    assert all(0 < r["p50_us"] <= r["p99_us"] for r in figures["update"])
    assert any(r["records"] for r in figures["update"])  # the walks do enter zones and cross lines
    assert [r["frame"] for r in figures["overlay"]] == ["640x360", "1280x720"]
    assert "CPU per frame" in capsys.readouterr().out
