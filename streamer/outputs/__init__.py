"""Where a run's results go: the ``Sink`` protocol and its sinks (events, images, window), video
recording, files that are finished or absent, the outputs checked before the first frame, MQTT."""

from .plan import check_outputs, default_output
from .recording import VideoSink
from .sinks import EventsSink, ImageSink, PreviewWindow, Sink

__all__ = ["EventsSink", "ImageSink", "PreviewWindow", "Sink", "VideoSink", "check_outputs", "default_output"]
