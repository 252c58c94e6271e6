"""MQTT output (issue 12): pure pieces on synthetic data, then the sink against a real Mosquitto
broker started on 127.0.0.1 (tests/mqtt_broker.py): faults at start, the bounded queue, and
whole runs on the Tears of Steel clip (events, counts, stats, discovery, a broker restart, the
Last Will on SIGKILL)."""

from __future__ import annotations

import json
import logging
import threading
import time
import types

import pytest
from mqtt_broker import Broker, Subscriber, TlsFiles, free_port, mosquitto_missing
from silent_server import SilentServer

from streamer.config import Config, override, parse_config
from streamer.errors import ConfigError, MqttError
from streamer.outputs.mqtt import MqttSink
from streamer.outputs.mqtt_messages import (
    PeopleCounts,
    Topics,
    camera_name,
    cli_overrides,
    discovery_configs,
    parse_address,
    read_password,
    topic_level,
)
from streamer.types import Face

paho = pytest.importorskip("paho.mqtt.client", reason="pip install 'streamer[mqtt]'")
needs_broker = pytest.mark.skipif(mosquitto_missing() is not None, reason=str(mosquitto_missing()))

AGE_GROUPS = Config().classifier.age_groups


# --- pure pieces ---


@pytest.mark.parametrize(
    "text, expected",
    [
        ("localhost", ("localhost", None)),
        ("10.0.0.2:1884", ("10.0.0.2", 1884)),
        ("[::1]:1883", ("::1", 1883)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("broker.lan:99999", ConfigError),
        ("broker.lan:x", ConfigError),
        (":1883", ConfigError),
        ("", ConfigError),
    ],
)
def test_parse_address(text, expected):
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="HOST"):
            parse_address(text)
    else:
        assert parse_address(text) == expected


def test_cli_overrides_validate_through_the_config():
    config = override(Config(), cli_overrides("broker.lan:1884"))
    assert (config.mqtt.enabled, config.mqtt.host, config.mqtt.port) == (True, "broker.lan", 1884)
    assert override(Config(), cli_overrides("broker.lan")).mqtt.port == 1883


@pytest.mark.parametrize(
    "source, camera",
    [
        ("/media/blender_tears_of_steel_10s.mp4", "blender_tears_of_steel_10s"),
        ("0", "webcam0"),
        ("/dev/video2", "video2"),
        ("rtsp://admin:secret@cam.local:554/Stream 1", "cam_local_stream_1"),
        ("photos/", "photos"),
        ("v4l2src ! videoconvert ! appsink", "gstreamer"),
        ("%%%", "camera"),
    ],
)
def test_camera_name(source, camera):
    assert camera_name(source) == camera
    assert "secret" not in camera_name(source)


