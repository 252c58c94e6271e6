"""Where a run's CPU goes: the app on one clip, in this process, with a CPU-time profile of the
frame loop and the CPU of every thread.

    python3 bench/profile_run.py --source CLIP [--mode tracked] [--top 25] [--set KEY=VALUE ...]
        [--stats out/run.prof]

The machine these benches run on is shared, so wall-clock profiles say more about the neighbours
than about the code. Here the profiler's clock is the main thread's CPU time
(``time.thread_time``), and a sampler reads each thread's CPU seconds from ``/proc/self/task``:
the frame loop (main), the capture thread (decoding), the video writer (encoding), and the
threads Python did not start (OpenCV's and FFmpeg's pools). ``app.run`` is the path ``run.py``
takes; models are loaded before the profile starts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import bench_config, models_env  # noqa: E402

from streamer import app as app_module  # noqa: E402
from streamer.cli import MODES  # noqa: E402
from streamer.config import MODELS_DIR_ENV, load_config, override  # noqa: E402
from streamer.pipeline import build_analyzer  # noqa: E402

SAMPLE_S = 0.05  # how often the sampler reads the threads' CPU (a thread that lives less is missed)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _task_cpu_s() -> Dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by native thread id."""
    out: Dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return out


class ThreadCpu:
    """Samples every thread's CPU seconds while a run goes on; ``by_name()`` sums them by the
    Python thread name of each id ("other" for threads Python did not start), from a baseline
    taken at ``start``."""

    def __init__(self) -> None:
        self._names: Dict[int, str] = {}
        self._last: Dict[int, float] = {}
        self._base: Dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._base = _task_cpu_s()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self._names.setdefault(thread.native_id, thread.name.split(":")[0])
        self._last.update(_task_cpu_s())

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def by_name(self) -> Dict[str, float]:
        totals: Dict[str, float] = {}
        for tid, cpu_s in self._last.items():
            name = self._names.get(tid, "other (OpenCV / FFmpeg pools)")
            if name == "bench-sampler":
                continue
            totals[name] = totals.get(name, 0.0) + cpu_s - self._base.get(tid, 0.0)
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


# The frame loop's stages, each the CPU time (main thread, cumulative) of the functions that do it;
# matched by "file:function" suffixes of the profile's entries. What the main thread spent
# outside them (the tracker's bookkeeping, records, the loop) is "other".
STAGES = {
    "grey": ("grey.py:of",),
    "gate + cuts": ("motion.py:update",),
    "flow": ("worker.py:move", "flow.py:seed", "flow.py:next_frame"),
    "looks": ("worker.py:look",),
    "detect": ("pipeline.py:detect", "pipeline.py:analyse"),
    "classify": ("worker.py:_classify_due",),
    "draw": ("worker.py:_picture",),
    "sinks": ("app.py:_write_all",),
}


def stage_cpu_s(stats: pstats.Stats) -> Dict[str, float]:
    """CPU seconds of each of STAGES and of the rest of ``app.run`` (main thread); "detect" in
    mode all is the whole analysis (detector and classifiers)."""
    cumulative: Dict[str, float] = {}
    for (filename, _, function), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = f"{Path(filename).name}:{function}"
        cumulative[key] = cumulative.get(key, 0.0) + cum
    out = {stage: sum(cumulative.get(name, 0.0) for name in names) for stage, names in STAGES.items()}
    out["other"] = max(0.0, cumulative.get("app.py:run", 0.0) - sum(out.values()))
    return out


def _value(text: str) -> object:
    import yaml

    return yaml.safe_load(text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="a video file")
    parser.add_argument("--mode", default="tracked", choices=sorted(MODES))
    parser.add_argument("--top", type=int, default=25, help="functions listed, by CPU time spent in them")
    parser.add_argument("--config", type=Path, help="YAML config (default: the checkout's config.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--stats", type=Path, help="also save the pstats file here")
    parser.add_argument("--json", type=Path, help="also write the figures (threads, stages) here")
    args = parser.parse_args(argv)
    os.environ[MODELS_DIR_ENV] = models_env()[MODELS_DIR_ENV]
    changes = dict(MODES[args.mode])
    for item in args.set:
        key, _, text = item.partition("=")
        changes[key] = _value(text)
    config = override(load_config(args.config) if args.config else bench_config(None, None), changes)
    analyzer = build_analyzer(config)
    threads = ThreadCpu()
    profiler = cProfile.Profile(time.thread_time)
    with tempfile.TemporaryDirectory(prefix="streamer_profile_") as tmp:
        options = app_module.RunOptions(source=args.source, output=Path(tmp) / "out.mp4", window=False,
                                        overwrite=True, progress=False)
        usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        threads.start()
        profiler.enable()
        summary = app_module.run(config, options, analyzer=analyzer)
        profiler.disable()
        threads.stop()
        wall_s, usage1 = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    frames = summary["frames_out"]
    print(f"{args.source}: {frames} frames, mode {args.mode}, load average {os.getloadavg()[0]:.1f}")
    print(f"process CPU {cpu_s:.2f} s ({1000 * cpu_s / max(frames, 1):.1f} ms a frame, "
          f"{frames / cpu_s if cpu_s else 0:.0f} frames per CPU second); wall {wall_s:.2f} s; "
          f"detector runs {summary['analysed']}, faces classified {summary['faces_classified']}\n")
    print("| thread | CPU s | share |\n|---|---:|---:|")
    shares = threads.by_name()
    total = sum(shares.values()) or 1.0
    for name, seconds in shares.items():
        print(f"| {name} | {seconds:.2f} | {100 * seconds / total:.0f} % |")
    print()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stages = stage_cpu_s(stats)
    print("| main thread stage | CPU s | share of all threads |\n|---|---:|---:|")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds:.2f} | {100 * seconds / total:.0f} % |")
    print()
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)
        lines: List[str] = stream.getvalue().splitlines()
        print("main thread, CPU time by function (tottime = in the function itself):")
        print("\n".join(line for line in lines if line.strip() and not line.startswith(("   Ordered", "   List"))))
    if args.stats:
        args.stats.parent.mkdir(parents=True, exist_ok=True)
        stats.dump_stats(str(args.stats))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"frames": frames, "process_cpu_s": round(cpu_s, 3), "wall_s": round(wall_s, 3),
                                         "threads_cpu_s": {k: round(v, 3) for k, v in shares.items()},
                                         "stages_cpu_s": {k: round(v, 3) for k, v in stages.items()}}, indent=2) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
