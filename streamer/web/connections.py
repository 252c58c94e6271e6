"""The service's front door: no request thread is given to a connection before its request head
(request line and headers) has arrived whole, and connections are capped per client address and
in total.

cheroot hands every new connection, and every kept-alive one that turns readable, straight to a
request thread, which then waits on the socket for the head: 100 clients sending a byte every few
seconds (a "slowloris"), or a dozen silent half-open connections, held the whole pool and the
page, ``/healthz`` and the API timed out. Here the connection manager's own thread (one selector
for all) looks at what each connection has sent with ``MSG_PEEK`` (nothing is consumed: cheroot
reads the request exactly as it would have) and hands it on only once the head is complete. A
head that does not complete within ``head_timeout_s`` is answered 408 and closed; past the caps
the oldest incomplete head of that client is dropped, else the newcomer is answered 503 with
``Retry-After``. Every refusal is an answer followed by an orderly close, never a reset: what the
client still sends is read and dropped for a moment first.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

from cheroot import connections, server, wsgi
from werkzeug.exceptions import RequestTimeout

log = logging.getLogger(__name__)

# A request head larger than this is handed on as it is (cheroot answers it 413/431).
_MAX_HEAD_BYTES = 64 * 1024
# A readable connection whose head is not complete yet is looked at again after this long (the
# selector is level-triggered: watching it meanwhile would spin on the bytes already there).
_RECHECK_S = 0.1
# A refused connection: what it still sends is read and dropped for this long before the close,
# so that its client reads the answer instead of a reset.
_LINGER_S = 2.0


class Limits:
    """The front door's limits: ``head_timeout_s`` for the whole request head, connections at once
    per client address and in total."""

    def __init__(self, head_timeout_s: float, per_client: int, total: int) -> None:
        self.head_timeout_s = head_timeout_s
        self.per_client = per_client
        self.total = total


def _answer(status: str, message: str, retry_after_s: Optional[int] = None) -> bytes:
    body = ('{"error": "%s"}' % message).encode()
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", f"Content-Length: {len(body)}",
            "Connection: close", "Cache-Control: no-store"]
    if retry_after_s is not None:
        head.append(f"Retry-After: {retry_after_s}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Waiting:
    """A connection in the selector: idle (kept alive, or new and silent) or part-way through its head."""

    def __init__(self, conn: server.HTTPConnection, now: float) -> None:
        self.conn = conn
        self.since = now  # when it arrived or was last handed back
        self.head_since: Optional[float] = None  # when its first byte of a request arrived


class _Closing:
    """A refused connection whose answer is sent: dropped what it sends until EOF or its deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline


