"""The cameras section: names, per-camera overrides merged over the global sections, errors that
name the camera and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.config import Config, camera_config, load_config, parse_config
from streamer.errors import ConfigError

SITE = {
    "detector": {"score": 0.5},
    "mqtt": {"client_id": "shop"},
    "cameras": {
        "door": {"source": "rtsp://127.0.0.1:8554/door", "events": "out/door.jsonl", "mode": "tracked"},
        "till": {"source": "rtsp://127.0.0.1:8554/till", "detector": {"score": 0.7}, "privacy": "aggregate",
                 "tracking": {"detect_every_s": 0.5}, "mode": "gated"},
        "back-2": {"source": "0", "audience": {"zones": {"shelf": {"polygon": [[0, 0], [0.5, 0], [0.5, 0.5]]}}}},
    },
}


def test_each_camera_gets_the_global_sections_with_its_overrides():
    config = parse_config(SITE)
    assert list(config.cameras) == ["door", "till", "back-2"]
    door, till, back = (camera_config(config, name) for name in config.cameras)
    assert door.detector.score == 0.5 and till.detector.score == 0.7
    assert till.tracking.detect_every_s == 0.5 and door.tracking.detect_every_s == config.tracking.detect_every_s
    assert (door.tracking.enabled, till.tracking.enabled, till.motion.enabled) == (True, False, True)
    assert till.output.privacy == "aggregate" and door.output.privacy == config.output.privacy
    assert list(back.audience.zones) == ["shelf"] and not door.audience.zones
    assert [c.mqtt.camera for c in (door, till, back)] == ["door", "till", "back-2"]
    assert till.mqtt.client_id == "shop-till"  # one id per connection: the broker throws out a duplicate
    assert door.cameras == {} and config.cameras["door"].events == "out/door.jsonl"


def test_no_cameras_is_the_single_source_config():
    assert Config().cameras == {} and parse_config({}).cameras == {}


@pytest.mark.parametrize("cameras, message", [
    ({"door/1": {"source": "x"}}, "'cameras.door/1': a name needs 1-40 letters, digits, '_' or '-'"),
    ({"door 1": {"source": "x"}}, "'cameras.door 1'"),
    ({"+": {"source": "x"}}, "'cameras.+'"),
    ({"door": {}}, "'cameras.door.source': every camera needs a source"),
    ({"door": {"source": "x", "mode": "fast"}}, "'cameras.door.mode'"),
    ({"door": {"source": "x", "detector": {"score": 2}}}, "'cameras.door.detector.score'"),
    ({"door": {"source": "x", "detector": {"scor": 0.5}}}, "unknown config key 'cameras.door.detector.scor'"),
    ({"door": {"source": "x", "mqtt": {"host": "h"}}}, "unknown config key 'cameras.door.mqtt'"),
    ({"door": {"source": "x", "tracking": 3}}, "'cameras.door.tracking': expected a mapping"),
    ({"door": {"source": "x", "privacy": "aggregate", "output": "a.mp4"}}, "'cameras.door.output'"),
    ({"door": {"source": "x"}, "Door": {"source": "y"}}, "cameras 'door' and 'Door' differ only in case"),
    ({"door": "rtsp://x"}, "'cameras.door': expected a mapping of cameras settings"),
    ([{"source": "x"}], "'cameras': expected a mapping of names to settings"),
])
def test_bad_cameras_are_refused_naming_the_camera_and_key(cameras, message):
    with pytest.raises(ConfigError) as error:
        parse_config({"cameras": cameras})
    assert message in str(error.value)


def test_a_camera_named_twice_is_refused_with_its_lines(tmp_path: Path):
    path = tmp_path / "site.yaml"
    path.write_text("cameras:\n  door: {source: a}\n  door: {source: b}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'cameras.door' is given twice, at lines 2 and 3"):
        load_config(path)


def test_an_unknown_camera_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match="no camera 'hall' in the config; its cameras: door, till, back-2"):
        camera_config(parse_config(SITE), "hall")
