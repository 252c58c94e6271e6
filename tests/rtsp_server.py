"""A real RTSP server for the tests: streams an H.264 MP4 in a loop at rtsp://127.0.0.1:PORT/stream.

Run by Debian's /usr/bin/python3, which has PyGObject (python3-gi) and GStreamer's RTSP server
(gir1.2-gst-rtsp-server-1.0). The clip's H.264 access units are read once (qtdemux ! h264parse !
appsink) and pushed by each client's ``appsrc`` over and over with growing timestamps, so the
stream never ends and nothing is re-encoded. (``concat`` of several filesrc branches would be
simpler but fails to preroll about one time in four.) Prints ``READY <port>`` on stdout once it
listens. ``--check`` only checks that everything is installed.
"""

from __future__ import annotations

import argparse
import sys

INSTALL_HINT = (
    "apt-get update && apt-get install -y --no-install-recommends python3-gi "
    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)
NEEDED_ELEMENTS = ("filesrc", "qtdemux", "h264parse", "appsink", "appsrc", "rtph264pay")
FALLBACK_FRAME_NS = 33_366_667  # 29.97 fps, for clips whose samples carry no duration

Gst = GLib = GstRtspServer = None


def _import_gi() -> None:
    global Gst, GLib, GstRtspServer
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as error:
        sys.exit(f"RTSP test server cannot start: {error}; install with: {INSTALL_HINT}")
    Gst.init(None)
    missing = [name for name in NEEDED_ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        sys.exit(f"RTSP test server: GStreamer elements missing: {', '.join(missing)}; install with: {INSTALL_HINT}")


def load_access_units(media: str):
    """The clip's H.264 caps and its access units as (bytes, pts, dts, duration, is_delta)."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{media}" ! qtdemux ! h264parse ! video/x-h264,stream-format=avc,alignment=au '
        "! appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    caps, units = None, []
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        caps = sample.get_caps()
        buffer = sample.get_buffer()
        units.append(
            (
                buffer.extract_dup(0, buffer.get_size()),
                buffer.pts,
                buffer.dts,
                buffer.duration,
                bool(buffer.get_flags() & Gst.BufferFlags.DELTA_UNIT),
            )
        )
    pipeline.set_state(Gst.State.NULL)
    if not units:
        sys.exit(f"RTSP test server: no H.264 video read from {media}")
    return caps, units


class Loop:
    """Feeds one client's appsrc: unit i of the clip, shifted by whole clip lengths."""

    def __init__(self, caps, units) -> None:
        self.caps = caps
        self.units = units
        frame_ns = units[0][3] if units[0][3] != Gst.CLOCK_TIME_NONE else FALLBACK_FRAME_NS
        self.period_ns = frame_ns * len(units)

    def configure(self, factory, media) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        appsrc.set_property("caps", self.caps)
        appsrc.set_property("format", Gst.Format.TIME)
        appsrc.connect("need-data", self._need_data, {"next": 0})

    def _need_data(self, appsrc, _length, state) -> None:
        loop, index = divmod(state["next"], len(self.units))
        state["next"] += 1
        data, pts, dts, duration, is_delta = self.units[index]
        buffer = Gst.Buffer.new_wrapped(data)
        shift = loop * self.period_ns
        buffer.pts = pts + shift if pts != Gst.CLOCK_TIME_NONE else pts
        buffer.dts = dts + shift if dts != Gst.CLOCK_TIME_NONE else dts
        buffer.duration = duration
        if is_delta:
            buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
        appsrc.emit("push-buffer", buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--media", help="an MP4 file with an H.264 video track")
    parser.add_argument("--check", action="store_true", help="only check the packages, then exit")
    args = parser.parse_args()
    _import_gi()
    if args.check:
        print("OK")
        return
    loop = Loop(*load_access_units(args.media))
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( appsrc name=src ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )")
    factory.connect("media-configure", loop.configure)
    factory.set_shared(False)  # every client gets its own pipeline, from the start of the clip
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        sys.exit(f"RTSP test server: cannot listen on 127.0.0.1:{args.port}")
    print(f"READY {args.port}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