def test_topic_level_has_no_wildcards():
    assert topic_level("70+") == "70plus"
    assert topic_level("a/b#") == "a_b_"


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"topic_prefix": "a/#"}, "mqtt.topic_prefix"),
        ({"topic_prefix": "/streamer"}, "mqtt.topic_prefix"),
        ({"discovery_prefix": "ha/+"}, "mqtt.discovery_prefix"),
        ({"tls_cert_file": "c.pem"}, "mqtt.tls_key_file"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "mqtt.reconnect_max_s"),
        ({"qos": 3}, "mqtt.qos"),
        ({"port": 0}, "mqtt.port"),
        ({"colour": "red"}, "mqtt.colour"),
    ],
)
def test_config_rejects(changes, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config({"mqtt": changes})


def test_password_from_environment_or_file(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMER_MQTT_PASSWORD", raising=False)
    secret = tmp_path / "secret"
    secret.write_text("s3cret-file\nignored\n")
    config = parse_config({"mqtt": {"password_file": str(secret)}}).mqtt
    assert read_password(config) == "s3cret-file"
    monkeypatch.setenv("STREAMER_MQTT_PASSWORD", "s3cret-env")
    assert read_password(config) == "s3cret-env"
    monkeypatch.delenv("STREAMER_MQTT_PASSWORD")
    assert read_password(parse_config({}).mqtt) is None
    secret.chmod(0)
    missing = parse_config({"mqtt": {"password_file": str(tmp_path / "nope")}}).mqtt
    with pytest.raises(MqttError, match="password_file") as caught:
        read_password(missing)
    assert "s3cret" not in str(caught.value)


def _face(track=None, gender=None, group=None):
    return Face((10.0, 10.0, 50.0, 60.0), 0.9, gender=gender, age_group=group, track=track)


def test_people_counts_follow_new_and_end_records():
    counts = PeopleCounts(AGE_GROUPS)
    assert counts.counts()[""] == 0
    assert set(counts.counts()) >= {"female", "male", "unknown", "age/70plus", "age/unknown"}
    counts.observe_faces([_face(1)])  # shown before its 'new' record (same frame): not counted yet
    assert counts.counts()[""] == 0
    counts.observe_records([{"event": "new", "track": 1}])
    assert (counts.counts()[""], counts.counts()["unknown"], counts.counts()["age/unknown"]) == (1, 1, 1)
    counts.observe_faces([_face(1, "female", "30-39"), _face(2)])
    counts.observe_records([{"event": "new", "track": 2}])
    c = counts.counts()
    assert (c[""], c["female"], c["unknown"], c["age/30-39"], c["age/unknown"]) == (2, 1, 1, 1, 1)
    counts.observe_faces([])  # a hidden face still counts until its track ends
    assert counts.counts()[""] == 2
    counts.observe_records([{"event": "update", "track": 2, "gender": "male", "age_group": "70+"}])
    c = counts.counts()
    assert (c["male"], c["age/70plus"], c["unknown"]) == (1, 1, 0)
    counts.observe_records([{"event": "end", "track": 1}, {"event": "end", "track": 2}])
    assert all(value == 0 for value in counts.counts().values())


def test_people_counts_without_tracking_are_the_latest_frame():
    counts = PeopleCounts(AGE_GROUPS)
    counts.observe_faces([_face(None, "male", "20-29"), _face(None)])
    c = counts.counts()
    assert (c[""], c["male"], c["unknown"], c["age/20-29"]) == (2, 1, 1, 1)
    counts.observe_faces([])
    assert counts.counts()[""] == 0


def test_discovery_configs_are_what_home_assistant_expects():
    topics = Topics("streamer", "door", "homeassistant")
    groups = PeopleCounts(AGE_GROUPS).groups
    configs = discovery_configs(topics, groups=groups)
    # people, occupancy, 2 genders, 9 age groups, fps, source
    assert len({payload["unique_id"] for _, payload in configs}) == len(configs) == 6 + len(groups) == 15
    for topic, payload in configs:
        component, node, object_id, tail = topic.split("/")[1:]
        assert topic.startswith("homeassistant/") and tail == "config"
        assert component in ("sensor", "binary_sensor") and node == "streamer_door"
        assert payload["state_topic"].startswith("streamer/door/")
        assert [a["topic"] for a in payload["availability"]] == ["streamer/door/available"]
        assert payload["availability_mode"] == "all"
        assert payload["device"]["identifiers"] == ["streamer_door"]
        assert payload["default_entity_id"] == f"{component}.{payload['unique_id']}" and "object_id" not in payload
        json.dumps(payload)
    by_object = {topic.split("/")[3]: payload for topic, payload in configs}
    assert by_object["people"]["state_topic"] == topics.people
    assert by_object["people_female"]["state_topic"] == "streamer/door/people/female"
    assert by_object["source"]["payload_on"] == "up"
    assert by_object["fps"]["value_template"] == "{{ value_json.fps_out }}"
    assert by_object["people"]["json_attributes_topic"] == "streamer/door/last_event"
    assert by_object["occupancy"]["device_class"] == "occupancy"
    assert by_object["occupancy"]["state_topic"] == topics.people
    assert by_object["people_age_70plus"]["state_topic"] == "streamer/door/people/age/70plus"
    assert topics.discovery_configs == "homeassistant/+/streamer_door/+/config"
    bridged = dict(discovery_configs(topics, bridge=True))
    assert all([a["topic"] for a in p["availability"]] == ["streamer/door/available", "streamer/available"]
               for p in bridged.values())


@pytest.mark.parametrize("count, rendered", [("0", "OFF"), ("3", "ON"), ("", "OFF")])
def test_occupancy_template_reads_the_people_count(count, rendered):
    """The binary sensor's Jinja template, as Home Assistant renders it (a minimal stand-in for its
    int filter with a default)."""
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment()
    environment.filters["int"] = lambda value, default=0: int(value) if str(value).strip().isdigit() else default
    template = dict((t.split("/")[3], p) for t, p in discovery_configs(Topics("s", "c", "h")))["occupancy"]
    assert environment.from_string(template["value_template"]).render(value=count) == rendered


# --- the sink against a real broker ---


class FakeRun:
    """What a sink may read of a run (sinks.RunView): a source name and a snapshot."""

    def __init__(self, name="/media/door.mp4"):
        self.info = types.SimpleNamespace(name=name, kind="file", fps=25.0, size_wh=(640, 360), frame_count=100)
        self.source_up = True

    def snapshot(self) -> dict:
        return {"frames_read": 1, "fps": 25.0, "source_up": self.source_up, "stages": {"detect": {"p50_ms": 3.0}}}


def _mqtt(port, **changes):
    base = {"enabled": True, "host": "127.0.0.1", "port": port, "connect_timeout_s": 2.0,
            "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "flush_timeout_s": 5.0}
    return parse_config({"mqtt": {**base, **changes}}).mqtt


@needs_broker
def test_required_broker_faults_each_say_their_cause(tmp_path, monkeypatch):
    """Broker absent, a port that is not MQTT, a wrong password, TLS to a plain port: one clear
    error each, within the connection timeout, and no thread left behind."""
    monkeypatch.setenv("STREAMER_MQTT_PASSWORD", "wrong-password")
    silent = SilentServer()
    with Broker(tmp_path / "auth", users={"cam": "right-password"}) as auth, Broker(tmp_path / "plain") as plain:
        cases = [
            (_mqtt(free_port(), required=True), "connection refused"),
            (_mqtt(silent.port, required=True), "no MQTT answer"),
            (_mqtt(auth.port, required=True, username="cam"), "refused the login .*check mqtt.username \\('cam'\\) and the password"),
            (_mqtt(auth.port, required=True), "refused the login .*does not allow anonymous"),
            (_mqtt(plain.port, required=True, tls=True), "TLS handshake"),
        ]
        for config, message in cases:
            threads = set(threading.enumerate())
            sink = MqttSink(config, AGE_GROUPS)
            t0 = time.monotonic()
            with pytest.raises(MqttError, match=message) as caught:
                sink.start(FakeRun())
            assert time.monotonic() - t0 < config.connect_timeout_s + 5, "bounded wait"
            assert "wrong-password" not in str(caught.value)
            assert "mqtt.required" in str(caught.value)
            sink.close()
            time.sleep(0.1)
            assert not [t for t in set(threading.enumerate()) - threads if t.is_alive()], message
    silent.close()


@needs_broker
def test_broker_absent_at_start_then_appearing(tmp_path, caplog):
    """Not required: the run goes on, says so once, connects when the broker appears and delivers
    what was queued, the oldest dropped beyond the queue bound and counted."""
    broker = Broker(tmp_path / "late", persistent=True).start()
    Subscriber(broker.port, persistent=True).close()  # a session that will wait for the messages
    broker.stop()
    sink = MqttSink(_mqtt(broker.port, queue_size=5), AGE_GROUPS)
    caplog.set_level(logging.INFO, logger="streamer.outputs.mqtt")
    sink.start(FakeRun())
    for i in range(12):
        sink.write_records([{"event": "new", "track": i, "frame": i, "t_s": i / 25}])
    time.sleep(1.0)  # several refused attempts
    refused = [r for r in caplog.records if "connection refused" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.WARNING
    with broker.start(), Subscriber(broker.port, persistent=True) as sub:
        events = "streamer/door/events"
        assert sub.wait_for(lambda ms: len([m for m in ms if m.topic == events]) >= 5, 15)
        sink.close()
        assert sub.wait_for(lambda ms: any(m.topic == "streamer/door/available" and m.text == "offline" for m in ms), 5)
        tracks = [m.json()["track"] for m in sub.on(events)]
    assert tracks == list(range(7, 12))
    assert sink.stats()["dropped"] == 7 and sink.stats()["unsent"] == 0
    assert any("connected to 127.0.0.1" in r.getMessage() for r in caplog.records)


@needs_broker
def test_home_assistant_online_gets_discovery_again(tmp_path):
    with Broker(tmp_path / "b") as broker, Subscriber(broker.port, ["homeassistant/#"]) as sub:
        sink = MqttSink(_mqtt(broker.port), AGE_GROUPS)
        sink.start(FakeRun())
        configs = lambda ms: [m for m in ms if m.topic.endswith("/config")]  # noqa: E731
        assert sub.wait_for(lambda ms: len(configs(ms)) == 15, 10)
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        publisher.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        assert sub.wait_for(lambda ms: len(configs(ms)) == 30, 10)
        publisher.disconnect()
        publisher.loop_stop()
        sink.close()


def _retained(port, topics=("#",)) -> dict:
    """What a newcomer (Home Assistant starting now) finds retained on the broker: topic -> message."""
    late = Subscriber(port, topics)
    time.sleep(0.7)  # retained messages arrive right after the SUBACK
    late.close()
    return {m.topic: m for m in late.messages if m.retain}


@needs_broker
def test_two_cameras_on_one_broker_each_have_their_availability(tmp_path):
    """A second run ending says nothing of the first camera; the bridge-level topic says offline
    only once the last camera under the prefix is gone."""
    with Broker(tmp_path / "b") as broker:
        door = MqttSink(_mqtt(broker.port, bridge_availability=True), AGE_GROUPS)
        garage = MqttSink(_mqtt(broker.port, bridge_availability=True), AGE_GROUPS)
        door.start(FakeRun("/media/door.mp4"))
        garage.start(FakeRun("/media/garage.mp4"))
        with Subscriber(broker.port, ["streamer/#"]) as sub:
            online = {"streamer/door/available", "streamer/garage/available", "streamer/available"}
            assert sub.wait_for(lambda ms: online <= {m.topic for m in ms if m.text == "online"}, 10)
            garage.close()
            assert sub.wait_for(lambda ms: any(m.topic == "streamer/garage/available" and m.text == "offline"
                                               for m in ms), 10)
            retained = _retained(broker.port, ["streamer/#"])
            assert retained["streamer/door/available"].text == "online"  # the first camera is still live
            assert retained["streamer/available"].text == "online"
            door.close()
            assert sub.wait_for(lambda ms: any(m.topic == "streamer/available" and m.text == "offline" for m in ms), 10)
        retained = _retained(broker.port, ["streamer/#"])
        assert {retained[f"streamer/{c}/available"].text for c in ("door", "garage")} == {"offline"}
        assert retained["streamer/available"].text == "offline"


@needs_broker
def test_stats_are_retained_from_the_start(tmp_path):
    """Home Assistant's fps sensor has a value long before the first stats interval."""
    with Broker(tmp_path / "b") as broker:
        sink = MqttSink(_mqtt(broker.port, stats_interval_s=3600), AGE_GROUPS)
        sink.start(FakeRun())
        try:
            deadline = time.monotonic() + 10
            retained: dict = {}
            while "streamer/door/stats" not in retained and time.monotonic() < deadline:
                retained = _retained(broker.port, ["streamer/door/stats"])
            stats = retained["streamer/door/stats"].json()
            assert stats["seq"] == 1 and not stats["final"] and stats["fps_out"] == 25.0
        finally:
            sink.close()


@needs_broker
def test_retire_removes_a_finished_camera_and_refuses_a_live_one(tmp_path, capsys):
    from streamer.cli import main

    with Broker(tmp_path / "b") as broker:
        for name in ("door", "garage"):
            sink = MqttSink(_mqtt(broker.port), AGE_GROUPS)
            sink.start(FakeRun(f"/media/{name}.mp4"))
            sink.write_records([{"event": "new", "track": 1, "frame": 0, "t_s": 0.0}])
            time.sleep(0.3)
            sink.close()
        live = MqttSink(_mqtt(broker.port), AGE_GROUPS)
        live.start(FakeRun("/media/porch.mp4"))
        try:
            before = _retained(broker.port)
            node_configs = lambda names, node: [t for t in names if f"/streamer_{node}/" in t]  # noqa: E731
            assert len(node_configs(before, "door")) == len(node_configs(before, "garage")) == 15
            # A run keeps its camera's entities (unavailable) when it ends; retiring removes them.
            assert main(["mqtt", "retire", "door", "--mqtt", f"127.0.0.1:{broker.port}"]) == 0
            assert "cleared homeassistant/sensor/streamer_door/people/config" in capsys.readouterr().out
            after = _retained(broker.port)
            assert not node_configs(after, "door") and not [t for t in after if t.startswith("streamer/door/")]
            assert len(node_configs(after, "garage")) == 15 and after["streamer/garage/available"].text == "offline"
            # A camera that is online is refused (its run would put it all back), unless forced.
            assert main(["mqtt", "retire", "porch", "--mqtt", f"127.0.0.1:{broker.port}"]) == 2
            assert "porch" in node_configs(_retained(broker.port), "porch")[0]
            assert main(["mqtt", "retire", "porch", "--mqtt", f"127.0.0.1:{broker.port}", "--force"]) == 0
            assert not node_configs(_retained(broker.port), "porch")
        finally:
            live.close()
    # No broker there: one line naming the cause.
    assert main(["mqtt", "retire", "door", "--mqtt", f"127.0.0.1:{free_port()}"]) == 2


# --- whole runs on the Tears of Steel clip ---

TEARS = "blender_tears_of_steel_10s.mp4"


@pytest.fixture(scope="module")
def tears_short(tmp_path_factory):
    """The first 120 frames (5 s) of the Tears of Steel clip: one person seen and gone (shot 1),
    one seen until the end (shot 2)."""
    import cv2
    from conftest import SHARED_MEDIA

    source = SHARED_MEDIA / TEARS
    if not source.is_file():
        pytest.fail(f"{source} missing: ../shared/media is needed")
    path = tmp_path_factory.mktemp("clip") / "tears_short.mp4"
    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), capture.get(cv2.CAP_PROP_FPS),
                             (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))))
    for _ in range(120):
        ok, frame = capture.read()
        assert ok
        writer.write(frame)
    writer.release()
    capture.release()
    return path


