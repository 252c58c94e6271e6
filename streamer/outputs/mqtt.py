"""MQTT output: events, people counts, run stats and Home Assistant discovery.

``MqttSink`` is a run sink (``streamer.outputs.sinks.Sink``). Topics, under ``mqtt.topic_prefix``
(``streamer``) and the camera name:

- ``<prefix>/<camera>/available``: ``online`` (retained) while the run is connected, ``offline`` on
  a clean stop and as the broker's Last Will (a crash, a pulled plug). One per camera: runs of
  other cameras on the same broker keep theirs.
- ``<prefix>/available`` (``mqtt.bridge_availability``): ``online`` while any camera under the
  prefix is; a run that ends clean says ``offline`` there only when no other camera is online (it
  reads their retained availability). A crash leaves it as it was (the will is the camera's).
- ``<prefix>/<camera>/events``: each tracked-mode record (``new``, ``update``, ``end``) as JSON;
  ``.../last_event`` (retained) the latest of them, the people sensor's attributes in Home Assistant.
- ``<prefix>/<camera>/people``: people in view now (retained, on change); ``.../people/<gender>``
  and ``.../people/age/<group>`` split it by the labels shown.
- ``<prefix>/<camera>/zones/<zone>/people``: people in an ``audience`` zone now (retained, on change),
  split like ``people``; ``<prefix>/<camera>/lines/<line>/in`` and ``.../out``: crossings of a line
  since the run started (retained). Their ``zone_enter`` / ``zone_exit`` / ``line_cross`` records go
  to ``events`` with the rest.
- ``<prefix>/<camera>/source``: ``up`` / ``down`` (retained): is the camera delivering frames.
- ``<prefix>/<camera>/stats``: the run's summary so far plus resident memory (retained), a few
  seconds after connecting, then every ``mqtt.stats_interval_s``, and once at the end.
- ``<discovery_prefix>/<component>/<node>/<object>/config``: Home Assistant discovery (retained),
  again whenever ``<discovery_prefix>/status`` says ``online``; ``streamer mqtt retire CAMERA``
  (``mqtt_command.py``) removes a camera's for good.

Threads: the frame loop only appends to a bounded deque (real time drops the
oldest and counts them) and marks retained state dirty, so it never waits on the network.
One publisher thread of ours makes the first connection (so a failure is reported with its cause),
then feeds paho as the connection allows (at most ``_WINDOW`` QoS>0 messages unacknowledged, so
paho's own queue stays small); paho's network thread (``loop_start``) does the protocol, the
keepalive and the reconnects with backoff (the connection: ``mqtt_connection.py``, shared with
the site's publisher). Retained state (availability, counts, discovery) is kept as "latest value
per topic" and re-sent on every connection: a broker restarted without persistence gets it back,
and a queue bound never drops it (both wait in ``mqtt_outbox.py``).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..audience.live import AudienceCounts
from ..config import AudienceConfig, MqttConfig
from ..errors import MqttError
from ..stats import resident_bytes
from ..types import FrameResult
from .mqtt_connection import MqttConnection, paho_module
from .mqtt_messages import (
    PeopleCounts,
    Topics,
    audience_messages,
    camera_name,
    discovery_configs,
    dumps,
    read_password,
    slug,
)
from .mqtt_outbox import Message, Outbox
from .sinks import Sink

log = logging.getLogger(__name__)

# QoS>0 messages handed to paho and not yet acknowledged, at most: paho's own in-flight default,
# so everything beyond waits in our bounded deque (which drops the oldest), not in paho's
# (which would refuse the newest or grow without bound).
_WINDOW = 20
# The publisher thread wakes at least this often to poll the source's state and the stats timer.
_TICK_S = 0.25
# Seconds between looks at the run's source_up (a camera that stops delivering frames).
_SOURCE_POLL_S = 1.0
# The first stats message this long after connecting (or at stats_interval_s, if sooner).
_FIRST_STATS_S = 5.0


class MqttSink(Sink):
    """Publishes a run to an MQTT broker; see the module docstring for topics and threads.

    ``start`` returns at once (with ``mqtt.required``: once connected, or raises MqttError within
    about ``connect_timeout_s``); ``write`` and ``write_records`` only queue; ``close`` sends what
    is queued to a connected broker within ``flush_timeout_s``, then ``offline``, and stops both
    threads. ``stats()`` gives the counts the run summary shows under ``mqtt``.
    """

    def __init__(self, config: MqttConfig, age_groups: Iterable[Tuple[int, int]],
                 audience: Optional[AudienceConfig] = None) -> None:
        """``audience``: the run's zones and lines, published when there are any."""
        self.config = config
        self.counts = PeopleCounts(age_groups)
        self.audience: Optional[AudienceCounts] = None
        if audience is not None and (audience.zones or audience.lines):
            self.audience = AudienceCounts(list(audience.zones), list(audience.lines), self.counts.groups)
        self._audience_version = -1
        self._audience_sent: Dict[str, str] = {}
        self.topics: Optional[Topics] = None
        self._run: Any = None  # the RunView, from start()
        self._wake = threading.Event()
        self.outbox = Outbox(config.queue_size, self._wake)  # the queue and the retained state
        self._acks: Deque[int] = collections.deque()  # mids paho acknowledged (appended on its thread)
        self._inflight: Dict[int, Message] = {}
        self._stop = threading.Event()
        # The login password is read here: an unreadable file is an error before the run starts.
        self.connection = MqttConnection(
            config, read_password(config), log, self._wake, on_up=self._on_up, on_down=self._on_down,
            goes_on="the run goes on and publishes", not_published="not publishing in this run",
            on_message=self._on_message, on_publish=self._on_publish)
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._boxes: Dict[int, List[float]] = {}
        self._last_counts: Dict[str, int] = {}
        self._counted_version = -1
        self._source_up: Optional[bool] = None
        self._others_online: Dict[str, bool] = {}  # other cameras under the prefix (bridge availability)
        self._closed = False
        self._stats_seq = 0
        self._last_stats: Optional[Tuple[float, int, int]] = None
        self.published = 0
        self.unsent = 0

    @property
    def _topics(self) -> Topics:
        assert self.topics is not None, "start() names the topics before any thread runs"
        return self.topics

    # --- the Sink protocol (run thread) ---

    def start(self, run) -> None:
        cfg = self.config
        self._run = run
        camera = slug(cfg.camera) if cfg.camera else camera_name(run.info.name)
        self.topics = topics = Topics(cfg.topic_prefix, camera, cfg.discovery_prefix)
        self.connection.open(cfg.client_id or f"{cfg.topic_prefix}-{camera}", topics.available)

        self.outbox.set_state(topics.available, "online", first=True)
        if cfg.bridge_availability:
            self.outbox.set_state(topics.bridge_available, "online", first=True)
        if cfg.discovery:
            zones, lines = (self.audience.zones, self.audience.lines) if self.audience is not None else ((), ())
            for topic, payload in discovery_configs(topics, self.counts.genders, self.counts.groups,
                                                    cfg.bridge_availability, zones, lines):
                self.outbox.set_state(topic, json.dumps(payload, separators=(",", ":")), first=True)
        self._publish_counts()
        self._publish_audience()
        self._thread = threading.Thread(target=self._thread_main, name="mqtt-publisher", daemon=True)
        self._thread.start()
        if cfg.required:
            cause = self.connection.first_failure()
            if cause is not None:
                self._shutdown(flush=False)
                raise MqttError(f"MQTT broker {cfg.host}:{cfg.port}: {cause} (mqtt.required is true; set it to "
                                "false to run on without the broker)")

    def write(self, result: FrameResult, annotated: Optional[np.ndarray]) -> None:
        for face in result.faces:
            if face.track is not None:
                self._boxes[face.track] = [round(float(v), 1) for v in face.xyxy]
        self.counts.observe_faces(result.faces)
        self._publish_counts()

    def write_records(self, records: Sequence[dict]) -> None:
        if not records or self.topics is None:
            return
        self.counts.observe_records(records)
        now = round(time.time(), 3)
        for record in records:
            # A live frame's record has its capture time; a file's gets the time it is published.
            payload = {"timestamp": now, **record, "camera": self.topics.camera}
            track = record.get("track")
            if track is not None and "xyxy" not in payload and track in self._boxes:
                payload["xyxy"] = self._boxes[track]
            if record.get("event") == "end" and track is not None:
                self._boxes.pop(track, None)
            message = dumps(payload)
            self.outbox.put(Message(self.topics.events, message, self.config.qos))
        self.outbox.set_state(self.topics.last_event, message.decode("utf-8"))
        self._publish_counts()
        if self.audience is not None:
            self.audience.observe(records)
            self._publish_audience()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        self._publish_counts()
        self._shutdown(flush=True)  # the publisher sends the final stats, what is queued, then 'offline'

        if self._error is not None:
            log.warning("MQTT: the publisher thread failed: %s", self._error)
        if not self.connection.ever_connected and self.connection.fatal is None:
            log.warning("MQTT: never reached the broker at %s:%d; %d messages not sent", self.config.host,
                        self.config.port, self.unsent)
        elif self.dropped or self.unsent:
            log.warning("MQTT: %d messages dropped by the queue bound (mqtt.queue_size %d), %d not sent",
                        self.dropped, self.config.queue_size, self.unsent)

    def stats(self) -> dict:
        """Messages published, dropped by the queue bound, not sent at the end; connected now."""
        return {"published": self.published, "dropped": self.dropped, "unsent": self.unsent,
                "connected": self.connection.connected.is_set()}

    def summary_fields(self) -> dict:
        """What the run summary shows of this sink (after ``close``)."""
        stats = self.stats()
        return {"mqtt": {key: stats[key] for key in ("published", "dropped", "unsent")}}

    @property
    def dropped(self) -> int:
        """Messages the queue bound dropped (the oldest)."""
        return self.outbox.dropped

    # --- what is sent (run thread; never blocks on the network) ---

    def _publish_counts(self) -> None:
        if self.topics is None or self.counts.version == self._counted_version:
            return
        self._counted_version = self.counts.version
        counts = self.counts.counts()
        if counts == self._last_counts:
            return
        for suffix, value in counts.items():
            if self._last_counts.get(suffix) != value:
                self.outbox.set_state(f"{self.topics.people}/{suffix}" if suffix else self.topics.people, str(value))
        self._last_counts = counts

    def _publish_audience(self) -> None:
        """Each zone's people now (split like ``people``) and each line's crossings, as retained
        state, the topics whose value changed."""
        audience, topics = self.audience, self.topics
        if audience is None or topics is None or audience.version == self._audience_version:
            return
        self._audience_version = audience.version
        values = audience_messages(topics, audience)
        for topic, value in values.items():
            if self._audience_sent.get(topic) != value:
                self.outbox.set_state(topic, value)
        self._audience_sent = values

    def _enqueue_stats(self, final: bool = False) -> None:
        if self._run is None or self.topics is None:
            return
        try:
            snapshot = dict(self._run.snapshot())
        except Exception as error:  # a sink must not end the run over a statistic
            log.debug("MQTT: run snapshot failed: %s", error)
            return
        stages = snapshot.get("stages") or {}
        now = time.monotonic()
        # Rates over the last interval (the summary's fps is the whole run's average).
        last = self._last_stats
        frames_in, frames_out = snapshot.get("frames_read", 0), snapshot.get("frames_out", 0)
        if last is not None and now > last[0]:
            fps_in = round((frames_in - last[1]) / (now - last[0]), 2)
            fps_out = round((frames_out - last[2]) / (now - last[0]), 2)
        else:
            fps_in = fps_out = snapshot.get("fps")
        self._last_stats = (now, frames_in, frames_out)
        self._stats_seq += 1
        snapshot.update({
            "camera": self.topics.camera,
            "seq": self._stats_seq,
            "timestamp": round(time.time(), 3),
            "final": final,
            "fps_in": fps_in,
            "fps_out": fps_out,
            "detector_ms": (stages.get("detect") or {}).get("p50_ms"),
            "rss_mb": round(resident_bytes() / 1e6, 1),
            "mqtt": {"published": self.published, "dropped": self.dropped, "queued": self.outbox.queued()},
        })
        # Retained: Home Assistant's fps sensor has a value from the start, and after its restarts.
        self.outbox.put(Message(self.topics.stats, dumps(snapshot), self.config.qos, retain=True))

    # --- paho callbacks (paho's network thread: no waiting here) ---

    def _on_up(self, client, down_s: Optional[float]) -> None:
        cfg = self.config
        if down_s is not None:
            log.info("MQTT: reconnected to %s:%d after %.1f s; sending %d queued messages", cfg.host, cfg.port,
                     down_s, self.outbox.queued())
        else:
            log.info("MQTT: connected to %s:%d, publishing under %s/", cfg.host, cfg.port, self._topics.base)
        if cfg.discovery:
            client.subscribe(self._topics.ha_status, qos=1)
        if cfg.bridge_availability:
            client.subscribe(self._topics.cameras_available, qos=1)
        self.outbox.resend_all()

    def _on_down(self, reason: str) -> None:
        cfg = self.config
        log.warning("MQTT: lost the broker at %s:%d (%s); reconnecting (every %g-%g s), messages queued "
                    "meanwhile (up to %d)", cfg.host, cfg.port, reason, cfg.reconnect_min_s,
                    cfg.reconnect_max_s, cfg.queue_size)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append(mid)
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        topics = self._topics
        if message.topic.startswith(topics.prefix + "/") and message.topic.endswith("/available"):
            camera = message.topic[len(topics.prefix) + 1:-len("/available")]
            if camera and camera != topics.camera:
                self._others_online[camera] = message.payload.strip() == b"online"
            return
        if message.topic == topics.ha_status and message.payload.strip().lower() == b"online":
            log.info("MQTT: Home Assistant is online; publishing discovery and state again")
            self.outbox.resend_all()
            self._wake.set()

    # --- the publisher thread ---

    def _thread_main(self) -> None:
        try:
            if self.connection.connect_first():
                self._publish_loop()
        except Exception as error:  # carried to close(), which says so
            self._error = error
            log.debug("MQTT publisher thread failed", exc_info=True)
        finally:
            self.connection.outcome.set()

    def _publish_loop(self) -> None:
        cfg, connection = self.config, self.connection
        client = connection.client
        # The first stats come early (Home Assistant's fps sensor is not 'unknown' for a whole
        # interval), yet after a few seconds of frames: a rate over the first instant means little.
        next_stats = time.monotonic() + min(cfg.stats_interval_s, _FIRST_STATS_S)
        next_poll = 0.0
        flush_deadline: Optional[float] = None
        offline_sent = False
        while not self._stop.is_set():
            self._wake.wait(_TICK_S)
            self._wake.clear()
            while self._acks:
                mid = self._acks.popleft()
                if self._inflight.pop(mid, None) is not None:
                    self.published += 1
            if not connection.poll():
                return
            now = time.monotonic()
            if connection.connected.is_set():
                self._feed(client)
            if connection.closing.is_set():
                if flush_deadline is None:
                    flush_deadline = now + cfg.flush_timeout_s
                    self._enqueue_stats(final=True)
                    self._feed(client)
                drained = self.outbox.empty() and not self._inflight
                # A broker that is away may come back within the flush time (paho keeps reconnecting).
                if now >= flush_deadline:
                    break
                if drained and offline_sent:
                    break
                if drained:
                    self.outbox.set_state(self._topics.available, "offline")
                    if cfg.bridge_availability and not any(self._others_online.values()):
                        self.outbox.set_state(self._topics.bridge_available, "offline")
                    offline_sent = True
                continue
            if now >= next_stats:
                self._enqueue_stats()
                next_stats = now + cfg.stats_interval_s
            if now >= next_poll:
                next_poll = now + _SOURCE_POLL_S
                self._poll_source()
        client.disconnect()

    def _feed(self, client) -> None:
        """Hand paho what the window allows, in the outbox's order."""
        while len(self._inflight) < _WINDOW and self.connection.connected.is_set():
            message = self.outbox.next()
            if message is None:
                return
            info = client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if message.qos > 0:
                # paho keeps a QoS>0 message it could not send (rc NO_CONN) and sends it on reconnect;
                # its PUBACK lands in _acks, which this thread reads only after this line.
                self._inflight[info.mid] = message
            elif info.rc == 0:
                self.published += 1

    def _poll_source(self) -> None:
        try:
            up = self._run.snapshot().get("source_up")
        except Exception:
            return
        if up is None or up == self._source_up:
            return
        self._source_up = bool(up)
        self.outbox.set_state(self._topics.source, "up" if up else "down")

    def _shutdown(self, flush: bool) -> None:
        """Stop the publisher (after a bounded flush when ``flush``) and paho's network thread."""
        cfg = self.config
        self.connection.closing.set()
        if not flush:
            self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(cfg.flush_timeout_s + cfg.connect_timeout_s + 2.0)
            if self._thread.is_alive():
                self._stop.set()
                self._thread.join(cfg.connect_timeout_s + 1.0)
            self._thread = None
        self._stop.set()
        self.unsent = self.outbox.queued() + len(self._inflight)
        self.connection.close()


def build_sinks(config, given: Sequence[Sink] = ()) -> List[MqttSink]:
    """The MQTT sink a run's config asks for (``mqtt.enabled``), unless ``given`` (the caller's
    sinks) already holds one; MqttError when paho-mqtt is missing or the password file unreadable."""
    if not config.mqtt.enabled or any(isinstance(sink, MqttSink) for sink in given):
        return []
    paho_module()
    return [MqttSink(config.mqtt, config.classifier.age_groups, config.audience)]


