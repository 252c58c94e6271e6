"""Audience measurement: zones with dwell time, counting lines, and attention (looking at
the camera) per person, from the tracker's boxes and the detector's 5 landmarks; the counts of a
run split by age group and gender (``tally.py``)."""

from .attention import Glances, head_pose, looking
from .geometry import Lines, Polygons, anchor_points
from .measure import Audience, Sightings, sightings_of

__all__ = ["Audience", "Glances", "Lines", "Polygons", "Sightings", "anchor_points", "head_pose", "looking",
           "sightings_of"]
