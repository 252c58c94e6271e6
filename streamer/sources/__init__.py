"""Where frames come from: what a ``--source`` means and opening it (``source.py``), the capture
thread and its bounded queue (``capture.py``), file formats and image headers."""

from .capture import CaptureSource, FrameSource, SourceInfo
from .source import open_source

__all__ = ["CaptureSource", "FrameSource", "SourceInfo", "open_source"]
