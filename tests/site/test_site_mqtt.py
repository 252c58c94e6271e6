"""The site on MQTT (streamer/site/mqtt.py): the state and what changes of it are sent, from
hand-made feeds; then a two-camera site on the RTSP test server against a real Mosquitto
(tests/mqtt_broker.py): the site's people count is the sum of the cameras', its Home Assistant
device, its availability online then offline after SIGTERM, and a killed worker's camera left out
of the count while it restarts."""

from __future__ import annotations

import json
import os
import signal
import types
from typing import Any, Dict, List, Optional

import pytest

from streamer.config import parse_config
from streamer.errors import ConfigError
from streamer.site.mqtt import SitePublisher, SiteTopics, site_discovery_configs, site_state, state_messages
from streamer.site.relay import Feed, people_now
from streamer.site.supervisor import CameraJob, CameraState

# --- the state, from hand-made feeds ---


def _camera(name: str, running: bool = True, starts: int = 1, finished: bool = False) -> CameraState:
    state = CameraState(CameraJob(name, None, None), heartbeat=None)  # type: ignore[arg-type]
    state.process = object() if running else None
    state.starts, state.finished = starts, finished
    return state


def _feed(people: Optional[int], run: int = 1, told_by: int = 1, final: bool = False, up: bool = True) -> Feed:
    figures = {"snapshot": {"people_in_view": people, "source_up": up}, "faces_in_frame": people or 0,
               "final": final}
    return Feed(figures=figures, run=run, figures_run=told_by)


def test_state_counts_running_cameras_that_told_their_current_run() -> None:
    cameras = {"door": _camera("door"), "till": _camera("till"), "back": _camera("back", running=False),
               "hall": _camera("hall"), "yard": _camera("yard"), "shed": _camera("shed", running=False,
                                                                                  finished=True),
               "gate": _camera("gate", starts=0, running=False)}
    feeds = {"door": _feed(2), "till": _feed(1, up=False),
             "back": _feed(5),  # its worker was killed: not running, its last figures are stale
             "hall": _feed(4, run=2, told_by=1),  # restarted: the figures are its predecessor's
             "yard": _feed(3, final=True),  # its run told its last figures
             "shed": _feed(1), "gate": Feed()}
    state = site_state(cameras, feeds)
    assert state == {"people": 3, "cameras_up": 1, "cameras": {
        "door": {"people": 2, "status": "up"},
        "till": {"people": 1, "status": "reconnecting"},
        "back": {"people": None, "status": "restarting"},
        "hall": {"people": None, "status": "starting"},
        "yard": {"people": None, "status": "starting"},
        "shed": {"people": None, "status": "ended"},
        "gate": {"people": None, "status": "starting"}}}
    running = [name for name, camera in cameras.items() if camera.process is not None]
    assert people_now(feeds, running) == (3, ["door", "till"])
    topics = SiteTopics("shop", "homeassistant")
    assert state_messages(topics, state)["shop/site/people"] == "3"
    assert json.loads(state_messages(topics, state)["shop/site/state"]) == state


class _FakeClient:
    def __init__(self) -> None:
        self.sent: List[tuple] = []

    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> Any:
        self.sent.append((topic, payload, qos, retain))
        return types.SimpleNamespace(is_published=lambda: True, wait_for_publish=lambda timeout: None)


def _publisher(cameras: Dict[str, CameraState], feeds: Dict[str, Feed], **mqtt: Any) -> SitePublisher:
    config = parse_config({"mqtt": {"enabled": True, "topic_prefix": "shop", **mqtt}}).mqtt
    supervisor = types.SimpleNamespace(cameras=cameras, relay=types.SimpleNamespace(feeds=feeds))
    publisher = SitePublisher(config, supervisor, "shop-site")  # type: ignore[arg-type]
    publisher.connection.client = _FakeClient()
    return publisher


