"""``streamer run --config site.yaml``: every camera of the config, each in its own supervised
worker, and the site summary at the end (per camera: its own summary's counts, its restarts and
why; for the site: frames, people and restarts added up)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..config import Config, camera_config
from ..errors import ConfigError
from ..outputs.files import write_bytes
from ..sources.source import redact
from .mqtt import site_publisher
from .supervisor import CameraJob, CameraState, Supervisor, summary_path_of

log = logging.getLogger(__name__)

DEFAULT_SITE_SUMMARY = Path("out") / "site.summary.json"
# The counts of a camera's own summary repeated in the site summary.
_CAMERA_FIELDS = ("kind", "frames_read", "frames_out", "dropped", "reconnects", "fps", "elapsed_s", "stopped_by",
                  "events", "output", "people", "error")


def camera_jobs(config: Config, base_options, names: Sequence[str], site_summary: Path,
                adjust: Optional[Callable[[Config], Config]] = None) -> List[CameraJob]:
    """One job per camera named: its merged config (``adjust`` then applies the command line's
    flags, which win over the file) and its run options from ``base_options`` (the command line's
    --overwrite and the like) with its source, output, events and summary."""
    jobs = []
    for name in names:
        camera = config.cameras[name]
        merged = camera_config(config, name)
        if adjust is not None:
            merged = adjust(merged)
        options = replace(
            base_options, source=camera.source, output=Path(camera.output) if camera.output else None,
            events=Path(camera.events) if camera.events else None, window=False, progress=False,
            summary_json=Path(camera.summary) if camera.summary else summary_path_of(site_summary, name),
            report=None, default_output=False)
        jobs.append(CameraJob(name, merged, options))
    return jobs


def run_site(config: Config, base_options, site_summary: Optional[Path] = None, verbosity: int = 0,
             adjust: Optional[Callable[[Config], Config]] = None,
             supervisor_ready: Optional[Callable[[Supervisor], None]] = None) -> dict:
    """Run every camera of ``config.cameras`` until they all end or a stop; return (and write)
    the site summary. ``supervisor_ready``: called with the supervisor before it runs (tests,
    the web service). With MQTT on, the site's own topics (people across the cameras; mqtt.py)
    are published from this process while the workers run."""
    if not config.cameras:
        raise ConfigError("the config has no cameras; give --source, or a cameras section (README, Several cameras)")
    site_summary = site_summary or DEFAULT_SITE_SUMMARY
    jobs = camera_jobs(config, base_options, list(config.cameras), site_summary, adjust)
    _check_distinct_outputs(jobs, site_summary)
    supervisor = Supervisor(jobs, config.site, verbosity)
    publisher = site_publisher(config, jobs[0].config, supervisor)
    if publisher is not None:
        publisher.start()  # mqtt.required: MqttError before any camera starts
    try:
        if supervisor_ready is not None:
            supervisor_ready(supervisor)
        t0 = time.monotonic()
        log.info("site: %d cameras (%s), one worker each", len(jobs), ", ".join(job.name for job in jobs))
        supervisor.run()
    finally:
        if publisher is not None:
            publisher.stop()  # after the workers: the site's last count is theirs
    summary = site_summary_of(supervisor, time.monotonic() - t0)
    write_bytes(site_summary, (json.dumps(summary, indent=2) + "\n").encode("utf-8"), True, "site summary")
    return summary


def _check_distinct_outputs(jobs: List[CameraJob], site_summary: Path) -> None:
    """Two cameras writing one file would interleave it: refused before any starts."""
    owners: Dict[Path, str] = {site_summary.resolve(): "the site summary"}
    for job in jobs:
        for what, path in (("output", job.options.output), ("events", job.options.events),
                           ("summary", job.options.summary_json)):
            if path is None:
                continue
            other = owners.setdefault(Path(path).resolve(), f"camera {job.name}'s {what}")
            if other != f"camera {job.name}'s {what}":
                raise ConfigError(f"cameras.{job.name}.{what}: {path} is also {other}; give each camera its own file")


def _camera_summary(state: CameraState) -> dict:
    path = state.job.options.summary_json
    own: Optional[dict] = None
    try:
        own = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        own = None
    entry: Dict[str, object] = {
        "source": redact(state.job.options.source),
        "summary": str(path) if own is not None else None,
        "starts": state.starts,
        "restarts": state.restarts,
        "restart_reasons": list(state.reasons),
        "frames_delivered": state.frames,
        "finished": state.finished,
        "killed_at_stop": state.killed_at_stop,
        "exit_code": state.exit_code,
    }
    if own is not None:
        entry.update({key: own[key] for key in _CAMERA_FIELDS if key in own})
    else:
        entry["error"] = f"no summary at {path} (the worker was killed before writing one)"
    return entry


def _add_counts(total: Dict[str, object], counts: dict) -> None:
    """``counts`` (a people tally's: numbers and mappings of numbers) added into ``total``."""
    for key, value in counts.items():
        if isinstance(value, dict):
            inner = total.setdefault(key, {})
            if isinstance(inner, dict):
                _add_counts(inner, value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            previous = total.get(key, 0)
            total[key] = (previous if isinstance(previous, (int, float)) else 0) + value


def site_summary_of(supervisor: Supervisor, elapsed_s: float) -> dict:
    """The site summary: each camera's entry and the site's totals (people: the sum of the
    cameras' counts, which are per camera: a person seen by two cameras counts twice)."""
    cameras = {name: _camera_summary(state) for name, state in supervisor.cameras.items()}
    people: Dict[str, object] = {}
    for entry in cameras.values():
        if isinstance(entry.get("people"), dict):
            _add_counts(people, entry["people"])
    return {
        "cameras": cameras,
        "site": {
            "cameras": len(cameras),
            "elapsed_s": round(elapsed_s, 3),
            "stopped_by": supervisor.stopped_by,
            "restarts": sum(state.restarts for state in supervisor.cameras.values()),
            "frames_delivered": sum(state.frames for state in supervisor.cameras.values()),
            "people": people or None,
        },
    }
