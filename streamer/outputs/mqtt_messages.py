"""What the MQTT output publishes: the broker address from the command line, topic names, Home
Assistant discovery configs, the people-in-view and audience counts, JSON payloads. Pure data,
no connection: the sink that sends them is ``mqtt.py``."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from .. import __version__
from ..config import MQTT_PASSWORD_ENV, MqttConfig
from ..errors import ConfigError, MqttError
from ..report.tally import LabelCounts
from ..types import GENDERS, Face, age_group_labels

if TYPE_CHECKING:
    from ..audience.live import AudienceCounts


def parse_address(text: str) -> Tuple[str, Optional[int]]:
    """``--mqtt HOST[:PORT]``: ``"localhost"`` -> ``("localhost", None)``, ``"10.0.0.2:1884"``,
    ``"[::1]:1883"``; ConfigError on an empty host or a bad port."""
    text = text.strip()
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end] if end > 0 else "", text[end + 1 :] if end > 0 else ""
        if rest and not rest.startswith(":"):
            host = ""
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        port_text = None  # a bare IPv6 address or a plain host
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"--mqtt {text}: the port must be a number from 1 to 65535 (HOST[:PORT])")
        port = int(port_text)
    if not host:
        raise ConfigError(f"--mqtt {text!r}: expected HOST[:PORT], e.g. --mqtt localhost or --mqtt 10.0.0.2:1883")
    return host, port


def cli_overrides(address: str) -> Dict[str, Any]:
    """Config changes for ``--mqtt HOST[:PORT]``."""
    host, port = parse_address(address)
    changes: Dict[str, Any] = {"mqtt.enabled": True, "mqtt.host": host}
    if port is not None:
        changes["mqtt.port"] = port
    return changes


def slug(text: str) -> str:
    """A topic level and Home Assistant id: lowercase ``[a-z0-9_-]``, other runs of characters as
    ``_``, at most 64 characters; ``camera`` when nothing is left."""
    return re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_")[:64] or "camera"


def topic_level(label: str) -> str:
    """A label as one topic level: ``70+`` -> ``70plus`` ('+' and '#' are MQTT wildcards, '/' a level)."""
    return label.replace("+", "plus").replace("#", "_").replace("/", "_")


def camera_name(source_name: str) -> str:
    """The default camera name of a source: a file's or folder's name without suffix, a device's
    name, a stream's host and path (never its credentials), ``webcam<N>`` for an index."""
    name = source_name.strip()
    if "://" in name:
        parts = urlsplit(name)
        base = (parts.hostname or "") + parts.path
    elif name.isdigit():
        base = f"webcam{name}"
    elif "!" in name:
        base = "gstreamer"
    else:
        path = Path(name.rstrip("/"))
        base = path.stem if path.suffix else path.name
    return slug(base)


def read_password(config: MqttConfig) -> Optional[str]:
    """The login password: ``STREAMER_MQTT_PASSWORD``, else the first line of ``mqtt.password_file``;
    MqttError naming the file (never its content) when it cannot be read."""
    env = os.environ.get(MQTT_PASSWORD_ENV)
    if env:
        return env
    if config.password_file is None:
        return None
    path = Path(config.password_file).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise MqttError(f"mqtt.password_file {path}: cannot read it ({reason}); give a readable file "
                        f"holding the password, or set {MQTT_PASSWORD_ENV}") from None
    return lines[0] if lines else ""


@dataclass(frozen=True)
class Topics:
    """Every topic of one run."""

    prefix: str
    camera: str
    discovery_prefix: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.camera}"

    @property
    def available(self) -> str:
        """This camera's availability (its run's Last Will): one per camera, so that one run
        ending on a broker says nothing of another's camera."""
        return f"{self.base}/available"

    @property
    def bridge_available(self) -> str:
        """The optional bridge-level availability: some camera under the prefix is online."""
        return f"{self.prefix}/available"

    @property
    def cameras_available(self) -> str:
        """Every camera's availability under the prefix (a subscription)."""
        return f"{self.prefix}/+/available"

    @property
    def last_event(self) -> str:
        return f"{self.base}/last_event"

    @property
    def node(self) -> str:
        """The Home Assistant device and the middle level of its discovery topics."""
        return slug(f"{self.prefix}_{self.camera}")

    @property
    def discovery_configs(self) -> str:
        """Every discovery config of this camera's device (a subscription)."""
        return f"{self.discovery_prefix}/+/{self.node}/+/config"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def people(self) -> str:
        return f"{self.base}/people"

    def people_gender(self, gender: str) -> str:
        return f"{self.base}/people/{gender}"

    def people_age(self, group: str) -> str:
        return f"{self.base}/people/age/{topic_level(group)}"

    def zone_people(self, zone: str) -> str:
        """People in a zone now (audience.zones); ``/<gender>`` and ``/age/<group>`` split it."""
        return f"{self.base}/zones/{zone}/people"

    def line_crossings(self, line: str, direction: str) -> str:
        """Crossings of a line (audience.lines) since the run started, ``direction`` "in" or "out"."""
        return f"{self.base}/lines/{line}/{direction}"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def source(self) -> str:
        return f"{self.base}/source"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"


