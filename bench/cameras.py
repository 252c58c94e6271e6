"""How many 640x480 cameras at 15 fps one box carries in tracked mode.

    python3 bench/cameras.py [--cameras 1 2 3 4] [--seconds 40] [--json out/cameras.json]

For each N: one RTSP test server (tests/rtsp_server.py, Debian's python3 with GStreamer) streams a
640x480 15 fps H.264 clip made from the shared Tears of Steel clip (people talking: faces to
track), N cameras of one site config read it (`run.py run --config site.yaml`, tracked mode, one
worker process each), for --seconds; then SIGTERM. Per camera: fps out and frames dropped (its own
summary: a live source keeps only the newest frame, so any frame the worker could not take in time
is dropped and counted; both over the steady part, from the events' frame numbers), CPU (utime + stime of the worker from /proc over the steady part, after
every camera's first frame) and peak resident memory (VmHWM). The machine's load average before
each N is printed: on a shared machine the figures are of a loaded box.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
SHARED_MEDIA = Path(os.environ.get("STREAMER_SHARED", REPO.parent / "shared")) / "media"
SOURCE_CLIP = "blender_tears_of_steel_10s.mp4"
TICKS = os.sysconf("SC_CLK_TCK")


def make_clip(folder: Path) -> Path:
    """The shared clip as 640x480 (scaled, not letterboxed: a camera's picture) 15 fps H.264."""
    out = folder / "tears_640x480_15fps.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(SHARED_MEDIA / SOURCE_CLIP), "-vf",
                    "scale=640:480,fps=15", "-c:v", "libx264", "-preset", "veryfast", "-g", "15", "-an", str(out)],
                   check=True, timeout=300)
    return out


def start_rtsp(clip: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), "--port", str(port),
                             "--media", str(clip)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise SystemExit(f"RTSP test server did not start: {line!r} {proc.communicate()[1]}")
    return proc


def _workers(pid: int) -> List[int]:
    """The supervisor's camera workers (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return [child for child in found if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()]


def _steady(events: Path, start: float, end: float) -> Dict:
    """fps and frames dropped between two wall-clock times, from the events file's frame numbers
    (the summary's counts include the start, when the camera opens before the models are loaded)."""
    frames = [json.loads(line) for line in events.read_text().splitlines() if '"faces"' in line]
    index = [f["frame"] for f in frames if start <= f["timestamp"] <= end]
    if len(index) < 2:
        return {"fps": 0.0, "dropped_pct": None}
    span = index[-1] - index[0] + 1
    return {"fps": round(len(index) / (end - start), 2), "dropped_pct": round(100 * (span - len(index)) / span, 1)}


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_site(count: int, url: str, folder: Path, seconds: float) -> Dict:
    site = folder / f"n{count}"
    site.mkdir()
    cameras = "\n".join(f"  cam{i}: {{source: '{url}', mode: tracked, events: {site}/cam{i}.jsonl}}"
                        for i in range(count))
    (site / "site.yaml").write_text(f"cameras:\n{cameras}\n")
    load = os.getloadavg()
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), "run", "--config", str(site / "site.yaml"),
                             "--summary", str(site / "site.json")], cwd=site, stdout=subprocess.DEVNULL,
                            stderr=open(site / "log.txt", "w"))
    # Steady part: from every camera's first event line to the stop.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            (site / f"cam{i}.jsonl").exists() and (site / f"cam{i}.jsonl").stat().st_size for i in range(count)):
        time.sleep(0.2)
    workers = _workers(proc.pid)
    wall0 = time.time()
    cpu0, t0 = {pid: _cpu_s(pid) for pid in workers}, time.monotonic()
    hwm = {pid: 0.0 for pid in workers}
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        for pid in workers:
            hwm[pid] = max(hwm[pid], _hwm_mb(pid))
    cpu = {pid: (_cpu_s(pid) - cpu0[pid]) / (time.monotonic() - t0) * 100 for pid in workers}
    wall1 = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    summary = json.loads((site / "site.json").read_text())
    rows = []
    for name, camera in summary["cameras"].items():
        rows.append({"camera": name, **_steady(site / f"{name}.jsonl", wall0, wall1),
                     "dropped_whole_run": camera.get("dropped"), "frames_read": camera.get("frames_read"),
                     "restarts": camera["restarts"]})
    return {"cameras": count, "load_before": [round(v, 2) for v in load], "per_camera": rows,
            "cpu_pct_per_worker": [round(v) for v in cpu.values()], "rss_peak_mb_per_worker": [round(v) for v in hwm.values()],
            "cpu_pct_total": round(sum(cpu.values())), "restarts": summary["site"]["restarts"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seconds", type=float, default=40.0, help="steady seconds per N")
    parser.add_argument("--port", type=int, default=18655)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rtsp = start_rtsp(make_clip(folder), args.port)
        try:
            for count in args.cameras:
                result = run_site(count, f"rtsp://127.0.0.1:{args.port}/stream", folder, args.seconds)
                results.append(result)
                fps = ", ".join(f"{row['fps']:.1f}" for row in result["per_camera"])
                dropped = ", ".join(f"{row['dropped_pct']:.1f}" for row in result["per_camera"])
                print(f"N={count}: fps {fps}; dropped % {dropped}; CPU % per worker {result['cpu_pct_per_worker']} "
                      f"(total {result['cpu_pct_total']}); peak RSS MB {result['rss_peak_mb_per_worker']}; "
                      f"load before {result['load_before']}", flush=True)
        finally:
            rtsp.kill()
            rtsp.communicate(timeout=10)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"nproc": os.cpu_count(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