class GatedConnections(connections.ConnectionManager):
    """cheroot's ConnectionManager with the front door's rules (module docstring); ``counts``
    tracks open connections by client address, decremented by ``GatedConnection.close``."""

    # cheroot's own, which its type stubs leave out.
    _selector: Any
    _stop_requested: bool
    _from_server_socket: Callable[[socket.socket], Optional["GatedConnection"]]

    def __init__(self, http_server: server.HTTPServer, limits: Limits) -> None:
        super().__init__(http_server)
        self.limits = limits
        self.counts: Counter = Counter()
        self._count_lock = threading.Lock()
        self._parked: List[Tuple[float, _Waiting]] = []
        self._closing: Dict[int, _Closing] = {}
        self._bodies: Dict[int, "BodyWatch"] = {}
        self._bodies_lock = threading.Lock()
        self.refused = 0

    # -- request bodies read against a deadline (request threads register, this thread enforces) ---

    def watch_body(self, sock: socket.socket, deadline: float) -> "BodyWatch":
        watch = BodyWatch(sock, deadline)
        with self._bodies_lock:
            self._bodies[id(watch)] = watch
        return watch

    def unwatch_body(self, watch: "BodyWatch") -> None:
        with self._bodies_lock:
            self._bodies.pop(id(watch), None)

    def _expire_bodies(self, now: float) -> None:
        """A body still arriving past its deadline: its socket is shut for reading, so the request
        thread's read returns at once (``DeadlineInput`` then answers 408) instead of waiting on
        a client that trickles."""
        with self._bodies_lock:
            late = [watch for watch in self._bodies.values() if watch.deadline < now]
            for watch in late:
                del self._bodies[id(watch)]
        for watch in late:
            watch.expired = True
            try:
                watch.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    # -- bookkeeping of open connections (any thread) ---------------------------------------------

    def opened(self, address: str) -> None:
        with self._count_lock:
            self.counts[address] += 1

    def closed(self, address: str) -> None:
        with self._count_lock:
            self.counts[address] -= 1
            if self.counts[address] <= 0:
                del self.counts[address]

    def _total(self) -> int:
        with self._count_lock:
            return sum(self.counts.values())

    # -- cheroot's entry points --------------------------------------------------------------------

    def put(self, conn: server.HTTPConnection) -> None:
        """A connection kept alive after a request: back to the selector, to wait for its next head."""
        conn.last_used = time.time()
        if conn.rfile.has_data():  # the next request is already read into cheroot's buffer
            self.server.process_conn(conn)
            return
        self._watch(_Waiting(conn, time.monotonic()))

    def _watch(self, waiting: _Waiting) -> None:
        import selectors

        self._selector.register(waiting.conn.socket.fileno(), selectors.EVENT_READ, data=waiting)

    def _run(self, expiration_interval: float) -> None:
        select_timeout = min(expiration_interval, _RECHECK_S)
        while not self._stop_requested:
            try:
                active = self._selector.select(timeout=select_timeout)
            except OSError:
                self._remove_invalid_sockets()
                continue
            now = time.monotonic()
            for sock_fd, data in active:
                if data is self.server:
                    self._accept()
                elif isinstance(data, _Closing):
                    self._drain(sock_fd, data)
                else:
                    try:
                        self._selector.unregister(sock_fd)
                    except KeyError:
                        continue  # dealt with earlier in this round (pushed out by a newcomer)
                    self._look(data, now)
            self._unpark(now)
            self._expire_waiting(now)
            self._expire_bodies(now)

    def _accept(self) -> None:
        conn = self._from_server_socket(self.server.socket)
        if conn is None:
            return
        address = str(getattr(conn, "remote_addr", "") or "")
        if self.counts.get(address, 0) >= self.limits.per_client and not self._evict(address):
            self._refuse(conn, "503 Service Unavailable",
                         f"too many connections from {address} (at most {self.limits.per_client}); try again", 5)
            return
        if self._total() >= self.limits.total and not self._evict(None):
            self._refuse(conn, "503 Service Unavailable",
                         f"too many connections (at most {self.limits.total}); try again", 5)
            return
        self.opened(address)
        conn.gate, conn.counted_as = self, address
        self._look(_Waiting(conn, time.monotonic()), time.monotonic())

    def _look(self, waiting: _Waiting, now: float) -> None:
        """Hand the connection on once its head is whole; park it while it is not; close it at EOF."""
        sock = waiting.conn.socket
        if sock is None or sock.fileno() < 0:  # closed meanwhile
            _forget(waiting.conn)
            return
        try:
            # Non-blocking for the look (a socket with a timeout would wait for data), then back.
            sock.settimeout(0)
            try:
                seen = sock.recv(_MAX_HEAD_BYTES, socket.MSG_PEEK)
            finally:
                sock.settimeout(self.server.timeout)
        except (BlockingIOError, InterruptedError):
            self._watch(waiting)  # nothing yet (a new, silent connection)
            return
        except OSError:
            waiting.conn.close()
            return
        if not seen:  # the client closed
            waiting.conn.close()
            return
        if b"\r\n\r\n" in seen or len(seen) >= _MAX_HEAD_BYTES or not seen.strip(b"\r\n"):
            waiting.conn.last_used = time.time()
            self.server.process_conn(waiting.conn)
            return
        if waiting.head_since is None:
            waiting.head_since = now
        self._parked.append((now + _RECHECK_S, waiting))

    def _unpark(self, now: float) -> None:
        due = [waiting for at, waiting in self._parked if at <= now]
        if due:
            self._parked = [(at, waiting) for at, waiting in self._parked if at > now]
            for waiting in due:
                self._watch(waiting)

    def _expire_waiting(self, now: float) -> None:
        """408 for heads that take too long; close idle kept-alive connections after cheroot's timeout."""
        late_head = now - self.limits.head_timeout_s
        idle = now - self.server.timeout
        for sock_fd, data in list(self._selector.connections):
            if isinstance(data, _Waiting):
                started = data.head_since
                if (started is not None and started < late_head) or (started is None and data.since < idle):
                    self._selector.unregister(sock_fd)
                    self._timed_out(data)
            elif isinstance(data, _Closing) and data.deadline < now:
                self._selector.unregister(sock_fd)
                self._finish_close(data.sock)
        kept = []
        for at, waiting in self._parked:
            if waiting.head_since is not None and waiting.head_since < late_head:
                self._timed_out(waiting)
            else:
                kept.append((at, waiting))
        self._parked = kept

    def _timed_out(self, waiting: _Waiting) -> None:
        if waiting.head_since is None:
            waiting.conn.close()  # idle: nothing was asked, nothing to answer
            return
        self._refuse(waiting.conn, "408 Request Timeout",
                     f"the request head did not arrive within {self.limits.head_timeout_s:g} s", None)

    def _evict(self, address: Optional[str]) -> bool:
        """Make room by dropping the connection (of ``address``, or anyone's) that has waited longest
        without a complete head; False when there is none."""
        candidates = [waiting for _, waiting in self._parked]
        candidates += [data for _, data in self._selector.connections if isinstance(data, _Waiting)]
        candidates = [w for w in candidates if address is None or getattr(w.conn, "counted_as", None) == address]
        if not candidates:
            return False
        oldest = min(candidates, key=lambda w: w.head_since if w.head_since is not None else w.since)
        self._parked = [(at, w) for at, w in self._parked if w is not oldest]
        try:
            self._selector.unregister(oldest.conn.socket.fileno())
        except (KeyError, ValueError, OSError):
            pass
        self._timed_out(oldest)
        return True

    def _refuse(self, conn: server.HTTPConnection, status: str, message: str, retry_after_s: Optional[int]) -> None:
        """Answer and close without a reset: the answer, our side shut, then what the client still
        sends read and dropped (``_Closing``) until it closes or ``_LINGER_S`` passes."""
        import selectors

        self.refused += 1
        sock = conn.socket
        try:
            sock.setblocking(False)
            sock.send(_answer(status, message, retry_after_s))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.socket = None  # the connection's own close must not close the socket under the linger
        _forget(conn)
        try:
            self._selector.register(sock.fileno(), selectors.EVENT_READ,
                                    data=_Closing(sock, time.monotonic() + _LINGER_S))
        except (OSError, ValueError):
            self._finish_close(sock)

    def _drain(self, sock_fd: int, closing: _Closing) -> None:
        try:
            data = closing.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(sock_fd)
            self._finish_close(closing.sock)

    @staticmethod
    def _finish_close(sock: socket.socket) -> None:
        try:
            sock.close()
        except OSError:
            pass

    def close(self) -> None:
        for _, waiting in self._parked:
            waiting.conn.close()
        self._parked = []
        for _, data in list(self._selector.connections):
            if isinstance(data, _Closing):
                self._finish_close(data.sock)
            elif isinstance(data, _Waiting):
                data.conn.close()
        self._selector.close()

    def _remove_invalid_sockets(self) -> None:
        import os

        for sock_fd, data in list(self._selector.connections):
            if data is self.server:
                continue
            try:
                os.fstat(sock_fd)
            except OSError:
                self._selector.unregister(sock_fd)
                if isinstance(data, _Waiting):
                    data.conn.close()


