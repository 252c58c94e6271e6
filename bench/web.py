"""The web service's figures: photo analysis throughput and latency, the memory of 12 MP uploads,
and the memory the service adds to a live run.

    python bench/web.py [--requests 20] [--uploads 200] [--parallel 20] [--seconds 60]
                        [--skip-photos] [--skip-uploads] [--skip-memory] [--json out/web.json]

Photos: `run.py serve` in a child process; POST /api/analyze with the group photo from
../shared/media, by 1 and by 4 concurrent clients (each on its own connection), after two warm-up
requests; prints requests/s, p50 and p95 latency.

Memory: a 640x480 H.264 clip (../shared's Tears of Steel scaled and padded with ffmpeg) streamed in
a loop by the RTSP test server (tests/rtsp_server.py), watched for ``--seconds`` by (a) `run.py
--source rtsp://...` and (b) `run.py serve --source rtsp://...` with 4 MJPEG viewers reading the
stream; prints each child's mean resident memory (VmRSS) over the second half, the difference
(target: at most 30 MB), and how long Ctrl-C (SIGINT) takes to stop `serve` with the viewers attached.
Uploads: `run.py serve` (photos only) gets a 4000x3000 JPEG (the group photo scaled up) ``--uploads``
times one after another, then ``--parallel`` times at once; prints VmRSS after 1, 12 and all of
them, and VmHWM (the peak); target: peak at most 200 MB over the idle service, flat over the uploads.

The load average is printed before and after: other work on the machine slows the photo figures.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import write_json  # noqa: E402
from soak import REPO, SHARED, free_port, interrupt, rss_mb, start_server  # noqa: E402

GROUP = SHARED / "media" / "pexels_group_meeting_1080865.jpeg"
TEARS = SHARED / "media" / "blender_tears_of_steel_10s.mp4"
SERVE_START_S = 120.0


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.setdefault("STREAMER_MODELS_DIR", os.pathsep.join([str(SHARED / "models"), str(REPO / "models")]))
    env.pop("DISPLAY", None)
    return env


def start_serve(extra: Sequence[str]) -> "tuple[subprocess.Popen, str]":
    """`run.py serve --port 0 ...` and its URL (from the "serving on" log line)."""
    child = subprocess.Popen([sys.executable, str(REPO / "run.py"), "serve", "--port", "0", *extra],
                             env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        line = child.stderr.readline()
        if not line:
            break
        if "serving on " in line:
            url = line.split("serving on ")[1].split()[0]
            threading.Thread(target=child.stderr.read, daemon=True).start()  # keep the pipe drained
            return child, url
    child.kill()
    raise SystemExit(f"bench/web: serve did not start: {child.stderr.read()[-500:]}")


def _host_port(url: str) -> "tuple[str, int]":
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    return host, int(port)


def photo_throughput(requests: int) -> List[Dict[str, object]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"group.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + GROUP.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    child, url = start_serve([])
    host, port = _host_port(url)
    rows = []
    try:
        def client(count: int) -> List[float]:
            conn = http.client.HTTPConnection(host, port, timeout=120)
            times = []
            for _ in range(count):
                t0 = time.perf_counter()
                conn.request("POST", "/api/analyze", body, headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"bench/web: /api/analyze answered {response.status}")
                times.append(time.perf_counter() - t0)
            conn.close()
            return times

        client(2)  # warm-up: first-use costs (thread pools, allocations)
        for clients in (1, 4):
            per_client = max(1, requests // clients)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = [t for times in pool.map(client, [per_client] * clients) for t in times]
            wall = time.perf_counter() - t0
            rows.append({"clients": clients, "requests": len(latencies), "req_per_s": len(latencies) / wall,
                         "p50_ms": float(np.percentile(latencies, 50) * 1000),
                         "p95_ms": float(np.percentile(latencies, 95) * 1000)})
    finally:
        interrupt(child)
    return rows


def photo_12mp(folder: Path) -> Path:
    """The group photo scaled to 4000x3000 (12 MP, a phone camera's photo) as a JPEG."""
    import cv2

    out = folder / "group_12mp.jpg"
    cv2.imwrite(str(out), cv2.resize(cv2.imread(str(GROUP)), (4000, 3000), interpolation=cv2.INTER_CUBIC),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise SystemExit(f"bench/web: no {field} for {pid}")


def upload_memory(sequential: int, parallel: int) -> Dict[str, object]:
    """Resident memory of `serve` (photos only) at start, after 1, 12 and ``sequential`` uploads of a
    12 MP JPEG one after another, and after ``parallel`` at once: VmRSS after each step and VmHWM
    (the peak so far). Every answer must be 200 or a 503 with Retry-After."""
    with tempfile.TemporaryDirectory(prefix="streamer-bench-web-") as tmp:
        photo = photo_12mp(Path(tmp)).read_bytes()
        child, url = start_serve([])
        host, port = _host_port(url)
        statuses: Dict[int, int] = {}

        def upload(_: int = 0) -> None:
            conn = http.client.HTTPConnection(host, port, timeout=300)
            try:
                conn.request("POST", "/api/analyze", photo, {"Content-Type": "image/jpeg"})
                response = conn.getresponse()
                response.read()
                if response.status == 503 and not response.getheader("Retry-After"):
                    raise SystemExit("bench/web: a 503 without Retry-After")
                statuses[response.status] = statuses.get(response.status, 0) + 1
            finally:
                conn.close()

        steps: List[Dict[str, object]] = []

        def note(label: str) -> None:
            steps.append({"after": label, "rss_mb": _status_mb(child.pid, "VmRSS"),
                          "peak_mb": _status_mb(child.pid, "VmHWM")})

        try:
            note("start")
            done = 0
            for mark in sorted({mark for mark in (1, 12, sequential) if mark <= sequential}):
                while done < mark:
                    upload()
                    done += 1
                note(f"{mark} sequential")
            with ThreadPoolExecutor(parallel) as pool:
                list(pool.map(upload, range(parallel)))
            note(f"{parallel} parallel")
        finally:
            interrupt(child)
    start = float(steps[0]["rss_mb"])  # type: ignore[arg-type]
    return {"photo_wh": [4000, 3000], "photo_bytes": len(photo), "steps": steps, "statuses": statuses,
            "peak_over_start_mb": max(float(step["peak_mb"]) for step in steps) - start}  # type: ignore[arg-type]


def clip_640x480(folder: Path) -> Path:
    out = folder / "tears_640x480.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(TEARS), "-vf", "scale=640:360,pad=640:480:0:60",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "24", "-an", str(out)], check=True)
    return out


def watch_rss(child: subprocess.Popen, seconds: float) -> float:
    """Mean VmRSS (MB) of ``child`` over the second half of ``seconds``."""
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        mb = rss_mb(child.pid)
        if mb is None or child.poll() is not None:
            raise SystemExit("bench/web: the child stopped early")
        if time.monotonic() - t0 >= seconds / 2:
            samples.append(mb)
    return float(np.mean(samples))


def viewer(url: str, stop_event: threading.Event, counts: List[int], index: int) -> None:
    host, port = _host_port(url)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/api/stream.mjpeg")
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"bench/web: viewer {index} got {response.status}")
    while not stop_event.is_set():
        chunk = response.read1(65536)
        if not chunk:
            break
        counts[index] += chunk.count(b"Content-Type: image/jpeg")
    conn.close()


def memory(seconds: float) -> Dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="streamer-bench-web-") as tmp:
        clip = clip_640x480(Path(tmp))
        port = free_port()
        server = start_server(clip, port)
        source = f"rtsp://127.0.0.1:{port}/stream"
        try:
            plain = subprocess.Popen([sys.executable, str(REPO / "run.py"), "--source", source, "--no-window",
                                      "--no-progress"], env=child_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            try:
                run_mb = watch_rss(plain, seconds)
            finally:
                interrupt(plain)
            child, url = start_serve(["--source", source])
            stop_event, counts = threading.Event(), [0] * 4
            threads = [threading.Thread(target=viewer, args=(url, stop_event, counts, i), daemon=True)
                       for i in range(4)]
            try:
                time.sleep(3.0)  # the run opens the source before viewers come
                for thread in threads:
                    thread.start()
                serve_mb = watch_rss(child, seconds)
            finally:
                stop_s = interrupt(child)  # with the 4 viewers still attached
                stop_event.set()
                for thread in threads:
                    thread.join(5)
        finally:
            server.kill()
            server.wait(timeout=10)
    return {"run_mb": run_mb, "serve_4_viewers_mb": serve_mb, "added_mb": serve_mb - run_mb,
            "frames_per_viewer": counts, "seconds": seconds, "serve_stop_s": stop_s}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="photo requests per concurrency level")
    parser.add_argument("--seconds", type=float, default=60.0, help="each live run for the memory figure")
    parser.add_argument("--uploads", type=int, default=200, help="sequential 12 MP uploads for the upload memory")
    parser.add_argument("--parallel", type=int, default=20, help="12 MP uploads at once for the upload memory")
    parser.add_argument("--skip-photos", action="store_true")
    parser.add_argument("--skip-uploads", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result: Dict[str, object] = {"load_average_1_5_15": list(os.getloadavg())}
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    if not args.skip_photos:
        rows = result["photos"] = photo_throughput(args.requests)
        print(f"POST /api/analyze, {GROUP.name} (1280x853, 5 faces), `serve` default config")
        print("| clients | requests | requests/s | p50 ms | p95 ms |\n|---:|---:|---:|---:|---:|")
        for row in rows:
            print(f"| {row['clients']} | {row['requests']} | {row['req_per_s']:.2f} | {row['p50_ms']:.0f} | "
                  f"{row['p95_ms']:.0f} |")
    if not args.skip_uploads:
        uploads = result["upload_memory"] = upload_memory(args.uploads, args.parallel)
        print(f"\nresident memory of `serve` (photos only), 12 MP JPEG uploads ({uploads['photo_bytes'] / 1e6:.1f} MB):")
        print("| after | VmRSS MB | peak (VmHWM) MB |\n|---|---:|---:|")
        for step in uploads["steps"]:  # type: ignore[attr-defined]
            print(f"| {step['after']} | {step['rss_mb']:.0f} | {step['peak_mb']:.0f} |")
        print(f"peak over start: {uploads['peak_over_start_mb']:+.0f} MB (target <= +200); answers {uploads['statuses']}")
    if not args.skip_memory:
        mem = result["memory"] = memory(args.seconds)
        print(f"\nresident memory, 640x480 RTSP source, tracked mode, mean over the last {args.seconds / 2:.0f} s:")
        print(f"run alone {mem['run_mb']:.1f} MB; serve + 4 MJPEG viewers {mem['serve_4_viewers_mb']:.1f} MB; "
              f"added {mem['added_mb']:+.1f} MB (target <= 30); stream frames per viewer {mem['frames_per_viewer']}; "
              f"Ctrl-C stopped serve in {mem['serve_stop_s']:.2f} s")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
