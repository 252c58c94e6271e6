"""A TCP server on 127.0.0.1 that accepts connections and never answers: a camera or broker whose
open waits for its timeout, or a wrong port (another service). ``connected`` is set at the first
connection; ``close()`` ends every connection and the socket."""

from __future__ import annotations

import socket
import threading
from typing import List


class SilentServer:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.connected = threading.Event()
        self.clients: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            self.connected.set()

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.sock.close()
