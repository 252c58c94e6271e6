"""Issue 26 end to end: the shared Hamilton stage clip with two zones (round the stage, and the
pianist's corner) and a line across the stage, through the real models, into every output at once:
the summary, the people report, a real Mosquitto broker and the web service's /metrics."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
from conftest import SHARED_MEDIA
from mqtt_broker import Broker, Subscriber, mosquitto_missing
from prometheus_client.parser import text_string_to_metric_families

from streamer.config import parse_config
from streamer.outputs.mqtt import MqttSink
from streamer.web.app import Service
from streamer.web.live import LiveView
from streamer.web.server import WebServer

CLIP = "whitehouse_hamilton_short_clip.mp4"
CAMERA = "stage"
AUDIENCE = {
    "zones": {
        "stage": {"polygon": [[0.2, 0.0], [0.65, 0.0], [0.65, 0.7], [0.2, 0.7]]},
        "piano": {"polygon": [[0.0, 0.0], [0.2, 0.0], [0.2, 1.0], [0.0, 1.0]], "min_dwell_s": 0.5},
    },
    "lines": {"centre": {"points": [[0.45, 0.0], [0.45, 1.0]], "direction": "right"}},
}


def _get(url: str, path: str) -> str:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _samples(text: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


@pytest.fixture(scope="module")
def analyzer(test_models_analyzer):
    """One analyzer for the in-process runs (the models load once)."""
    return test_models_analyzer


@pytest.mark.integration
@pytest.mark.skipif(mosquitto_missing() is not None, reason=str(mosquitto_missing()))
def test_two_zones_and_a_line_on_the_stage_clip_reach_every_output(tmp_path, analyzer):
    from streamer.app import RunOptions, run

    source = SHARED_MEDIA / CLIP
    if not source.is_file():
        pytest.fail(f"{source} missing: ../shared/media is needed")
    with Broker(tmp_path / "broker") as broker, Subscriber(broker.port) as sub:
        config = parse_config({"audience": AUDIENCE, "output": {"window": False}, "mqtt": {
            "enabled": True, "host": "127.0.0.1", "port": broker.port, "camera": CAMERA, "flush_timeout_s": 10.0}})
        mqtt = MqttSink(config.mqtt, config.classifier.age_groups, config.audience)
        live = LiveView(config.web, config.audience, config.classifier.age_groups)
        seen_in_stage = []
        with WebServer(Service(config, None, live), "127.0.0.1", 0) as web:
            done = threading.Event()

            def poll() -> None:  # /metrics while the run goes: someone is on the stage at some point
                while not done.wait(0.2):
                    seen_in_stage.extend(s.value for s in _samples(_get(web.url, "/metrics"), "streamer_zone_people")
                                         if s.labels["zone"] == "stage")

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            options = RunOptions(source=str(source), output=tmp_path / "out.mp4", events=tmp_path / "events.jsonl",
                                 window=False, progress=False, report=tmp_path / "report",
                                 summary_json=tmp_path / "summary.json")
            try:
                summary = run(config, options, analyzer=analyzer, sinks=[mqtt, live])
            finally:
                done.set()
                poller.join(10)
            metrics = _get(web.url, "/metrics")
        assert sub.wait_for(lambda ms: any(m.topic == f"streamer/{CAMERA}/available" and m.text == "offline" for m in ms), 10)
        late = Subscriber(broker.port)
        assert late.wait_for(lambda ms: any(m.topic == f"streamer/{CAMERA}/available" for m in ms), 5)
        time.sleep(0.5)
        retained = {m.topic: m for m in late.messages if m.retain}
        late.close()

    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    audience_records = [r for r in records if r.get("event") in ("zone_enter", "zone_exit", "line_cross")]
    exits = [r for r in records if r.get("event") == "zone_exit"]

    # The summary: both zones and the line, split by age group and gender, with dwell and attention.
    audience = summary["audience"]
    assert set(audience["zones"]) == {"stage", "piano"} and set(audience["lines"]) == {"centre"}
    stage = audience["zones"]["stage"]
    assert stage["people"] >= 1 and stage["dwell_s"]["p50"] > 0 and stage["watchers"] >= 1
    labelled = [row for row in stage["by_group"] if row["gender"] != "unknown" and row["age_group"] != "unknown"]
    assert labelled and all(row["dwell_p50_s"] is not None for row in labelled)
    assert sum(row["people"] for row in stage["by_group"]) == stage["people"]
    # The performer sings on the stage for about 4 s, looking at the audience (the camera) much of it.
    longest = max((r for r in exits if r["zone"] == "stage"), key=lambda r: r["dwell_s"])
    assert longest["dwell_s"] > 3.0 and longest["watched"]
    assert audience["attention"]["people"] == summary["people"]["people"]
    assert json.loads((tmp_path / "summary.json").read_text())["audience"] == audience
    # The annotated video shows the zones: the stage's left edge (x = 0.2, 128 px) a thin yellow
    # line, much brighter in green and red than the dark stage 4 px beside it (after compression).
    import cv2

    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    ok, first = capture.read()
    capture.release()
    edge, beside = first[20:240, 128, 1:].astype(int), first[20:240, 132, 1:].astype(int)
    assert ok and ((edge - beside).min(axis=1) > 60).mean() > 0.8

    # The report, built from the same records: the same tables, on the page and in zones.csv.
    report = json.loads((tmp_path / "report" / "summary.json").read_text())["audience"]
    for name, zone in audience["zones"].items():
        assert {k: v for k, v in report["zones"][name].items() if k != "dwell_bands"} == zone
    assert report["lines"] == audience["lines"] and report["attention"] == audience["attention"]
    page = (tmp_path / "report" / "report.html").read_text()
    assert f"Zone stage: {stage['people']} people" in page and "Line centre:" in page
    assert (tmp_path / "report" / "zones.csv").read_text().count("\nstage,") == len(stage["by_group"])

    # MQTT: every audience record on the events topic, the zones' people (retained, back to 0 at the
    # end, above 0 while the performer was there), the line's counts, discovery for each.
    published = [m.json() for m in sub.on(f"streamer/{CAMERA}/events")]
    mine = [p for p in published if p["event"] in ("zone_enter", "zone_exit", "line_cross")]
    assert [(p["event"], p["track"]) for p in mine] == [(r["event"], r["track"]) for r in audience_records]
    stage_counts = [int(m.text) for m in sub.on(f"streamer/{CAMERA}/zones/stage/people")]
    assert max(stage_counts) >= 1 and stage_counts[-1] == 0
    assert retained[f"streamer/{CAMERA}/zones/piano/people"].text == "0"
    assert retained[f"streamer/{CAMERA}/zones/stage/people/male"].text == "0"
    crossings = sum(1 for r in audience_records if r["event"] == "line_cross" and r["direction"] == "in")
    assert retained[f"streamer/{CAMERA}/lines/centre/in"].text == str(crossings)
    discovery = {m.json()["state_topic"] for t, m in retained.items() if t.startswith("homeassistant/")}
    assert {f"streamer/{CAMERA}/zones/stage/people", f"streamer/{CAMERA}/zones/piano/people",
            f"streamer/{CAMERA}/lines/centre/in", f"streamer/{CAMERA}/lines/centre/out"} <= discovery

    # /metrics: the zones' gauges (0 now, above 0 during the run) and counters matching the events.
    assert max(seen_in_stage, default=0) >= 1
    assert {s.labels["zone"]: s.value for s in _samples(metrics, "streamer_zone_people")} == {"stage": 0, "piano": 0}
    for zone in ("stage", "piano"):
        visits = sum(s.value for s in _samples(metrics, "streamer_zone_visits_total") if s.labels["zone"] == zone)
        assert visits == sum(1 for r in exits if r["zone"] == zone)
        dwell = sum(s.value for s in _samples(metrics, "streamer_zone_dwell_seconds_total") if s.labels["zone"] == zone)
        assert dwell == pytest.approx(sum(r["dwell_s"] for r in exits if r["zone"] == zone), abs=0.01)
    line_in = sum(s.value for s in _samples(metrics, "streamer_line_crossings_total") if s.labels["direction"] == "in")
    assert line_in == crossings
