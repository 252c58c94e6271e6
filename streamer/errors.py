"""Exception classes. Every message names the thing, what was expected, what was got, and the fix."""

from __future__ import annotations


class StreamerError(Exception):
    """Base class: the command line prints these as one line and exits non-zero."""

    exit_code = 2
    # What the run had done when it failed (app.run attaches it; the command line prints it).
    summary: "dict | None" = None


class ConfigError(StreamerError):
    """A config key is unknown or its value is out of range."""


class SourceError(StreamerError):
    """An input cannot be opened or read (missing, not an image/video, truncated, unreachable)."""


class ModelError(StreamerError):
    """A model file is missing, corrupt, or cannot be loaded by this OpenCV build."""


class ModelFileError(ModelError):
    """A model file is there but damaged (its checksum differs from the manifest's) or unreadable by
    this user: a fault to fix, never a reason to fall back to another model."""


class SinkError(StreamerError):
    """An output (video file, events file, window) cannot be opened or written."""


class MqttError(StreamerError):
    """The MQTT output cannot work: paho-mqtt missing, or a required broker unreachable or refusing."""