def test_only_changes_are_sent_and_everything_again_after_a_connect() -> None:
    cameras = {"door": _camera("door"), "till": _camera("till")}
    feeds = {"door": _feed(1), "till": _feed(2)}
    publisher = _publisher(cameras, feeds)
    client = publisher.connection.client
    assert publisher.publish_changes() == [] and client.sent == []  # not connected: nothing
    publisher.connection.connected.set()
    publisher._resend = True  # as _on_connect sets it
    publisher.publish_changes()
    topics = [topic for topic, *_ in client.sent]
    assert topics[0] == "shop/site/available" and client.sent[0][1:] == ("online", 1, True)
    assert len([t for t in topics if t.startswith("homeassistant/")]) == 3
    assert topics[-2:] == ["shop/site/people", "shop/site/state"]
    assert all(qos == 1 and retain for _, _, qos, retain in client.sent)
    client.sent.clear()
    publisher.publish_changes()
    assert client.sent == []  # nothing changed
    feeds["till"] = _feed(0, run=1)
    publisher.publish_changes()
    assert [(t, p) for t, p, *_ in client.sent][0] == ("shop/site/people", "1")
    assert [t for t, *_ in client.sent] == ["shop/site/people", "shop/site/state"]
    client.sent.clear()
    feeds["door"] = _feed(1, up=False)  # the people the same, a status not: the state only
    publisher.publish_changes()
    assert [t for t, *_ in client.sent] == ["shop/site/state"]
    client.sent.clear()
    publisher._resend = True  # a reconnect, or Home Assistant online
    publisher.publish_changes()
    assert len(client.sent) == 6


def test_without_discovery_no_configs() -> None:
    publisher = _publisher({"door": _camera("door")}, {"door": _feed(1)}, discovery=False)
    assert set(publisher.messages()) == {"shop/site/available", "shop/site/people", "shop/site/state"}


def test_the_site_device_in_home_assistant() -> None:
    configs = dict(site_discovery_configs(SiteTopics("shop", "homeassistant")))
    assert set(configs) == {"homeassistant/sensor/shop_site/people/config",
                            "homeassistant/binary_sensor/shop_site/occupancy/config",
                            "homeassistant/sensor/shop_site/cameras_up/config"}
    people = configs["homeassistant/sensor/shop_site/people/config"]
    assert people["state_topic"] == "shop/site/people" and people["json_attributes_topic"] == "shop/site/state"
    assert people["unique_id"] == "shop_site_people" and people["device"]["name"] == "shop site"
    assert people["availability"] == [{"topic": "shop/site/available", "payload_available": "online",
                                       "payload_not_available": "offline"}]
    up = configs["homeassistant/sensor/shop_site/cameras_up/config"]
    assert up["state_topic"] == "shop/site/state" and "cameras_up" in up["value_template"]
    occupancy = configs["homeassistant/binary_sensor/shop_site/occupancy/config"]
    assert occupancy["state_topic"] == "shop/site/people" and occupancy["device_class"] == "occupancy"


@pytest.mark.parametrize("name", ["site", "Site"])
def test_a_camera_named_site_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"cameras.{name}: 'site' is reserved, with MQTT on or off"):
        parse_config({"cameras": {name: {"source": "rtsp://cam/stream"}}})
    parse_config({"cameras": {"site2": {"source": "rtsp://cam/stream"}}})


# --- a two-camera site against a real broker ---

PREFIX = "shop"


def _latest(messages: List[Any], topic: str) -> Optional[str]:
    values = [m.text for m in messages if m.topic == topic]
    return values[-1] if values else None


def _counts_agree(messages: List[Any]) -> bool:
    """The site's latest people count is the sum of the cameras' latest, and someone is in view."""
    site = _latest(messages, f"{PREFIX}/site/people")
    cameras = [_latest(messages, f"{PREFIX}/{name}/people") for name in ("a", "b")]
    states = _states(messages)
    return (site is not None and None not in cameras and int(site) > 0 and int(site) == sum(map(int, cameras))
            and bool(states) and states[-1]["people"] == int(site))


def _states(messages: List[Any]) -> List[dict]:
    return [m.json() for m in messages if m.topic == f"{PREFIX}/site/state"]