@pytest.fixture(scope="module")
def analyzer(test_models_analyzer):
    """One analyzer for the in-process runs (the models load once)."""
    return test_models_analyzer


def _run(tmp_path, source, port, analyzer, paced=False, **mqtt_changes):
    from streamer.app import RunOptions, run

    config = override(Config(), {"output.window": False, **{f"mqtt.{k}": v for k, v in {
        "enabled": True, "host": "127.0.0.1", "port": port, "stats_interval_s": 0.5, "reconnect_min_s": 0.2,
        "reconnect_max_s": 0.5, "flush_timeout_s": 10.0, **mqtt_changes}.items()}})
    sink = MqttSink(config.mqtt, config.classifier.age_groups)
    options = RunOptions(source=str(source), output=tmp_path / "out.mp4", events=tmp_path / "events.jsonl",
                         window=False, progress=False, report=tmp_path / "people", paced=paced)
    summary = run(config, options, analyzer=analyzer, sinks=[sink])
    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    return summary, sink, [r for r in records if "event" in r]


def _events(sub, camera):
    return [m.json() for m in sub.on(f"streamer/{camera}/events")]


@needs_broker
@pytest.mark.integration
def test_run_publishes_events_counts_stats_and_discovery(tmp_path, tears_short, analyzer):
    camera = "tears_short"
    with Broker(tmp_path / "b") as broker, Subscriber(broker.port) as sub:
        summary, sink, records = _run(tmp_path, tears_short, broker.port, analyzer)
        available_topic = f"streamer/{camera}/available"
        assert sub.wait_for(lambda ms: any(m.topic == available_topic and m.text == "offline" for m in ms), 10)
        available = [m.text for m in sub.on(available_topic)]
        assert available[0] == "online" and available[-1] == "offline"

        # One new and one end per person, the same records as the events file and the report.
        published = _events(sub, camera)
        assert [(e["event"], e["track"]) for e in published] == [(r["event"], r["track"]) for r in records]
        people = json.loads((tmp_path / "people" / "people.json").read_text())["people"]
        assert people, "the clip's report has people"
        for event in ("new", "end"):
            tracks = [e["track"] for e in published if e["event"] == event]
            assert len(tracks) == len(set(tracks)), f"one {event} per person"
            assert {row["track"] for row in people} <= set(tracks)
        assert {e["track"] for e in published if e["event"] == "new"} == {
            e["track"] for e in published if e["event"] == "end"}
        for mine, theirs in zip(published, records):
            assert {k: mine[k] for k in theirs} == theirs, "an event is the record, with camera and time added"
            assert mine["camera"] == camera and mine["timestamp"] > 0
        assert all(len(e["xyxy"]) == 4 for e in published if e["event"] == "new")

        # Counts went up with the people and are back to 0, per gender and age group too.
        counts = [int(m.text) for m in sub.on(f"streamer/{camera}/people")]
        assert max(counts) >= 1 and counts[-1] == 0
        split = [t for t in {m.topic for m in sub.messages} if t.startswith(f"streamer/{camera}/people/")]
        assert {f"streamer/{camera}/people/male", f"streamer/{camera}/people/age/70plus"} <= set(split)
        assert all(sub.on(topic)[-1].text == "0" for topic in split)

        # Stats: at every interval and once at the end, with the summary's counters.
        stats = [m.json() for m in sub.on(f"streamer/{camera}/stats")]
        assert [s["seq"] for s in stats] == list(range(1, len(stats) + 1))
        assert stats[-1]["final"] and not any(s["final"] for s in stats[:-1])
        assert stats[-1]["frames_out"] == summary["frames_out"] == 120
        assert stats[-1]["rss_mb"] > 50 and stats[-1]["detector_ms"] > 0
        assert {"fps_in", "fps_out", "analysed", "skipped", "dropped", "reconnects"} <= set(stats[-1])
        assert (sink.stats()["dropped"], sink.stats()["unsent"]) == (0, 0)
        assert sink.stats()["published"] >= len(published) + len(stats) + 5
        assert summary["mqtt"] == {"published": sink.stats()["published"], "dropped": 0, "unsent": 0}

        # What a newcomer (Home Assistant starting later) finds retained on the broker.
        late = Subscriber(broker.port)
        assert late.wait_for(lambda ms: any(m.topic == available_topic for m in ms), 5)
        time.sleep(0.5)
        retained = {m.topic: m for m in late.messages if m.retain}
        late.close()
    assert retained[f"streamer/{camera}/available"].text == "offline"
    assert "streamer/available" not in retained  # bridge availability is off by default
    assert retained[f"streamer/{camera}/people"].text == "0"
    assert retained[f"streamer/{camera}/stats"].json()["final"]
    assert retained[f"streamer/{camera}/last_event"].json() == published[-1]
    configs = {t: m.json() for t, m in retained.items() if t.startswith("homeassistant/")}
    assert len(configs) == 15
    for topic, payload in configs.items():
        assert topic.endswith("/config") and payload["unique_id"] and payload["state_topic"].startswith(
            f"streamer/{camera}/")
        assert payload["availability"][0]["topic"] == f"streamer/{camera}/available"


