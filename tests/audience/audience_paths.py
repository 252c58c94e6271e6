"""Synthetic people for the audience tests: face boxes along known paths, and landmarks of a face
model turned by a known yaw and pitch."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from streamer.audience import Audience, Sightings
from streamer.audience.attention import face_model_3d

SHAPE_HW = (360, 640)
FPS = 25.0
FACE_PX = 40.0


def landmarks(centre_xy: Tuple[float, float], yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0,
              eye_px: float = 16.0) -> np.ndarray:
    """The model face's 5 landmarks ``(5, 2)`` float32 (frame pixels, orthographic), turned by
    ``yaw_deg`` (nose to the viewer's right), ``pitch_deg`` (looking up) and ``roll_deg``."""
    yaw, pitch, roll = np.radians([yaw_deg, pitch_deg, roll_deg])
    about_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    about_z = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    points = face_model_3d() @ (about_z @ about_y @ about_x).T
    return (points[:, :2] * eye_px + np.array(centre_xy)).astype(np.float32)


def sightings(people: Dict[int, Optional[Tuple[float, float]]], yaw: Optional[Dict[int, Optional[float]]] = None,
              labels: Optional[Dict[int, Tuple[Optional[str], Optional[str]]]] = None) -> Sightings:
    """The people of one frame: track id -> anchor centre ``(x, y)`` in pixels (None: not shown);
    ``yaw``: track id -> the face's yaw in degrees (None or absent: not detected on this frame)."""
    shown = [(track, xy) for track, xy in people.items() if xy is not None]
    if not shown:
        return Sightings.empty()
    tracks = np.array([track for track, _ in shown], np.int64)
    xyxy = np.array([[x - FACE_PX / 2, y - FACE_PX / 2, x + FACE_PX / 2, y + FACE_PX / 2] for _, (x, y) in shown],
                    np.float32)
    marks = np.full((len(shown), 5, 2), np.nan, np.float32)
    for i, (track, xy) in enumerate(shown):
        angle = (yaw or {}).get(track)
        if angle is not None:
            marks[i] = landmarks(xy, angle)
    names = tuple((labels or {}).get(track, (None, None)) for track, _ in shown)
    return Sightings(tracks, xyxy, marks, names)


def play(audience: Audience, frames: Sequence[Sightings], end_tracks: bool = True) -> List[dict]:
    """Every frame through ``audience`` at FPS, then (``end_tracks``) every track ended at the last
    frame's time; the records, each with the ``frame`` and ``t_s`` it came on."""
    records: List[dict] = []
    t_s = 0.0
    for index, seen in enumerate(frames):
        t_s = index / FPS
        for record in audience.update(t_s, SHAPE_HW, seen):
            records.append({**record, "frame": index, "t_s": t_s})
    if end_tracks:
        tracks = sorted({int(track) for seen in frames for track in seen.track})
        for track in tracks:
            ended, fields = audience.end(track, t_s)
            records += [{**record, "frame": len(frames) - 1, "t_s": t_s} for record in ended]
            records.append({"event": "end", "track": track, "frame": len(frames) - 1, "t_s": t_s, **fields})
    return records
