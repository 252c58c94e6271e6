"""An HTTP MJPEG camera on 127.0.0.1 for the tests: a live source that needs nothing installed.

``multipart/x-mixed-replace`` JPEG stream of flat grey 64x48 frames at 50 fps; ``stall()`` freezes
the connections open at that moment while new ones stream normally. ``serving()`` runs one.
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import cv2
import numpy as np

MJPEG_FPS = 50.0
MJPEG_MAX_FRAMES = 3000  # each connection ends by itself after a minute
BOUNDARY = "frame"


def mjpeg_grey(index: int) -> int:
    return 20 + (index * 7) % 200


class MjpegServer(ThreadingHTTPServer):
    """multipart/x-mixed-replace JPEG stream of flat grey 64x48 frames; ``stall()`` freezes the
    connections open at that moment (they send nothing more) while new ones stream normally."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MjpegHandler)
        self.stopping = threading.Event()
        self.connections = 0
        self.stall_below = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/video.mjpg"

    def stall(self) -> None:
        with self.lock:
            self.stall_below = self.connections + 1


class _MjpegHandler(BaseHTTPRequestHandler):
    server: MjpegServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.connections += 1
            connection = self.server.connections
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        self.end_headers()
        for index in range(MJPEG_MAX_FRAMES):
            if self.server.stopping.wait(1.0 / MJPEG_FPS):
                return
            if connection < self.server.stall_below:
                continue  # a stalled camera: the connection stays open, nothing arrives
            ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), mjpeg_grey(index), np.uint8))
            try:
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg.tobytes()
                    + b"\r\n"
                )
            except (BrokenPipeError, ConnectionResetError):
                return


@contextlib.contextmanager
def serving() -> Iterator[MjpegServer]:
    server = MjpegServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