@needs_broker
@pytest.mark.integration
def test_broker_killed_mid_run_and_restarted(tmp_path, analyzer):
    """SIGKILL the broker once the run publishes, restart it a second later: the run goes on,
    reconnects, and every event and stats message (QoS 1) reaches a subscriber whose session
    the restarted broker kept."""
    from conftest import SHARED_MEDIA

    broker = Broker(tmp_path / "b", persistent=True).start()
    sub = Subscriber(broker.port, persistent=True)
    subscribed_at = time.time()
    outage = {}

    def outage_once():
        sub.wait_for(lambda ms: any(m.topic.endswith("/stats") for m in ms), 60)
        while not (broker.db.exists() and broker.db.stat().st_mtime > subscribed_at):
            time.sleep(0.1)  # the subscriber's session is on disk
        outage["killed"] = time.time()
        broker.kill()
        time.sleep(1.0)
        broker.start()
        outage["restarted"] = time.time()

    helper = threading.Thread(target=outage_once, daemon=True)
    helper.start()
    try:
        # Paced at the clip's 24 fps (10 s), as a camera: on a quiet machine the whole clip otherwise
        # ran in less time than the outage takes, and nothing came after the restart.
        summary, sink, records = _run(tmp_path, SHARED_MEDIA / TEARS, broker.port, analyzer, paced=True)
        helper.join(30)
        assert summary["stopped_by"] == "end of input" and outage.get("restarted")
        camera = "blender_tears_of_steel_10s"
        assert sub.wait_for(lambda ms: any(m.topic == f"streamer/{camera}/available" and m.text == "offline"
                                           for m in ms), 15)
        published = _events(sub, camera)
        assert {(e["event"], e["track"]) for e in published} == {(r["event"], r["track"]) for r in records}
        stats = [m.json() for m in sub.on(f"streamer/{camera}/stats")]
        assert {s["seq"] for s in stats} == set(range(1, max(s["seq"] for s in stats) + 1)), "no stats lost"
        assert stats[-1]["final"]
        during = [s for s in stats if outage["killed"] < s["timestamp"] < outage["restarted"]]
        after = [s for s in stats if s["timestamp"] > outage["restarted"] and not s["final"]]
        assert during and after, "queued while the broker was away, and published after it came back"
        assert sink.stats()["dropped"] == 0 and sink.stats()["unsent"] == 0
    finally:
        sub.close()
        broker.kill()