def _forget(conn: Any) -> None:
    """Stop counting ``conn`` against its client (its socket now belongs to a linger)."""
    manager, address = getattr(conn, "gate", None), getattr(conn, "counted_as", None)
    if manager is not None and address is not None:
        conn.counted_as = None
        manager.closed(address)


class GatedConnection(server.HTTPConnection):
    """cheroot's connection, counted against its client address until it is closed."""

    gate: Optional[GatedConnections] = None
    counted_as: Optional[str] = None

    def close(self) -> None:
        _forget(self)
        if self.socket is None:
            return
        super().close()


class BodyWatch:
    """One request body being read: its socket and deadline; ``expired`` once it was cut off."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline
        self.expired = False


class BodyTooSlow(RequestTimeout):
    """408 for a body that did not arrive in time; the connection is closed after the answer."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:.0f} s; send it again on a faster "
                         "connection, or a smaller image")

    def get_headers(self, environ=None, scope=None):
        return [*super().get_headers(environ, scope), ("Connection", "close")]


class DeadlineInput:
    """``wsgi.input`` read against a deadline that starts at its first read (an upload may wait
    for its turn before its body is read): the front door cuts the body off when it passes
    (``BodyWatch``), and the read raises BodyTooSlow."""

    def __init__(self, stream, gate: GatedConnections, sock: socket.socket, seconds: float) -> None:
        self._stream, self._gate, self._sock, self._seconds = stream, gate, sock, seconds
        self.watch: Optional[BodyWatch] = None

    def _start(self) -> None:
        if self.watch is None:
            self.watch = self._gate.watch_body(self._sock, time.monotonic() + self._seconds)

    def _checked(self, data):
        if self.watch is not None and self.watch.expired:
            raise BodyTooSlow(self._seconds)
        return data

    def read(self, *args):
        self._start()
        return self._checked(self._stream.read(*args))

    def readline(self, *args):
        self._start()
        return self._checked(self._stream.readline(*args))

    def readlines(self, *args):
        self._start()
        return self._checked(self._stream.readlines(*args))

    def __iter__(self):
        return iter(self.readline, b"")

    def done(self) -> None:
        if self.watch is not None:
            self._gate.unwatch_body(self.watch)


def body_seconds(length: int, base_s: float, min_bytes_per_s: float) -> float:
    """How long a body of ``length`` bytes may take: ``base_s`` plus the time at the slowest rate
    the service accepts."""
    return base_s + length / min_bytes_per_s


class DeadlineGateway(wsgi.Gateway_10):
    """cheroot's WSGI gateway with each request body read against a deadline (``body_deadline``
    of the server: seconds for a body of N bytes) enforced by the front door."""

    def get_environ(self):
        env = super().get_environ()
        self._input: Optional[DeadlineInput] = None
        gate = getattr(self.req.server, "_connections", None)
        length = int(env.get("CONTENT_LENGTH") or 0)
        if isinstance(gate, GatedConnections) and length > 0 and self.req.conn.socket is not None:
            self._input = DeadlineInput(env["wsgi.input"], gate, self.req.conn.socket,
                                        self.req.server.body_deadline(length))
            env["wsgi.input"] = self._input
        return env

    def respond(self):
        try:
            return super().respond()
        finally:
            if self._input is not None:
                self._input.done()
