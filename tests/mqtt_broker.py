"""A real Mosquitto broker on 127.0.0.1 for the tests, and a paho subscriber that records what arrives.

The broker is Debian's ``mosquitto`` (installed by .ci/run), started on a free port with a config
written to a temporary folder: anonymous, or with a password file made by ``mosquitto_passwd``.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

INSTALL_HINT = "apt-get install -y --no-install-recommends mosquitto openssl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mosquitto_missing() -> Optional[str]:
    """Why the broker cannot run here, or None."""
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        return f"mosquitto is not installed ({INSTALL_HINT})"
    if shutil.which("openssl") is None:
        return "the openssl command is not installed (apt-get install -y openssl)"
    return None


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate it signed for 127.0.0.1 (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> "TlsFiles":
        """With the openssl command line: a CA, and a key and certificate for IP 127.0.0.1 signed by it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        ca, ca_key = folder / "ca.pem", folder / "ca.key"
        key, csr, cert, ext = folder / "server.key", folder / "server.csr", folder / "server.pem", folder / "ext.cnf"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        for args in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", "/CN=streamer test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
             "-extfile", ext],
        ):
            subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)
        return cls(ca, cert, key)


class Broker:
    """``mosquitto -c <tmp conf>`` listening on ``port``; ``stop()`` (SIGTERM) or ``kill()`` (SIGKILL),
    then ``start()`` again on the same port: a broker restart. With ``users``, logins are required
    and checked. With ``persistent``, the broker keeps its clients' sessions (subscriptions and the
    QoS 1 messages queued for them) in its folder, saved every second and at a clean stop, so a
    subscriber with a persistent session misses nothing across a restart."""

    def __init__(self, folder: Path, port: Optional[int] = None, users: Optional[dict] = None,
                 persistent: bool = False, tls: Optional["TlsFiles"] = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: Optional[subprocess.Popen] = None
        # Started as root (CI), mosquitto would switch to its own user, who cannot read the test's
        # private temporary folder: stay the user we are.
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}"]
        if users:
            passwd = self.folder / "passwd"
            passwd.touch()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True,
                               capture_output=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if persistent:
            lines += ["persistence true", f"persistence_location {self.folder}/", "autosave_interval 1"]
        self.db = self.folder / "mosquitto.db"
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = self.folder / "mosquitto.log"

    def start(self) -> "Broker":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()[-500:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def __enter__(self) -> "Broker":
        return self if self.process is not None and self.process.poll() is None else self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    t: float  # time.monotonic() at arrival

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self):
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed to ``topics`` (QoS 1) that records every message; it reconnects by
    itself (paho's loop) after a broker restart. ``persistent``: its session (subscriptions, QoS 1
    messages queued while it is away) outlives its connection, on a ``Broker(persistent=True)``."""

    def __init__(self, port: int, topics=("#",), persistent: bool = False) -> None:
        import paho.mqtt.client as mqtt

        self.messages: List[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._topics = list(topics)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber: no SUBACK within 10 s")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._subscribed.clear()
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain),
                                          time.monotonic()))
            self._cond.notify_all()

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        return self._subscribed.wait(timeout)

    def wait_for(self, predicate: Callable[[List[Received]], bool], timeout: float = 15.0) -> bool:
        """Wait until ``predicate(messages)`` holds (False after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def on(self, topic: str) -> List[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
