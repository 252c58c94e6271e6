"""The runs of one events file, told apart: a live run that starts again (a service restarted after
a stop, a crash or a reboot) appends to the file its predecessor wrote, numbering its frames from 0
and its tracks from 1 again.

A run starts again where the frame number goes back (a run's frame numbers only grow, across
reconnects too), or where a ``new`` record names a track id that already started in this run (a
run that stopped on its first frame). Each later run's track ids are moved past the highest id of
the runs before (its track 1 is the earlier runs' highest id + 1), and its times onto the first
run's clock: by the wall-clock ``timestamp`` live events carry (each run's ``t_s`` counts from its
own clock, which a reboot sets back), else (a file's events) right after the earlier runs' last
time. A single run's events pass unchanged.
"""

from __future__ import annotations

import math
from typing import List, Optional, Set

# The keys that hold an event's times (t_s seconds), moved with its run.
TIME_KEYS = ("t_s", "first_t_s", "last_t_s", "enter_t_s")


def _float(value: object) -> Optional[float]:
    """A finite number as a float, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _id(value: object) -> Optional[int]:
    return value if type(value) is int else None


class Runs:
    """Places each event of one events file (one camera) in its run: ``place(event)`` returns the
    event with the track ids and times of a later run moved (a copy), else the event itself."""

    def __init__(self) -> None:
        self.count = 1
        self.starts: List[int] = []  # the frame number each later run's first event goes back to
        self._last_frame: Optional[int] = None
        self._started: Set[int] = set()  # tracks with a "new" record in this run
        self._offset = 0  # added to this run's track ids
        self._highest = 0  # the highest track id so far (moved)
        self._shift = 0.0  # added to this run's times
        self._shift_set = True  # the first run's times are the report's clock
        self._t_last: Optional[float] = None  # the latest time so far (moved)
        self._clock: Optional[float] = None  # timestamp - t_s of the first event with a timestamp (moved)

    def place(self, event: dict) -> dict:
        frame, kind, track = event.get("frame"), event.get("event"), event.get("track")
        if isinstance(frame, int) and not isinstance(frame, bool):
            if self._last_frame is not None and frame < self._last_frame:
                self._next_run(frame)
            self._last_frame = frame
        if kind == "new" and isinstance(track, int):
            if track in self._started:
                self._next_run(frame if isinstance(frame, int) else 0)
            self._started.add(track)
        if not self._shift_set and _float(event.get("t_s")) is not None:
            self._shift = self._run_shift(event)
            self._shift_set = True
        if self._offset or self._shift:
            event = self._moved(event)
        self._note(event)
        return event

    def _next_run(self, frame: int) -> None:
        self.count += 1
        self.starts.append(frame)
        self._started = set()
        self._offset = self._highest
        self._shift_set = False

    def _run_shift(self, event: dict) -> float:
        """What moves this run's times onto the first run's clock, from its first event with a time."""
        t_s = float(event["t_s"])
        floor = (self._t_last if self._t_last is not None else t_s) - t_s  # not before the runs before
        stamp = _float(event.get("timestamp"))
        if self._clock is not None and stamp is not None:
            return max(stamp - t_s - self._clock, floor)
        return floor

    def _moved(self, event: dict) -> dict:
        event = dict(event)
        track = _id(event.get("track"))
        if self._offset and track is not None:
            event["track"] = track + self._offset
        faces = event.get("faces")
        if self._offset and isinstance(faces, list):
            event["faces"] = [{**face, "track": face["track"] + self._offset}
                              if type(face) is dict and _id(face.get("track")) is not None else face for face in faces]
        if self._shift:
            for key in TIME_KEYS:
                value = _float(event.get(key))
                if value is not None:
                    event[key] = round(value + self._shift, 4)
        return event

    def _note(self, event: dict) -> None:
        track = _id(event.get("track"))
        if track is not None and track > self._highest:
            self._highest = track
        faces = event.get("faces")
        if isinstance(faces, list):
            for face in faces:
                track = _id(face.get("track")) if type(face) is dict else None
                if track is not None and track > self._highest:
                    self._highest = track
        t_s = _float(event.get("t_s"))
        if t_s is not None:
            if self._t_last is None or t_s > self._t_last:
                self._t_last = t_s
            stamp = _float(event.get("timestamp"))
            if self._clock is None and stamp is not None:
                self._clock = stamp - t_s
        last = _float(event.get("last_t_s"))
        if last is not None and (self._t_last is None or last > self._t_last):
            self._t_last = last
