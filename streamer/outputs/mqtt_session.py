"""Short sessions on the MQTT broker, outside a run: ``streamer doctor``'s login check, retiring a
camera that is gone for good, and listening to every camera's events for the fleet report."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config import MqttConfig
from ..errors import MqttError
from .mqtt_connection import connect_failure, connect_refusal, no_answer, paho_client
from .mqtt_messages import Topics, discovery_configs, read_password, slug

log = logging.getLogger(__name__)

# retire(): the retained messages a subscription brings have all come once none came for this long.
_RETAINED_QUIET_S = 0.5


def _plain_client(config: MqttConfig, client_id: str):
    """A paho client for a short session (doctor's probe, retire): login and TLS as configured."""
    return paho_client(config, client_id, read_password(config))


def _open_session(client, config: MqttConfig, subscribed: threading.Event, answer: Dict[str, Any]) -> str:
    """Connect ``client``, start its network thread and wait for its subscription (``subscribed``,
    set by the caller's on_subscribe; ``answer["reason"]``, its on_connect's CONNACK): the broker's
    name for messages. MqttError naming the cause and fix (the client stopped) when the broker
    cannot be reached, refuses the login or does not answer within ``connect_timeout_s``."""
    where = f"MQTT broker {config.host}:{config.port}"
    try:
        client.connect(config.host, config.port, keepalive=config.keepalive_s)
    except Exception as error:
        raise MqttError(f"{where}: {connect_failure(error, config.host, config.port, config.tls, config.connect_timeout_s)[0]}") from None
    client.loop_start()
    if not subscribed.wait(config.connect_timeout_s):
        client.disconnect()
        client.loop_stop()
        reason = answer.get("reason")
        refused = reason is not None and reason.is_failure
        raise MqttError(f"{where}: {connect_refusal(reason, config) if refused else no_answer(config)}")
    return where


def retire(config: MqttConfig, camera: str, force: bool = False) -> List[str]:
    """Remove a camera for good: every retained message under ``<prefix>/<camera>/`` and every
    Home Assistant discovery config of its device is cleared (an empty retained message, which
    also removes the entities from Home Assistant). MqttError when the broker cannot be reached,
    or when the camera is online (a run publishes it) and not ``force``. Returns the topics cleared."""
    topics = Topics(config.topic_prefix, slug(camera), config.discovery_prefix)
    client = _plain_client(config, f"{config.topic_prefix}-retire-{topics.camera}")
    retained: Dict[str, bytes] = {}
    subscribed = threading.Event()
    answer: Dict[str, Any] = {}
    last_message = [time.monotonic()]

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        answer["reason"] = reason_code
        if not reason_code.is_failure:
            client.subscribe([(f"{topics.base}/#", 1), (topics.discovery_configs, 1)])

    def on_subscribe(*_args) -> None:
        last_message[0] = time.monotonic()
        subscribed.set()

    def on_message(client, userdata, message) -> None:
        if message.retain and message.payload:
            retained[message.topic] = bytes(message.payload)
        last_message[0] = time.monotonic()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    _open_session(client, config, subscribed, answer)
    try:
        # The broker sends the retained messages right after the SUBACK; a quiet moment ends them.
        while time.monotonic() - last_message[0] < _RETAINED_QUIET_S:
            time.sleep(0.05)
        if retained.get(topics.available, b"").strip() == b"online" and not force:
            raise MqttError(f"camera {topics.camera} is online ({topics.available}): a run is publishing it; stop that "
                            "run first (retiring it now would be undone by it), or retire it anyway with --force")
        names = sorted(set(retained) | {topic for topic, _ in discovery_configs(topics)})
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in names]
        for info in infos:
            info.wait_for_publish(config.flush_timeout_s or None)
        return names
    finally:
        client.disconnect()
        client.loop_stop()


def probe(config: MqttConfig) -> Tuple[bool, str]:
    """One login to the configured broker (TCP, TLS, CONNECT and the broker's answer within
    ``connect_timeout_s``), publishing nothing: ``(True, "")`` or ``(False, cause and fix)``. For
    ``streamer doctor``; MqttError when paho-mqtt is missing or the password file unreadable."""
    answer: Dict[str, Any] = {}
    answered = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        answer["reason"] = reason_code
        answered.set()

    client = _plain_client(config, f"{config.client_id or config.topic_prefix}-doctor")
    client.on_connect = on_connect
    try:
        client.connect(config.host, config.port, keepalive=config.keepalive_s)
    except Exception as error:
        return False, connect_failure(error, config.host, config.port, config.tls, config.connect_timeout_s)[0]
    client.loop_start()
    try:
        if not answered.wait(config.connect_timeout_s):
            return False, no_answer(config)
        reason = answer["reason"]
        if reason.is_failure:
            return False, connect_refusal(reason, config)
        return True, ""
    finally:
        client.disconnect()
        client.loop_stop()


def listen_events(config: MqttConfig, handle: Callable[[dict], None], stop: threading.Event,
                  duration_s: Optional[float] = None) -> int:
    """Every camera's events under ``config.topic_prefix`` (``<prefix>/+/events``, QoS 1), each
    JSON object given to ``handle`` on this thread, until ``stop`` is set or ``duration_s`` has
    passed (None: only ``stop``). A message that is not a JSON object is logged and skipped; a lost
    connection is retried by paho (events sent meanwhile are lost: QoS 1 without a persistent
    session). MqttError when the broker cannot be reached or refuses the login at the start.
    Returns how many events were handled."""
    import queue

    client = _plain_client(config, config.client_id or f"{config.topic_prefix}-report-{os.getpid()}")
    inbox: "queue.Queue[bytes]" = queue.Queue(maxsize=100_000)
    answer: Dict[str, Any] = {}
    subscribed = threading.Event()
    topic = f"{config.topic_prefix}/+/events"

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        answer["reason"] = reason_code
        if not reason_code.is_failure:
            client.subscribe(topic, qos=1)

    def on_message(client, userdata, message) -> None:
        try:
            inbox.put_nowait(bytes(message.payload))
        except queue.Full:
            answer["dropped"] = answer.get("dropped", 0) + 1

    client.on_connect, client.on_message = on_connect, on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    where = _open_session(client, config, subscribed, answer)
    handled = 0
    try:
        log.info("listening to %s on %s", topic, where)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                payload = inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                log.warning("%s: a message on %s is not JSON; skipped", where, topic)
                continue
            if isinstance(event, dict):
                handle(event)
                handled += 1
    finally:
        client.disconnect()
        client.loop_stop()
    while True:  # what arrived before the disconnect
        try:
            event = json.loads(inbox.get_nowait())
        except queue.Empty:
            break
        except ValueError:
            continue
        if isinstance(event, dict):
            handle(event)
            handled += 1
    if answer.get("dropped"):
        log.warning("%s: %d events dropped (more than 100000 waiting)", where, answer["dropped"])
    return handled
