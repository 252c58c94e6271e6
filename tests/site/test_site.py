"""Several cameras from one config (issue 25): three workers on the RTSP test server, one killed,
one hung, Ctrl-C/SIGTERM for all; the real command line (`run.py run --config site.yaml`), on
127.0.0.1 only."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import test_rtsp
from conftest import REPO
from test_rtsp import RtspServer

from streamer.config import SiteConfig
from streamer.site.run import _add_counts
from streamer.site.supervisor import CameraJob, Supervisor

pytestmark = pytest.mark.integration
CAMERAS = ("a", "b", "c")
# The RTSP test server's fixtures (the carphone clip, looped).
rtsp_ready, rtsp_server = test_rtsp.rtsp_ready, test_rtsp.rtsp_server
START_S = 90.0  # three workers loading their models at once on a busy 2-core machine


class Site:
    """`run.py run --config site.yaml` as a subprocess, its stderr collected line by line."""

    def __init__(self, tmp_path: Path, url: str, env: dict, site: str, names=CAMERAS, mode: str = "tracked",
                 extra: str = "") -> None:
        """``extra``: more of site.yaml (other sections)."""
        self.dir = tmp_path
        cameras = "\n".join(f"  {name}: {{source: '{url}', events: {tmp_path / name}.jsonl, mode: {mode}}}"
                            for name in names)
        (tmp_path / "site.yaml").write_text(f"site: {site}\n{extra}\ncameras:\n{cameras}\n")
        self.summary = tmp_path / "site.json"
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "run.py"), "run", "--config", str(tmp_path / "site.yaml"), "--summary",
             str(self.summary)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def pids(self, name: str) -> List[int]:
        return [int(m.group(1)) for line in list(self.lines)
                if (m := re.search(rf"camera {name}: worker started \(pid (\d+)\)", line))]

    def frames(self, name: str) -> List[dict]:
        path = self.dir / f"{name}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if '"faces"' in line]

    def wait(self, what: str, condition, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, f"{what} not within {timeout_s} s:\n" + "".join(self.lines[-30:])
            time.sleep(0.1)

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        assert self.proc.returncode == 0, "".join(self.lines)
        return json.loads(self.summary.read_text())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def site_of(tmp_path: Path, rtsp_server: RtspServer, models_env) -> Iterator:
    sites: List[Site] = []

    def start(site: str = "{}") -> Site:
        sites.append(Site(tmp_path, rtsp_server.url, models_env, site))
        return sites[-1]

    yield start
    for site in sites:
        site.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _assert_ran_through(site: Site, name: str, summary: dict, window: tuple) -> None:
    """One worker from start to stop: no restart, no reconnect, its frames in one rising sequence
    whose gaps are exactly the frames its summary counts as dropped, and frames all through the
    other camera's crash and restart (``window``, wall-clock)."""
    camera = summary["cameras"][name]
    assert (camera["starts"], camera["restarts"], camera["reconnects"]) == (1, 0, 0), camera
    frames = site.frames(name)
    index = [frame["frame"] for frame in frames]
    assert index == sorted(set(index)), f"{name}: frame numbers not one rising sequence"
    missed = index[-1] + 1 - len(index)
    own = json.loads(Path(camera["summary"]).read_text())
    assert missed <= own["dropped"], f"{name}: {missed} frames missing, {own['dropped']} counted as dropped"
    stamps = [frame["timestamp"] for frame in frames if window[0] <= frame["timestamp"] <= window[1]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert stamps and max(gaps, default=0) < 1.0, f"{name}: frames stopped during the other's restart {gaps}"


def test_three_cameras_a_killed_worker_is_restarted_and_the_others_run_through(site_of) -> None:
    site = site_of("{restart_backoff_s: 0.5}")
    site.wait("every camera's first 15 frames", lambda: all(len(site.frames(n)) >= 15 for n in CAMERAS), START_S)
    victim = site.pids("b")[0]
    others = {name: site.pids(name)[0] for name in ("a", "c")}
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    site.wait("b's restart", lambda: len(site.pids("b")) == 2, 10)
    before = len(site.frames("b"))
    site.wait("b's frames again", lambda: len(site.frames("b")) >= before + 15, START_S)
    back_at = time.time()
    summary = site.stop()

    b = summary["cameras"]["b"]
    assert (b["starts"], b["restarts"], b["restart_reasons"]) == (2, 1, ["killed by SIGKILL"])
    assert any("camera b: worker killed by SIGKILL; restart 1 in 0.5 s" in line for line in site.lines)
    for name, pid in others.items():
        assert site.pids(name) == [pid] and not _alive(pid)
        _assert_ran_through(site, name, summary, (killed_at, back_at))
    # SIGTERM stopped all: each wrote its summary, the site one says so.
    assert summary["site"]["stopped_by"] == "interrupted" and summary["site"]["restarts"] == 1
    for name in CAMERAS:
        camera = summary["cameras"][name]
        assert camera["stopped_by"] == "interrupted" and camera["exit_code"] == 0 and not camera["killed_at_stop"]
        assert Path(camera["summary"]) == site.dir / f"{name}.summary.json"
    assert not _alive(victim)


def test_a_hung_worker_is_detected_killed_and_restarted(site_of) -> None:
    site = site_of("{silent_s: 2, restart_backoff_s: 0.5}")
    site.wait("every camera's first 15 frames", lambda: all(len(site.frames(n)) >= 15 for n in CAMERAS), START_S)
    hung = site.pids("c")[0]
    os.kill(hung, signal.SIGSTOP)
    stopped_at = time.monotonic()
    site.wait("c declared silent and restarted", lambda: len(site.pids("c")) == 2, 15)
    assert time.monotonic() - stopped_at < 6  # silent_s 2 plus the poll and the kill
    before = len(site.frames("c"))
    site.wait("c's frames again", lambda: len(site.frames("c")) >= before + 10, START_S)
    summary = site.stop()
    c = summary["cameras"]["c"]
    assert c["restarts"] == 1 and c["restart_reasons"][0].startswith("silent: no frame for 2."), c
    assert not _alive(hung)
    assert [summary["cameras"][name]["restarts"] for name in ("a", "b")] == [0, 0]


class _FakeProcess:
    """Stands in for a worker process: dies with ``code`` when told to."""

    pid = 2 ** 22 + 12345  # no such process: a stray os.kill finds nothing

    def __init__(self, code: int) -> None:
        self.exitcode = code

    def is_alive(self) -> bool:
        return False

    def join(self, _timeout=None) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("failures, expected_delays", [
    (1, [1.0]),
    (4, [1.0, 2.0, 4.0, 8.0]),
    (8, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]),
])
def test_restart_backoff_doubles_up_to_its_maximum(failures: int, expected_delays: List[float]) -> None:
    supervisor = Supervisor([CameraJob("a", None, None)], SiteConfig())
    state = supervisor.cameras["a"]
    delays = []
    for _ in range(failures):
        state.process = _FakeProcess(-9)
        supervisor._tend(state, 100.0)
        assert state.next_start_s is not None
        delays.append(state.next_start_s - 100.0)
    assert delays == expected_delays and state.restarts == failures
    assert state.reasons[-1] == "killed by SIGKILL"


def test_a_run_that_ends_by_itself_is_not_restarted() -> None:
    supervisor = Supervisor([CameraJob("a", None, None)], SiteConfig())
    state = supervisor.cameras["a"]
    state.process = _FakeProcess(0)
    supervisor._tend(state, 100.0)
    assert state.finished and state.next_start_s is None and state.restarts == 0


def test_site_people_add_up_per_key() -> None:
    total: Dict[str, object] = {}
    for counts in ({"people": 2, "by_gender": {"male": 1, "female": 1}}, {"people": 3, "by_gender": {"male": 3}}):
        _add_counts(total, counts)
    assert total == {"people": 5, "by_gender": {"male": 4, "female": 1}}
