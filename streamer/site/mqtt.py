"""The site on MQTT: the people in view across every camera of ``run --config site.yaml`` (and
``serve --config``), published by the supervisor process beside each camera's own topics.

Topics, under ``mqtt.topic_prefix`` (each camera's worker publishes ``<prefix>/<camera>/...``):

- ``<prefix>/site/available``: ``online`` (retained) while the site runs, ``offline`` when it
  stops and as the broker's Last Will (the supervisor killed, a pulled plug).
- ``<prefix>/site/people``: people in view now over the cameras whose worker runs and has told
  a count (retained, on change): the sum of those cameras' own counts, a person seen by two
  cameras counting twice.
- ``<prefix>/site/state``: ``{"people": n, "cameras_up": n, "cameras": {"<camera>": {"people":
  n or null, "status": "up"}}}`` (retained, on change); a camera's status is ``up``,
  ``reconnecting``, ``starting``, ``restarting`` or ``ended`` (``supervisor.camera_status``), its
  people null unless its worker runs and has told a count.
- Home Assistant discovery (``mqtt.discovery``): one device ``<prefix> site`` with a People
  sensor (the state as its attributes), an Occupancy binary sensor and a Cameras up sensor,
  available while ``<prefix>/site/available`` says ``online``.

Everything is retained state: it is sent when it changes (looked at every ``_PERIOD_S``, the
figures the workers relay come about once a second) and all of it again on every (re)connect and
whenever Home Assistant announces itself online. The connection is its own (client id
``<client_id or prefix>-site``); an unreachable broker is said once and retried (paho reconnects
after the first connection) while the cameras run on: only ``mqtt.required`` stops the site at
its start, as it stops a camera's run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..config import MqttConfig
from ..config.load import RESERVED_CAMERA
from ..errors import MqttError
from ..outputs.mqtt_connection import MqttConnection
from ..outputs.mqtt_messages import entity_configs, occupancy_entity, read_password, slug
from .relay import Feed, people_now
from .supervisor import CameraState, Supervisor, camera_status

log = logging.getLogger(__name__)

# The topic level of the site; no camera may have this name (config.load rejects it).
SITE = RESERVED_CAMERA
# How often the state is looked at (and sent when it changed).
_PERIOD_S = 1.0


@dataclass(frozen=True)
class SiteTopics:
    """The site's topics under ``prefix``."""

    prefix: str
    discovery_prefix: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{SITE}"

    @property
    def available(self) -> str:
        return f"{self.base}/available"

    @property
    def people(self) -> str:
        return f"{self.base}/people"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def node(self) -> str:
        """The Home Assistant device (as a camera's ``Topics.node``)."""
        return slug(f"{self.prefix}_{SITE}")

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"


def site_discovery_configs(topics: SiteTopics) -> List[Tuple[str, dict]]:
    """Home Assistant discovery of the site's device: People, Occupancy and Cameras up."""
    entities = [
        ("sensor", "people", {"name": "People", "state_topic": topics.people, "state_class": "measurement",
                              "unit_of_measurement": "people", "icon": "mdi:account-group",
                              "json_attributes_topic": topics.state}),
        occupancy_entity(topics.people),
        ("sensor", "cameras_up", {"name": "Cameras up", "state_topic": topics.state,
                                  "value_template": "{{ value_json.cameras_up }}", "state_class": "measurement",
                                  "unit_of_measurement": "cameras", "icon": "mdi:cctv"}),
    ]
    return entity_configs(topics.discovery_prefix, topics.node, f"{topics.prefix} {SITE}", [topics.available],
                          entities)


def site_state(cameras: Mapping[str, CameraState], feeds: Mapping[str, Feed]) -> Dict[str, Any]:
    """The site now: people in view over the cameras whose worker runs and has told a count
    (``relay.people_now``), how many cameras are up, and each camera's people and status."""
    running = [name for name, state in cameras.items() if state.process is not None]
    people, counted = people_now(dict(feeds), running)
    per_camera: Dict[str, Dict[str, Any]] = {}
    for name, state in cameras.items():
        per_camera[name] = {"people": feeds[name].people() if name in counted else None,
                            "status": camera_status(state, feeds[name])}
    return {"people": people, "cameras_up": sum(1 for c in per_camera.values() if c["status"] == "up"),
            "cameras": per_camera}


def state_messages(topics: SiteTopics, state: Mapping[str, Any]) -> Dict[str, str]:
    """The retained messages of ``state``: topic -> payload."""
    return {topics.people: str(state["people"]), topics.state: json.dumps(state, separators=(",", ":"))}


