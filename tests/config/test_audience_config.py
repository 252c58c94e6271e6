"""The audience section: named zones and lines checked with the YAML path of the bad key."""

from __future__ import annotations

import pytest

from streamer.config import Config, LineConfig, ZoneConfig, override, parse_config
from streamer.errors import ConfigError

SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]


def test_zones_and_lines_parse_into_named_sections():
    config = parse_config({"audience": {
        "zones": {"shelf": {"polygon": SQUARE, "inertia_frames": 5, "min_dwell_s": 1.5}, "door-2": {"polygon": SQUARE}},
        "lines": {"door": {"points": [[0.0, 0.6], [1.0, 0.6]], "direction": "up", "band": 0.05}},
        "anchor": "bottom"}})
    audience = config.audience
    assert set(audience.zones) == {"shelf", "door-2"} and audience.enabled
    assert audience.zones["shelf"] == ZoneConfig(polygon=[tuple(p) for p in SQUARE], inertia_frames=5, min_dwell_s=1.5)
    assert audience.zones["door-2"].inertia_frames == 3
    assert audience.lines["door"] == LineConfig(points=((0.0, 0.6), (1.0, 0.6)), direction="up", band=0.05)
    # Round trip through plain data (what --flags and the web service do).
    assert override(config, {"audience.anchor": "centre"}).audience.zones == audience.zones


def test_defaults_have_no_zones_and_measure_attention():
    audience = Config().audience
    assert audience.zones == {} and audience.lines == {} and audience.attention and audience.enabled
    assert Config().to_dict()["audience"]["zones"] == {}


@pytest.mark.parametrize(
    "audience, message",
    [
        ({"zones": {"shelf": {"polygon": SQUARE[:2]}}}, "'audience.zones.shelf.polygon': needs at least 3"),
        ({"zones": {"shelf": {}}}, "'audience.zones.shelf.polygon': needs at least 3"),
        ({"zones": {"shelf": {"polygn": SQUARE}}}, "unknown config key 'audience.zones.shelf.polygn'"),
        ({"zones": {"shelf": {"polygon": [[0.1, 0.1], [1.5, 0.1], [0.3, 0.4]]}}},
         "'audience.zones.shelf.polygon': points are relative coordinates"),
        ({"zones": {"shelf": {"polygon": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]}}}, "covers less than"),
        ({"zones": {"shelf": {"polygon": SQUARE, "inertia_frames": 0}}}, "'audience.zones.shelf.inertia_frames'"),
        ({"zones": {"shelf": {"polygon": SQUARE, "min_dwell_s": -1}}}, "'audience.zones.shelf.min_dwell_s'"),
        ({"zones": {"my shelf": {"polygon": SQUARE}}}, "'audience.zones.my shelf': a name needs"),
        ({"zones": {"a/b": {"polygon": SQUARE}}}, "'audience.zones.a/b': a name needs"),
        ({"zones": [SQUARE]}, "'audience.zones': expected a mapping of names"),
        ({"zones": {"shelf": SQUARE}}, "'audience.zones.shelf': expected a mapping"),
        ({"lines": {"door": {"points": [[0.0, 0.5]]}}}, "'audience.lines.door.points'"),
        ({"lines": {"door": {"points": [[0.5, 0.5], [0.5, 0.5]]}}}, "'audience.lines.door.points': the ends"),
        ({"lines": {"door": {"points": [[0.0, 0.5], [1.0, 0.5]], "direction": "left"}}},
         "'audience.lines.door.direction': 'left' runs along the line"),
        ({"lines": {"door": {"points": [[0.0, 0.5], [1.0, 0.5]], "direction": "north"}}},
         "'audience.lines.door.direction': expected one of"),
        ({"lines": {"door": {"points": [[0.0, 0.5], [1.0, 0.5]], "band": 0.9}}}, "'audience.lines.door.band'"),
        ({"anchor": "feet"}, "'audience.anchor'"),
        ({"max_yaw_deg": 0}, "'audience.max_yaw_deg'"),
        ({"zonez": {}}, "unknown config key 'audience.zonez'"),
    ],
)
def test_bad_audience_settings_name_their_path(audience, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_config({"audience": audience})