@needs_broker
@pytest.mark.integration
def test_last_will_on_sigkill(tmp_path, models_env):
    """A run killed with SIGKILL cannot say goodbye: the broker publishes its Last Will, 'offline'."""
    import signal
    import subprocess
    import sys

    from conftest import REPO, SHARED_MEDIA

    with Broker(tmp_path / "b") as broker, Subscriber(broker.port, ["streamer/+/available"]) as sub:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "run.py"), "--source", str(SHARED_MEDIA / TEARS), "--no-window",
             "--no-progress", "--output", str(tmp_path / "out.mp4"), "--mqtt", f"127.0.0.1:{broker.port}"],
            env=models_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert sub.wait_for(lambda ms: [m.text for m in ms] == ["online"], 60)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            assert sub.wait_for(lambda ms: [m.text for m in ms] == ["online", "offline"], 10)
        finally:
            process.kill()
            process.wait(10)


@pytest.mark.integration
def test_cli_required_broker_absent_is_one_line_error(tmp_path, models_env):
    import subprocess
    import sys

    from conftest import REPO, SHARED_MEDIA

    config = tmp_path / "config.yaml"
    config.write_text("mqtt:\n  required: true\n  connect_timeout_s: 1\n")
    port = free_port()
    done = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--source", str(SHARED_MEDIA / "skimage_astronaut.png"), "--no-window",
         "--output", str(tmp_path / "out.png"), "--config", str(config), "--mqtt", f"127.0.0.1:{port}"],
        env=models_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"MQTT broker 127.0.0.1:{port}: connection refused" in errors[0], done.stderr
    assert not (tmp_path / "out.png").exists()


