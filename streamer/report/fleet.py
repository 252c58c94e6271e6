"""The people report of several cameras: one per camera and one for the whole fleet,
from several events files (``streamer report a.jsonl b.jsonl``) or from the broker
(``streamer report --mqtt HOST``: ``subscribe.py``).

Events are told apart by their ``camera`` field (a site's events files and every MQTT message
carry it; an older file without it counts as the camera named after the file). Each camera's
track ids start at 1 in every run: its runs are told apart as in one events file
(``streamer.report.runs``: the frame number going back, or a ``new`` record for a track id the run
already started), then ids are made unique per (camera, track). Live events carry their
wall-clock ``timestamp``: times are moved onto one clock (seconds since the first event seen), so
the fleet's people and peak are on one time axis. People in view in the fleet at a moment: the
people of every camera's latest frame, from cameras whose latest frame is at most
``_STALE_FRAME_S`` old (a camera that stopped does not hold its last people forever). A person
seen by two cameras counts as two: cameras do not recognise faces across each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import AudienceConfig, ReportConfig
from ..errors import SourceError
from .build import PeopleReport, write_report
from .runs import Runs

log = logging.getLogger(__name__)

FLEET = "fleet"
# A camera's latest frame counts towards the fleet's people in view for this long.
_STALE_FRAME_S = 2.0
_TIME_KEYS = ("t_s", "first_t_s", "last_t_s")
_MAX_WARNINGS = 20


@dataclass
class _Camera:
    report: PeopleReport
    runs: Runs = field(default_factory=Runs)
    in_view: List[dict] = field(default_factory=list)  # the faces of its latest frame
    in_view_t_s: float = 0.0


class FleetReport:
    """Accumulates events of many cameras: ``cameras`` (name -> ``PeopleReport``) and ``fleet``
    (one ``PeopleReport`` over all of them). ``add(event)`` takes the events-file and MQTT objects
    (ValueError when one is not a streamer event); ``default_camera`` names the camera of events
    without a ``camera`` field (the file being read)."""

    def __init__(self, cfg: ReportConfig, age_groups: Sequence[Tuple[int, int]] = (),
                 audience: Optional[AudienceConfig] = None) -> None:
        self.cfg, self.age_groups, self.audience = cfg, age_groups, audience
        self.fleet = PeopleReport(cfg, age_groups, source=FLEET, runs=False)
        self._cameras: Dict[str, _Camera] = {}
        self._ids: Dict[Tuple[str, int], int] = {}
        self._epoch: Optional[float] = None  # Unix seconds of t_s 0 on the common clock
        self.default_camera = "camera"
        self.events = 0

    # read_events' view of a report
    @property
    def warnings(self) -> List[str]:
        return self.fleet.warnings

    @property
    def untracked_faces(self) -> int:
        return self.fleet.untracked_faces

    def all_rows(self) -> List[dict]:
        return self.fleet.all_rows()

    @property
    def cameras(self) -> Dict[str, PeopleReport]:
        return {name: camera.report for name, camera in sorted(self._cameras.items())}

    def add(self, event: dict) -> None:
        name = event.get("camera")
        if not isinstance(name, str) or not name:
            name = self.default_camera
        camera = self._cameras.get(name)
        if camera is None:
            camera = self._cameras[name] = _Camera(PeopleReport(self.cfg, self.age_groups, source=name,
                                                                audience=self.audience, runs=False))
        event = self._on_common_clock(self._unique_ids(camera.runs.place(event), name))
        camera.report.add(event)
        self.events += 1
        if "faces" in event and event.get("event") is None:
            self._add_fleet_frame(name, camera, event)
        else:
            self.fleet.add(event)

    def add_quietly(self, event: dict) -> None:
        """``add``, a message that is not a streamer event logged and counted in the warnings
        (a broker carries what anyone publishes)."""
        try:
            self.add(event)
        except (ValueError, TypeError, KeyError) as error:
            message = f"an event of camera {event.get('camera')!r} skipped: {error}"
            log.warning("%s", message)
            if len(self.fleet.warnings) < _MAX_WARNINGS:
                self.fleet.warnings.append(message)

    def _unique_ids(self, event: dict, name: str) -> dict:
        def unique(track: object) -> object:
            if not isinstance(track, int) or isinstance(track, bool):
                return track
            return self._ids.setdefault((name, track), len(self._ids) + 1)

        event = dict(event)
        if "track" in event:
            event["track"] = unique(event["track"])
        faces = event.get("faces")
        if isinstance(faces, list):
            event["faces"] = [{**face, "track": unique(face.get("track"))} if isinstance(face, dict) and "track" in face
                              else face for face in faces]
        return event

    def _on_common_clock(self, event: dict) -> dict:
        stamp, t_s = event.get("timestamp"), event.get("t_s")
        if not _number(stamp) or not _number(t_s):
            return event  # a file's events: their own clock (the file's position)
        offset = float(stamp) - float(t_s)  # type: ignore[arg-type]
        if self._epoch is None:
            self._epoch = float(stamp)  # type: ignore[arg-type]
        shift = offset - self._epoch
        for key in _TIME_KEYS:
            if _number(event.get(key)):
                event[key] = round(float(event[key]) + shift, 4)
        return event

    def _add_fleet_frame(self, name: str, camera: _Camera, event: dict) -> None:
        t_s = float(event["t_s"]) if _number(event.get("t_s")) else 0.0
        camera.in_view = [face for face in event["faces"] if isinstance(face, dict)]
        camera.in_view_t_s = t_s
        faces = [face for other in self._cameras.values()
                 if other is camera or 0.0 <= t_s - other.in_view_t_s <= _STALE_FRAME_S
                 for face in other.in_view]
        self.fleet.add({"t_s": t_s, "faces": faces, **({"timestamp": event["timestamp"]}
                                                         if "timestamp" in event else {})})


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_fleet_report(fleet: FleetReport, out_dir: Path, overwrite: bool = False,
                       sources: Sequence[str] = ()) -> dict:
    """The fleet's report in ``out_dir`` and each camera's in ``out_dir/cameras/<name>/`` (the files
    of ``write_report``). Returns ``{"fleet": summary, "cameras": {name: summary}}``; SourceError
    when no camera sent a usable event."""
    if not fleet.cameras:
        raise SourceError("no events arrived from any camera" + (f" ({', '.join(sources)})" if sources else "")
                          + "; check that the cameras run in tracked mode and publish to this broker and prefix")
    out_dir = Path(out_dir)
    cameras = {}
    for name, report in fleet.cameras.items():
        cameras[name] = write_report(report, out_dir / "cameras" / name, overwrite)
    summary = write_report(fleet.fleet, out_dir, overwrite)
    return {"fleet": summary, "cameras": cameras}
