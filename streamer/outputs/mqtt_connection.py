"""The connection to the MQTT broker, written once for every client of ours.

``paho_client`` makes a paho client with the configured login and TLS; the short sessions
(``mqtt_session.py``: doctor's probe, retire, the fleet report's listener) use it as it is.

``MqttConnection`` is the connection of a publisher that stays connected while it runs: a run's
``MqttSink`` (``mqtt.py``) and the site's ``SitePublisher`` (``site/mqtt.py``). It owns one paho
client and does, for its owner:

- the Last Will: ``offline`` (retained, QoS 1) on the owner's availability topic;
- the first connection, made on the owner's thread with our own retries (``connect_first``), so
  that each failure's cause is said once; with ``mqtt.required`` it gives up after
  ``connect_timeout_s`` and says nothing, as the owner's ``start`` raises the cause
  (``first_failure``);
- then paho's network thread (``loop_start``): the protocol, the keepalive and the reconnects,
  with backoff from ``reconnect_min_s`` to ``reconnect_max_s``;
- on every (re)connection the owner's ``on_up`` hook (on paho's thread: subscribe, mark the
  retained state for sending again), on a lost connection its ``on_down``; a refused login, or a
  broker that never answers, is said once by ``poll``, which the owner's thread calls each tick;
- ``close``: disconnect and stop paho's thread, once the owner has flushed what it had.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Any, Callable, Optional, Tuple

from ..config import MQTT_PASSWORD_ENV, MqttConfig
from ..errors import MqttError

INSTALL_HINT = "pip install 'streamer[mqtt]'"


def paho_module():
    try:
        import paho.mqtt.client as client  # noqa: F401 - the optional extra
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: F401 - 2.x only
    except ImportError:
        raise MqttError(f"MQTT output needs paho-mqtt 2.x, which is not installed; {INSTALL_HINT}") from None
    return client


def paho_client(config: MqttConfig, client_id: str, password: Optional[str]):
    """A paho client (clean session) with the login and TLS of ``config``; MqttError when the TLS
    files cannot be loaded."""
    mqtt = paho_module()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect_timeout = config.connect_timeout_s
    if config.username is not None:
        client.username_pw_set(config.username, password)
    if config.tls:
        try:
            client.tls_set(ca_certs=config.tls_ca_file, certfile=config.tls_cert_file, keyfile=config.tls_key_file)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise MqttError(f"mqtt TLS files ({config.tls_ca_file}, {config.tls_cert_file}): cannot load them "
                            f"({getattr(error, 'strerror', None) or error}); fix mqtt.tls_ca_file / "
                            "tls_cert_file / tls_key_file") from None
    return client


def connect_failure(error: BaseException, host: str, port: int, tls: bool, timeout_s: float) -> Tuple[str, bool]:
    """``(cause and fix, permanent)`` for an exception of a connection attempt to ``host:port``."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"its TLS certificate is not trusted ({error.verify_message}); set mqtt.tls_ca_file to the CA "
                "that signed it", True)
    if isinstance(error, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError)) and tls:
        reason = getattr(error, "reason", None) or "the other end closed the connection"
        return (f"the TLS handshake failed ({reason}); is {port} the broker's TLS port (usually 8883)? "
                "set mqtt.tls: false for a plain port", True)
    if isinstance(error, ConnectionRefusedError):
        return ("connection refused: no broker listens there; start it (e.g. systemctl start mosquitto) or fix "
                "mqtt.host / mqtt.port / --mqtt HOST:PORT", False)
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name {host!r}; fix mqtt.host / --mqtt", False
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout_s:g} s (a firewall, or the wrong address?)", False
    if isinstance(error, ValueError):  # paho's TLS set-up
        return f"TLS: {error}; fix mqtt.tls_ca_file / tls_cert_file / tls_key_file", True
    if isinstance(error, OSError):
        return f"cannot connect ({error.strerror or error})", False
    return f"cannot connect ({error})", False


def connect_refusal(reason_code: Any, config: MqttConfig) -> str:
    """Cause and fix for a CONNACK that refused the connection (paho's ``reason_code``)."""
    name = str(reason_code)
    if name not in ("Bad user name or password", "Not authorized"):
        return f"the broker refused the connection ({name})"
    if config.username is not None:
        fix = (f"a wrong user name or password? check mqtt.username ({config.username!r}) and the password "
               f"({MQTT_PASSWORD_ENV} or mqtt.password_file)")
    else:
        fix = (f"the broker does not allow anonymous clients: set mqtt.username and a password "
               f"({MQTT_PASSWORD_ENV} or mqtt.password_file)")
    return f"the broker refused the login ({name.lower()}); {fix}"


def no_answer(config: MqttConfig) -> str:
    """The cause of a first connection the broker did not answer in time."""
    return (f"no MQTT answer within {config.connect_timeout_s:g} s; is {config.port} the broker's port (1883 "
            "plain, 8883 TLS)?")


