"""The audience section: zones, counting lines and the attention test.

Zones and lines are in relative frame coordinates (0-1, x to the right, y down), so one config
fits a camera at any resolution; they are named, and the names become event fields, MQTT topic
levels and Prometheus labels (``schema.NAME_PATTERN``).
"""

from __future__ import annotations

import math
from typing import Dict, List, Literal, Tuple

from .schema import _BadValue, _Section, section, setting

Point = Tuple[float, float]
# A zone this small (share of the frame) is a typo, not a place: no face anchor would ever fall in it.
_MIN_ZONE_AREA = 1e-4
# A line shorter than this (share of the frame's side) has no direction to speak of.
_MIN_LINE_LENGTH = 0.01
# "in" must cross the line, not slide along it: the direction must be at least this far (degrees)
# from the line's own direction.
_MIN_CROSSING_ANGLE_DEG = 15.0


def _check_points(field: str, points: List[Point]) -> None:
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise _BadValue(field, "points are relative coordinates [x, y] from 0 to 1 (the `streamer zones "
                            "--source SRC` helper prints them)", [x, y])


def polygon_area(points: List[Point]) -> float:
    """The area of a simple polygon (shoelace formula), in the units of its points squared."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, [*points[1:], points[0]]):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2.0


@section
class ZoneConfig(_Section):
    polygon: List[Tuple[float, float]] = setting(
        default=[],
        min_length=3,
        description="The zone's corners in order, [x, y] relative to the frame (0-1, y down): at least 3.",
    )
    inertia_frames: int = setting(
        default=3,
        ge=1,
        le=300,
        description="Frames in a row a face must be inside before it is in the zone, and outside before it has "
        "left: a face whose anchor jitters on the edge neither enters nor leaves. Its time in the zone still "
        "counts from the first frame inside (Frigate's zone inertia, 3 by default too).",
    )
    min_dwell_s: float = setting(
        default=0.0,
        ge=0.0,
        le=86400.0,
        description="A visit counts (zone_enter, counts, dwell) once the person has been in the zone this long; "
        "shorter ones (someone cutting a corner) are not counted at all.",
    )

    def _check(self) -> None:
        _check_points("polygon", self.polygon)
        if polygon_area(self.polygon) < _MIN_ZONE_AREA:
            raise _BadValue("polygon", f"the zone covers less than {_MIN_ZONE_AREA:g} of the frame (points on one "
                            "line, or repeated?)", self.polygon)


@section
class LineConfig(_Section):
    points: Tuple[Tuple[float, float], Tuple[float, float]] = setting(
        default=((0.0, 0.5), (1.0, 0.5)),
        description="The line's two ends, [x, y] relative to the frame (0-1, y down).",
    )
    direction: Literal["up", "down", "left", "right"] = setting(
        default="down",
        description="Which way across the line counts as \"in\" (on the picture: down is towards the bottom "
        "edge); the other way is \"out\".",
    )
    band: float = setting(
        default=0.03,
        ge=0.0,
        le=0.5,
        description="Half-width of the dead band around the line, as a share of the frame's shorter side: a "
        "crossing counts once the anchor is this far on the other side, so a face jittering on the line counts "
        "nothing (0.03: 11 px at 360 p, about a third of a 30 px face).",
    )

    def _check(self) -> None:
        _check_points("points", list(self.points))
        (x1, y1), (x2, y2) = self.points
        length = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
        if length < _MIN_LINE_LENGTH:
            raise _BadValue("points", f"the ends are less than {_MIN_LINE_LENGTH:g} of the frame apart", self.points)
        dx, dy = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}[self.direction]
        # sin of the angle between the line and the direction: 0 when "in" runs along the line.
        sine = abs((x2 - x1) * dy - (y2 - y1) * dx) / length
        if sine < math.sin(math.radians(_MIN_CROSSING_ANGLE_DEG)):
            raise _BadValue("direction", f"'{self.direction}' runs along the line, so it says nothing about which "
                            "way is in; use one across it", self.direction)


@section
class AudienceConfig(_Section):
    zones: Dict[str, ZoneConfig] = setting(
        default={},
        description="Named zones, e.g. {shelf: {polygon: [[0.1, 0.3], [0.5, 0.3], [0.5, 0.9], [0.1, 0.9]], "
        "inertia_frames: 3, min_dwell_s: 1.0}}; keys of each as under 'zone settings' in README. Needs tracked "
        "mode. Names: letters, digits, '_', '-'.",
    )
    lines: Dict[str, LineConfig] = setting(
        default={},
        description="Named counting lines, e.g. {door: {points: [[0.2, 0.6], [0.8, 0.6]], direction: down, "
        "band: 0.03}}: each person crossing counts in or out once per crossing, not per jitter.",
    )
    attention: bool = setting(
        default=True,
        description="Tracked mode: measure whether each person looks at the camera (a frontal face, from the "
        "detector's 5 landmarks): end records get attention_s and glances, zones their watchers. Needs a "
        "detector with landmarks (not res10).",
    )
    anchor: Literal["centre", "bottom"] = setting(
        default="centre",
        description="The point of a face box that says where the person is: centre, or bottom (the chin: "
        "nearer the floor, for zones drawn on the floor of a camera looking down).",
    )
    max_yaw_deg: float = setting(
        default=30.0,
        gt=0.0,
        le=90.0,
        description="A face turned sideways up to this many degrees (from its 5 landmarks) is looking at the "
        "camera; about the angle a face keeps when reading a screen beside the camera.",
    )
    max_pitch_deg: float = setting(
        default=25.0,
        gt=0.0,
        le=90.0,
        description="A face tilted up or down up to this many degrees is looking at the camera. Pitch from 5 "
        "landmarks is rougher than yaw (faces differ in nose length): keep it wider.",
    )
    min_glance_s: float = setting(
        default=0.3,
        ge=0.0,
        le=60.0,
        description="A look at the camera counts as a glance (and its time as attention) once it lasts this long.",
    )
    glance_gap_s: float = setting(
        default=0.5,
        ge=0.0,
        le=60.0,
        description="Looking away for less than this does not end a glance (a blink of the landmarks, a nod).",
    )
    draw: bool = setting(default=True, description="Draw the zones and lines on the output picture (thin, named).")

    @property
    def enabled(self) -> bool:
        """Anything to measure: a zone, a line or attention."""
        return bool(self.zones or self.lines or self.attention)
