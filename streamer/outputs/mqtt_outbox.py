"""What the MQTT sink has to send and has not handed to paho yet (``mqtt.py``).

Two kinds of message wait here. Events and stats go into a bounded queue, in order: beyond
``mqtt.queue_size`` the oldest is dropped (real time) and counted. Retained state (availability,
discovery, counts) is kept as the latest value per topic and marked to send: a new value replaces
one not sent yet, every connection marks all of it again (``resend_all``), and no queue bound ever
drops it. The frame loop puts, the publisher thread takes (``next``); neither waits on the network.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


class Outbox:
    """The queue and the retained state of one sink; any thread. ``wake`` is set whenever there is
    something new to send."""

    def __init__(self, queue_size: int, wake: threading.Event) -> None:
        self._queue: Deque[Message] = collections.deque(maxlen=queue_size)
        self._state: Dict[str, Message] = {}  # retained topics: their latest value
        self._dirty: "collections.OrderedDict[str, None]" = collections.OrderedDict()
        self._priority: List[str] = []  # retained topics sent before anything else
        self._lock = threading.Lock()  # the frame loop, the publisher thread and paho's
        self._wake = wake
        self.dropped = 0

    def put(self, message: Message) -> None:
        """Queue ``message``; the oldest is dropped (and counted) beyond the bound."""
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(message)
        self._wake.set()

    def set_state(self, topic: str, payload: str, first: bool = False) -> None:
        """Retained ``topic`` is now ``payload`` (QoS 1); ``first``: sent before the queue, as
        availability and discovery are."""
        with self._lock:
            self._state[topic] = Message(topic, payload.encode("utf-8"), 1, retain=True)
            self._dirty[topic] = None
            self._dirty.move_to_end(topic)
            if first and topic not in self._priority:
                self._priority.append(topic)
        self._wake.set()

    def resend_all(self) -> None:
        """Every retained topic again (a new connection, Home Assistant back online)."""
        with self._lock:
            for topic in self._state:
                self._dirty[topic] = None

    def next(self) -> Optional[Message]:
        """The next message to send: availability and discovery first, then the queue in order,
        then the other retained state (so a 'new' event comes before the count it raised)."""
        with self._lock:
            first = next((topic for topic in self._priority if topic in self._dirty), None)
            if first is not None:
                del self._dirty[first]
                return self._state[first]
            if self._queue:
                return self._queue.popleft()
            if self._dirty:
                topic, _ = self._dirty.popitem(last=False)
                return self._state[topic]
            return None

    def queued(self) -> int:
        """Messages in the queue (retained state aside)."""
        with self._lock:
            return len(self._queue)

    def empty(self) -> bool:
        with self._lock:
            return not self._queue and not self._dirty