class MqttConnection:
    """One paho client of a long-lived publisher; see the module docstring.

    ``on_up(client, down_s)`` runs on paho's thread on every connection, ``down_s`` None the first
    time, else how long it was lost; ``on_down(reason)`` when a connection is lost while not
    ``closing``. ``on_message`` and ``on_publish`` are paho's callbacks, as given. Every event sets
    ``wake``, the owner's thread's. ``goes_on`` and ``not_published`` end the lines said when the
    broker cannot be reached for now and for good: what the owner does then.
    """

    def __init__(self, config: MqttConfig, password: Optional[str], log: logging.Logger, wake: threading.Event, *,
                 on_up: Callable[[Any, Optional[float]], None], on_down: Callable[[str], None],
                 goes_on: str, not_published: str,
                 on_message: Optional[Callable[..., None]] = None,
                 on_publish: Optional[Callable[..., None]] = None) -> None:
        self.config = config
        self.client: Any = None  # paho's Client, from open()
        self.connected = threading.Event()
        self.outcome = threading.Event()  # the first connection: made, or failed for good
        self.closing = threading.Event()  # the owner is closing: stop trying, a lost connection is not news
        self.fatal: Optional[str] = None  # failed for good (TLS, a refused login)
        self.failure: Optional[str] = None  # the last connection failure, said once
        self.down_since: Optional[float] = None
        self.ever_connected = False
        self._password = password
        self._log = log
        self._wake = wake
        self._on_up, self._on_down = on_up, on_down
        self._on_message, self._on_publish = on_message, on_publish
        self._goes_on, self._not_published = goes_on, not_published
        self._loop_started = False
        self._answer_deadline: Optional[float] = None

    def open(self, client_id: str, will_topic: str) -> None:
        """The client, its Last Will on ``will_topic`` and its callbacks; MqttError for TLS files."""
        cfg = self.config
        client = paho_client(cfg, client_id, self._password)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        client.will_set(will_topic, "offline", qos=1, retain=True)
        client.on_connect = self._connect_answered
        client.on_disconnect = self._disconnected
        if self._on_publish is not None:
            client.on_publish = self._on_publish
        if self._on_message is not None:
            client.on_message = self._on_message
        self.client = client

    def first_failure(self) -> Optional[str]:
        """For ``mqtt.required``: wait for the first connection (a few attempts fit in the window:
        a broker starting at the same moment is not a failure); its cause when it failed, else None."""
        self.outcome.wait(self.config.connect_timeout_s + 1.0)
        if self.connected.is_set():
            return None
        return self.fatal or self.failure or no_answer(self.config)

    # --- the owner's thread ---

    def connect_first(self) -> bool:
        """Connect (TCP, TLS, CONNECT sent) with our own retries, so each failure's cause can be
        said once; then paho's network thread takes over, reconnects included. False when
        closing or failed for good."""
        cfg, client = self.config, self.client
        delay = cfg.reconnect_min_s
        started = time.monotonic()
        while not self.closing.is_set():
            try:
                client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
            except Exception as error:  # OSError, ssl.SSLError, a ValueError from paho's TLS set-up
                cause, permanent = connect_failure(error, cfg.host, cfg.port, cfg.tls, cfg.connect_timeout_s)
                if permanent:
                    self.fatal = cause
                    if not cfg.required:
                        self._log.error("MQTT broker %s:%d: %s; %s", cfg.host, cfg.port, cause, self._not_published)
                    self.outcome.set()
                    return False
                if cause != self.failure:
                    self.failure = cause
                    if not cfg.required:
                        self._log.warning("MQTT broker %s:%d: %s; %s once the broker is reachable (retrying every "
                                          "%g-%g s)", cfg.host, cfg.port, cause, self._goes_on, cfg.reconnect_min_s,
                                          cfg.reconnect_max_s)
                if cfg.required and time.monotonic() - started + delay > cfg.connect_timeout_s:
                    self.outcome.set()
                    return False
                self.closing.wait(delay)
                delay = min(delay * 2, cfg.reconnect_max_s)
                continue
            self._answer_deadline = time.monotonic() + cfg.connect_timeout_s
            client.loop_start()
            self._loop_started = True
            return True
        return False

    def poll(self) -> bool:
        """Each tick of the owner's thread after ``connect_first``: says a broker that has not
        answered within ``connect_timeout_s`` (once). False when the broker refused the login:
        said, disconnected, nothing more to publish."""
        cfg = self.config
        if self.fatal is not None:
            if not cfg.required:
                self._log.error("MQTT broker %s:%d: %s; %s", cfg.host, cfg.port, self.fatal, self._not_published)
            self.client.disconnect()
            return False
        if not self.connected.is_set() and self.down_since is None and self.failure is None \
                and self._answer_deadline is not None and time.monotonic() > self._answer_deadline:
            self.failure = no_answer(cfg)
            if not cfg.required:
                self._log.warning("MQTT broker %s:%d: %s still trying", cfg.host, cfg.port, self.failure)
        return True

    def close(self) -> None:
        """Disconnect and stop paho's network thread (after the owner's thread has ended)."""
        if self.client is None:
            return
        try:
            self.client.disconnect()
        except Exception:  # paho's own state; the connection goes either way
            pass
        if self._loop_started:
            self.client.loop_stop()
            self._loop_started = False

    # --- paho's network thread (no waiting here) ---

    def _connect_answered(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.fatal = connect_refusal(reason_code, self.config)
            self.outcome.set()
            self._wake.set()
            return
        down_s = None if self.down_since is None else time.monotonic() - self.down_since
        self._on_up(client, down_s)
        self.down_since = None
        self.failure = None
        self.ever_connected = True
        self.connected.set()
        self.outcome.set()
        self._wake.set()

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._wake.set()
        if was_connected and not self.closing.is_set():
            self.down_since = time.monotonic()
            reason = str(reason_code)
            if reason in ("Unspecified error", "Success", "Normal disconnection"):
                reason = "the connection closed"
            self._on_down(reason)