def discovery_configs(topics: Topics, genders: Sequence[str] = GENDERS, groups: Sequence[str] = (),
                      bridge: bool = False, zones: Sequence[str] = (),
                      lines: Sequence[str] = ()) -> List[Tuple[str, dict]]:
    """Home Assistant MQTT discovery: ``(config topic, payload)`` for the people count (its
    attributes: the last event), one count per gender and per age group (``groups``, labels as
    ``age_group_labels`` gives them), occupancy (someone in view), the output fps, the source's
    status, and the occupancy of each zone and the in/out crossings of each line (``audience``);
    all of one device per camera and unavailable while ``<prefix>/<camera>/available`` is
    ``offline`` (and, with ``bridge``, also while ``<prefix>/available`` is)."""
    availability = [topics.available, topics.bridge_available] if bridge else [topics.available]
    entities: List[Tuple[str, str, dict]] = [
        ("sensor", "people", {"name": "People", "state_topic": topics.people, "state_class": "measurement",
                              "unit_of_measurement": "people", "icon": "mdi:account-group",
                              "json_attributes_topic": topics.last_event}),
        occupancy_entity(topics.people),
    ]
    for gender in genders:
        entities.append(("sensor", f"people_{gender}", {
            "name": f"People {gender}", "state_topic": topics.people_gender(gender), "state_class": "measurement",
            "unit_of_measurement": "people", "icon": "mdi:account"}))
    for group in groups:
        entities.append(("sensor", f"people_age_{topic_level(group)}", {
            "name": f"People aged {group}", "state_topic": topics.people_age(group), "state_class": "measurement",
            "unit_of_measurement": "people", "icon": "mdi:account-clock"}))
    for zone in zones:
        entities.append(("sensor", f"zone_{slug(zone)}_people", {
            "name": f"Zone {zone} people", "state_topic": topics.zone_people(zone), "state_class": "measurement",
            "unit_of_measurement": "people", "icon": "mdi:account-group-outline"}))
    for line in lines:
        for direction in ("in", "out"):
            entities.append(("sensor", f"line_{slug(line)}_{direction}", {
                "name": f"Line {line} {direction}", "state_topic": topics.line_crossings(line, direction),
                # Counts from 0 at each run's start: a meter reset, as total_increasing means.
                "state_class": "total_increasing", "unit_of_measurement": "people",
                "icon": "mdi:login" if direction == "in" else "mdi:logout"}))
    entities.append(("sensor", "fps", {
        "name": "Frames per second", "state_topic": topics.stats, "value_template": "{{ value_json.fps_out }}",
        "state_class": "measurement", "unit_of_measurement": "fps", "entity_category": "diagnostic",
        "icon": "mdi:speedometer"}))
    entities.append(("binary_sensor", "source", {
        "name": "Camera", "state_topic": topics.source, "payload_on": "up", "payload_off": "down",
        "device_class": "connectivity", "entity_category": "diagnostic"}))
    return entity_configs(topics.discovery_prefix, topics.node, f"{topics.prefix} {topics.camera}", availability,
                          entities)


def occupancy_entity(people_topic: str) -> Tuple[str, str, dict]:
    """The Occupancy binary sensor: on while the count on ``people_topic`` is above 0."""
    return ("binary_sensor", "occupancy", {"name": "Occupancy", "state_topic": people_topic,
                                           "value_template": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}",
                                           "device_class": "occupancy"})


