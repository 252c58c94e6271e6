"""What the output pictures show: the overlay (``draw.py``) and hidden faces (``anonymize.py``)."""

from .anonymize import Anonymizer, build_anonymizer
from .draw import LabelStyle, draw_faces, draw_hud

__all__ = ["Anonymizer", "LabelStyle", "build_anonymizer", "draw_faces", "draw_hud"]