class SitePublisher:
    """Publishes the supervisor's site on its own MQTT connection; see the module docstring.

    ``start()`` returns at once (with ``mqtt.required``: once connected, or raises MqttError within
    about ``connect_timeout_s``); ``stop()`` sends the last state and ``offline`` (within
    ``flush_timeout_s``), disconnects and ends its thread; idempotent."""

    def __init__(self, config: MqttConfig, supervisor: Supervisor, client_id: str,
                 period_s: float = _PERIOD_S) -> None:
        self.config = config
        self.topics = SiteTopics(config.topic_prefix, config.discovery_prefix)
        self.client_id = client_id
        self._supervisor = supervisor
        self._period_s = period_s
        self._lock = threading.Lock()  # _sent and _resend: the publisher thread and paho's
        self._sent: Dict[str, str] = {}  # topic -> the payload last handed to paho
        self._resend = False  # (re)connected or Home Assistant online: everything again
        self._wake = threading.Event()
        self.connection = MqttConnection(
            config, read_password(config), log, self._wake, on_up=self._on_up, on_down=self._on_down,
            goes_on="the cameras run on and the site's topics are published",
            not_published="the site's topics are not published in this run", on_message=self._on_message)
        self._thread: Optional[threading.Thread] = None
        self.published = 0

    @property
    def connected(self) -> bool:
        return self.connection.connected.is_set()

    # --- the supervisor's side ---

    def start(self) -> None:
        cfg = self.config
        self.connection.open(self.client_id, self.topics.available)
        self._thread = threading.Thread(target=self._thread_main, name="mqtt-site", daemon=True)
        self._thread.start()
        if cfg.required:
            cause = self.connection.first_failure()
            if cause is not None:
                self.stop()
                raise MqttError(f"MQTT broker {cfg.host}:{cfg.port}: {cause} (mqtt.required is true; set it to "
                                "false to run the cameras on without the broker)")

    def stop(self) -> None:
        """The last state and ``offline`` (bounded), then disconnect; after the workers stopped."""
        cfg = self.config
        self.connection.closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(cfg.flush_timeout_s + cfg.connect_timeout_s + 2.0)
            self._thread = None
        self.connection.close()

    # --- paho's network thread ---

    def _on_up(self, client, down_s: Optional[float]) -> None:
        cfg = self.config
        if down_s is not None:
            log.info("MQTT (site): reconnected to %s:%d after %.1f s", cfg.host, cfg.port, down_s)
        else:
            log.info("MQTT (site): connected to %s:%d, publishing %s/", cfg.host, cfg.port, self.topics.base)
        if cfg.discovery:
            client.subscribe(self.topics.ha_status, qos=1)
        with self._lock:
            self._resend = True

    def _on_down(self, reason: str) -> None:
        cfg = self.config
        log.warning("MQTT (site): lost the broker at %s:%d; reconnecting (every %g-%g s)", cfg.host, cfg.port,
                    cfg.reconnect_min_s, cfg.reconnect_max_s)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == self.topics.ha_status and message.payload.strip().lower() == b"online":
            with self._lock:
                self._resend = True
            self._wake.set()

    # --- the publisher thread ---

    def _thread_main(self) -> None:
        try:
            if self.connection.connect_first():
                self._publish_loop()
        except Exception:  # the site's topics are not worth a camera: said, and the cameras go on
            log.warning("MQTT (site): the publisher failed; the site's topics stop here", exc_info=True)
        finally:
            self.connection.outcome.set()

    def _publish_loop(self) -> None:
        while True:
            self._wake.wait(self._period_s)
            self._wake.clear()
            if not self.connection.poll():
                return
            if self.connection.closing.is_set():
                self._finish()
                return
            self.publish_changes()

    def messages(self) -> Dict[str, str]:
        """Every retained message of the site now: availability, discovery, people and state."""
        out = {self.topics.available: "online"}
        if self.config.discovery:
            out.update((topic, json.dumps(payload, separators=(",", ":")))
                       for topic, payload in site_discovery_configs(self.topics))
        out.update(state_messages(self.topics, site_state(self._supervisor.cameras, self._supervisor.relay.feeds)))
        return out

    def publish_changes(self) -> List[Any]:
        """Hand paho what changed since last sent (everything after a (re)connect); nothing while
        disconnected (the next connect sends it all). paho's message infos."""
        if not self.connection.connected.is_set():
            return []
        current = self.messages()
        with self._lock:
            resend, self._resend = self._resend, False
            due = [(topic, payload) for topic, payload in current.items()
                   if resend or self._sent.get(topic) != payload]
            self._sent.update(due)
        infos = []
        for topic, payload in due:
            infos.append(self.connection.client.publish(topic, payload, qos=1, retain=True))
            self.published += 1
        return infos

    def _finish(self) -> None:
        """The last state (the workers have stopped: nobody in view) and ``offline``, within
        ``flush_timeout_s`` of a connected broker."""
        if not self.connection.connected.is_set():
            return
        infos = self.publish_changes()
        infos.append(self.connection.client.publish(self.topics.available, "offline", qos=1, retain=True))
        deadline = time.monotonic() + self.config.flush_timeout_s
        for info in infos:
            try:
                info.wait_for_publish(max(0.001, deadline - time.monotonic()))
            except (RuntimeError, ValueError):  # not sent: the connection went meanwhile
                break
        if not all(info.is_published() for info in infos):
            log.warning("MQTT (site): 'offline' not acknowledged within %g s (mqtt.flush_timeout_s); the broker "
                        "says it with the Last Will", self.config.flush_timeout_s)


def site_publisher(site: Any, camera: Any, supervisor: Supervisor) -> Optional[SitePublisher]:
    """The site's publisher when MQTT is on, else None. ``site``: the site's config; ``camera``: a
    camera's merged config, whose mqtt section is the site's with the command line's --mqtt
    applied (mqtt is no camera's to override). Client id ``<mqtt.client_id or topic_prefix>-site``
    (a camera's is suffixed with its name)."""
    mqtt = camera.mqtt
    if not mqtt.enabled:
        return None
    return SitePublisher(mqtt, supervisor, f"{site.mqtt.client_id or mqtt.topic_prefix}-{SITE}")
