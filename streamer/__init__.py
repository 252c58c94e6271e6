"""streamer: real-time face analysis (detection, gender, age) for photos, files and streams."""

__version__ = "0.1.0"