def entity_configs(discovery_prefix: str, node: str, device_name: str, availability: Sequence[str],
                   entities: Sequence[Tuple[str, str, dict]]) -> List[Tuple[str, dict]]:
    """Home Assistant discovery ``(config topic, payload)`` of each ``(component, object id,
    fields)`` in ``entities``, all of one device ``node`` named ``device_name``, available while
    every topic of ``availability`` says ``online``."""
    common = {
        "availability": [{"topic": topic, "payload_available": "online", "payload_not_available": "offline"}
                         for topic in availability],
        "availability_mode": "all",
        "device": {
            "identifiers": [node],
            "name": device_name,
            "manufacturer": "streamer",
            "model": "face analyzer",
            "sw_version": __version__,
        },
        "origin": {"name": "streamer", "sw_version": __version__},
    }
    configs = []
    for component, object_id, fields in entities:
        # default_entity_id (domain.name): what Home Assistant names the entity; it replaced
        # object_id, deprecated in HA 2025.10 and gone from 2026.4.
        payload = {**fields, "unique_id": f"{node}_{object_id}",
                   "default_entity_id": f"{component}.{node}_{object_id}", **common}
        configs.append((f"{discovery_prefix}/{component}/{node}/{object_id}/config", payload))
    return configs


class PeopleCounts:
    """People in view now, split by the labels shown, from the run's frames and track records.

    Tracked mode: a person counts from their ``new`` record to their ``end`` record (so the count
    follows the events, and a face hidden for a moment still counts), labelled by what was last
    shown for their track (``update`` and ``end`` records, or the faces of a frame); ``unknown``
    until labelled. Without tracking, the faces of the latest frame.
    """

    def __init__(self, age_groups: Iterable[Tuple[int, int]], genders: Sequence[str] = GENDERS) -> None:
        self.genders = tuple(genders)
        self.groups = tuple(age_group_labels(list(age_groups)))
        self._tracked = False
        self._open: Dict[int, None] = {}
        self._labels: Dict[int, Tuple[Optional[str], Optional[str]]] = {}  # by track, shown or not yet opened
        self._frame_labels: List[Tuple[Optional[str], Optional[str]]] = []
        self.version = 0  # goes up whenever counts() may have changed: the sink recounts only then

    def observe_faces(self, faces: Sequence[Face]) -> None:
        labels = []
        for face in faces:
            if face.track is None:
                labels.append((face.gender, face.age_group))
            else:
                self._tracked = True
                self._relabel(face.track, face.gender, face.age_group)
        if not self._tracked and labels != self._frame_labels:
            self._frame_labels = labels
            self.version += 1

    def observe_records(self, records: Sequence[dict]) -> None:
        for record in records:
            track, event = record.get("track"), record.get("event")
            if track is None:
                continue
            self._tracked = True
            self.version += 1
            if event == "end":
                self._open.pop(track, None)
                self._labels.pop(track, None)
                continue
            if event == "new":
                self._open[track] = None
            self._relabel(track, record.get("gender"), record.get("age_group"))

    def _relabel(self, track: int, gender: Optional[str], group: Optional[str]) -> None:
        old = self._labels.get(track, (None, None))
        new = (gender or old[0], group or old[1])
        if new != old:
            self._labels[track] = new
            self.version += 1

    def counts(self) -> Dict[str, int]:
        """``{"": total, "female": n, "male": n, "unknown": n, "age/20-29": n, ..., "age/70plus": n,
        "age/unknown": n}`` (every gender and group, zeros included): topic suffixes under
        ``<camera>/people`` (group labels through :func:`topic_level`)."""
        labels = ([self._labels.get(track, (None, None)) for track in self._open] if self._tracked
                  else self._frame_labels)
        counted = LabelCounts.of(labels, self.groups, self.genders, extend=False)
        out = {"": counted.people, **counted.by_gender()}
        out.update((f"age/{topic_level(group)}", n) for group, n in counted.by_age_group().items())
        return out


def audience_messages(topics: Topics, audience: AudienceCounts) -> Dict[str, str]:
    """The retained messages of the audience zones and lines now: each zone's people (split like
    ``people``) and each line's crossings since the start; topic -> payload."""
    values: Dict[str, str] = {}
    for zone in audience.zones:
        counted = audience.zone_people(zone)
        base = topics.zone_people(zone)
        values[base] = str(counted.people)
        values.update((f"{base}/{gender}", str(n)) for gender, n in counted.by_gender().items())
        values.update((f"{base}/age/{topic_level(group)}", str(n)) for group, n in counted.by_age_group().items())
    for line in audience.lines:
        for direction in ("in", "out"):
            values[topics.line_crossings(line, direction)] = str(audience.crossings_total(line, direction))
    return values


def dumps(payload: dict) -> bytes:
    """A JSON message, compact; numpy scalars and arrays in records as JSON numbers and lists."""
    return json.dumps(payload, separators=(",", ":"), default=_plain).encode("utf-8")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