@needs_broker
def test_doctor_logs_in_once_and_names_the_cause(tmp_path, monkeypatch):
    """`streamer doctor` with mqtt.enabled: one login to the broker, publishing nothing."""
    from streamer.doctor import FAIL, OK, WARN, _mqtt_check
    from streamer.outputs.mqtt_session import probe

    monkeypatch.setenv("STREAMER_MQTT_PASSWORD", "right-password")
    with Broker(tmp_path / "auth", users={"cam": "right-password"}) as broker:
        assert probe(_mqtt(broker.port, username="cam")) == (True, "")
        ok, cause = probe(_mqtt(broker.port, username="intruder"))
        assert not ok and "refused the login" in cause and "right-password" not in cause
        config = override(Config(), {"mqtt.enabled": True, "mqtt.host": "127.0.0.1", "mqtt.port": broker.port,
                                     "mqtt.username": "cam", "mqtt.connect_timeout_s": 2.0})
        assert _mqtt_check(config).status == OK
    absent = free_port()
    check = _mqtt_check(override(config, {"mqtt.port": absent}))
    assert check.status == WARN and "connection refused" in check.detail
    assert _mqtt_check(override(config, {"mqtt.port": absent, "mqtt.required": True})).status == FAIL
    assert _mqtt_check(Config()).status == OK


@needs_broker
def test_tls_with_the_brokers_ca_and_without(tmp_path):
    """A TLS listener: trusted through mqtt.tls_ca_file, refused with the cause without it."""
    tls = TlsFiles.make(tmp_path / "tls")
    with Broker(tmp_path / "b", tls=tls) as broker:
        sink = MqttSink(_mqtt(broker.port, tls=True, tls_ca_file=str(tls.ca), required=True), AGE_GROUPS)
        sink.start(FakeRun())
        sink.close()
        assert sink.stats()["published"] > 0 and sink.stats()["unsent"] == 0
        untrusted = MqttSink(_mqtt(broker.port, tls=True, required=True), AGE_GROUPS)
        with pytest.raises(MqttError, match="TLS certificate is not trusted.*mqtt.tls_ca_file"):
            untrusted.start(FakeRun())
        untrusted.close()