@pytest.mark.integration
def test_a_two_camera_site_publishes_its_people_across_cameras(tmp_path, shared, models_env) -> None:
    from mqtt_broker import Broker, Subscriber, mosquitto_missing
    from test_rtsp import CLIP, RtspServer, free_port
    from test_site import START_S, Site

    pytest.importorskip("paho.mqtt.client", reason="pip install 'streamer[mqtt]'")
    if mosquitto_missing() is not None:
        pytest.skip(str(mosquitto_missing()))
    server = RtspServer(free_port(), CLIP)
    server.start()
    site: Optional[Site] = None
    try:
        with Broker(tmp_path / "broker") as broker, Subscriber(broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as sub:
            mqtt = (f"mqtt: {{enabled: true, host: 127.0.0.1, port: {broker.port}, topic_prefix: {PREFIX}, "
                    "reconnect_min_s: 0.2, reconnect_max_s: 1.0}")
            # mode all: each camera's people topic is the faces of its latest frame, as the site counts them.
            site = Site(tmp_path, server.url, models_env, "{restart_backoff_s: 3}", names=("a", "b"), mode="all",
                        extra=mqtt)
            assert sub.wait_for(lambda ms: _latest(ms, f"{PREFIX}/site/available") == "online", 30), site.lines
            assert sub.wait_for(_counts_agree, START_S), (sub.messages[-20:], "".join(site.lines[-30:]))
            state = _states(sub.messages)[-1]
            assert state["cameras_up"] == 2 and {c["status"] for c in state["cameras"].values()} == {"up"}
            assert state["people"] == sum(c["people"] for c in state["cameras"].values())
            configs = {m.topic: m.json() for m in sub.messages if m.topic.startswith("homeassistant/")
                       and "/shop_site/" in m.topic}
            assert set(configs) == {"homeassistant/sensor/shop_site/people/config",
                                    "homeassistant/binary_sensor/shop_site/occupancy/config",
                                    "homeassistant/sensor/shop_site/cameras_up/config"}
            assert all(c["availability"][0]["topic"] == f"{PREFIX}/site/available" for c in configs.values())
            # Each camera keeps its own device beside the site's.
            assert any("/shop_a/" in m.topic for m in sub.messages) and any("/shop_b/" in m.topic for m in sub.messages)

            # b's worker killed: while it restarts (3 s backoff, then its models load) the site counts a alone.
            seen = len(sub.messages)
            os.kill(site.pids("b")[0], signal.SIGKILL)

            def b_left_out(ms: List[Any]) -> bool:
                return any(s["cameras"]["b"]["status"] == "restarting" and s["cameras"]["b"]["people"] is None
                           and s["people"] == (s["cameras"]["a"]["people"] or 0) and s["cameras_up"] == 1
                           for s in _states(ms[seen:]))

            assert sub.wait_for(b_left_out, 15), _states(sub.messages[seen:])
            left_out = next(s for s in _states(sub.messages[seen:]) if s["cameras"]["b"]["status"] == "restarting")
            site_people = [m.text for m in sub.messages[seen:] if m.topic == f"{PREFIX}/site/people"]
            assert str(left_out["people"]) in site_people
            seen = len(sub.messages)
            assert sub.wait_for(lambda ms: any(s["cameras_up"] == 2 for s in _states(ms[seen:])), START_S), \
                "".join(site.lines[-30:])

            seen = len(sub.messages)
            summary = site.stop()
            assert summary["cameras"]["b"]["restarts"] == 1
            assert sub.wait_for(lambda ms: _latest(ms[seen:], f"{PREFIX}/site/available") == "offline", 10)
            assert _latest(sub.messages, f"{PREFIX}/site/people") == "0"  # the workers stopped first
            # A box that stops being a site: retire clears the site's topics and device as a camera's.
            from streamer.outputs.mqtt_session import retire

            cleared = retire(parse_config({"mqtt": {"host": "127.0.0.1", "port": broker.port,
                                                    "topic_prefix": PREFIX}}).mqtt, "site")
            assert {f"{PREFIX}/site/people", f"{PREFIX}/site/state", f"{PREFIX}/site/available",
                    "homeassistant/sensor/shop_site/cameras_up/config"} <= set(cleared)
        assert any("MQTT (site): connected to 127.0.0.1" in line for line in site.lines)
    finally:
        if site is not None:
            site.close()
        server.kill()
