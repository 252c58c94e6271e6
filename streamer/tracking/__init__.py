"""Following faces between frames: the tracker and its tracks, per-person label fusion, optical
flow, the colour cue, and the motion gate that decides which frames need the models."""

from .flow import BoxFlow
from .motion import CutDetector, MotionGate
from .track import Track
from .tracker import Tracker

__all__ = ["BoxFlow", "CutDetector", "MotionGate", "Track", "Tracker"]
