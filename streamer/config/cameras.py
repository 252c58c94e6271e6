"""The cameras section: several sources run from one config file.

Each camera is named (the name becomes its MQTT topic level, its Home Assistant device, its web
route and its Prometheus label: ``schema.NAME_PATTERN``) and holds what the command line gives one
run (``source``, ``output``, ``events``, ``summary``, ``mode``, the privacy switches) plus overrides
of the global sections for that camera alone (``detector: {score: 0.6}``, ``audience: {zones:
...}``). ``load.camera_config`` merges them into the camera's own ``Config``.
"""

from __future__ import annotations

from typing import Any, Dict, Literal, Optional

from .schema import _BadValue, _Section, section, setting

# --mode is shorthand for the two switches of the motion and tracking sections (the command line's
# --mode and a camera's mode say the same).
MODES: Dict[str, Dict[str, Any]] = {
    "all": {"motion.enabled": False, "tracking.enabled": False},
    "gated": {"motion.enabled": True, "tracking.enabled": False},
    "tracked": {"motion.enabled": True, "tracking.enabled": True},
}

# The global sections a camera may override. Not output (a camera's ``output`` is its video path,
# as --output is; privacy, anonymize and labels are its own keys), nor models, dnn, mqtt and web:
# they are the box's, shared by every camera on it.
CAMERA_SECTIONS = ("detector", "classifier", "capture", "motion", "tracking", "report", "audience")

_OVERRIDE = ("Overrides of the global {name} section for this camera only, e.g. {example}; the keys are "
             "those of {name} above.")


@section
class CameraConfig(_Section):
    source: str = setting(
        default="",
        description="What this camera analyses, as --source takes it: rtsp://..., http://..., a device, a file.",
    )
    output: Optional[str] = setting(
        default=None,
        description="The annotated video (live: segments) to write, as --output; null: none.",
    )
    events: Optional[str] = setting(
        default=None,
        description="The events file (JSON lines) to write, as --events; null: none.",
    )
    summary: Optional[str] = setting(
        default=None,
        description="This camera's summary; null: <camera>.summary.json beside the site summary.",
    )
    mode: Optional[Literal["all", "gated", "tracked"]] = setting(
        default=None,
        description="As --mode: all, gated or tracked; null: motion.enabled and tracking.enabled as configured.",
    )
    privacy: Optional[Literal["full", "aggregate"]] = setting(
        default=None,
        description="As --privacy (output.privacy) for this camera; null: the output section's.",
    )
    anonymize: Optional[Literal["blur", "pixelate", "solid"]] = setting(
        default=None,
        description="As --anonymize (output.anonymize) for this camera; null: the output section's.",
    )
    labels: Optional[bool] = setting(
        default=None,
        description="Draw boxes and labels (output.labels) for this camera; null: the output section's.",
    )
    detector: Dict[str, Any] = setting(default={}, description=_OVERRIDE.format(name="detector",
                                                                               example="{score: 0.6}"))
    classifier: Dict[str, Any] = setting(default={}, description=_OVERRIDE.format(name="classifier",
                                                                                 example="{min_face_px: 40}"))
    capture: Dict[str, Any] = setting(default={}, description=_OVERRIDE.format(name="capture",
                                                                              example="{rtsp_transport: udp}"))
    motion: Dict[str, Any] = setting(default={}, description=_OVERRIDE.format(name="motion",
                                                                             example="{min_area: 0.01}"))
    tracking: Dict[str, Any] = setting(default={}, description=_OVERRIDE.format(name="tracking",
                                                                               example="{detect_every_s: 0.5}"))
    report: Dict[str, Any] = setting(default={}, description=_OVERRIDE.format(name="report",
                                                                             example="{min_seen_s: 2}"))
    audience: Dict[str, Any] = setting(default={}, description=_OVERRIDE.format(
        name="audience", example="{zones: {shelf: {polygon: [[0.1, 0.3], [0.5, 0.3], [0.5, 0.9]]}}}"))

    def _check(self) -> None:
        if not self.source.strip():
            raise _BadValue("source", "every camera needs a source (rtsp://..., a device, a file)", self.source)
        if self.privacy == "aggregate" and (self.output or self.anonymize or self.labels):
            key = "output" if self.output else "anonymize" if self.anonymize else "labels"
            raise _BadValue(key, "asks for pictures, but privacy: aggregate writes none; drop one of the two",
                            getattr(self, key))

    def changes(self) -> Dict[str, Any]:
        """The dotted-path changes (``override``'s form) this camera makes to the output and the
        motion and tracking switches; the section overrides are merged separately."""
        changes: Dict[str, Any] = dict(MODES[self.mode]) if self.mode else {}
        if self.privacy == "aggregate":
            changes.update({"output.privacy": "aggregate", "output.anonymize": None})
        elif self.privacy == "full":
            changes["output.privacy"] = "full"
        if self.anonymize:
            changes["output.anonymize"] = self.anonymize
        if self.labels is not None:
            changes["output.labels"] = self.labels
        return changes


@section
class SiteConfig(_Section):
    """How ``streamer run`` keeps several cameras going: one worker process each, restarted when it
    dies or goes silent."""

    restart_backoff_s: float = setting(
        default=1.0,
        gt=0.0,
        le=600.0,
        description="Wait before restarting a worker that died or went silent; doubled at each restart in a row "
        "(1, 2, 4 ... s), up to restart_backoff_max_s.",
    )
    restart_backoff_max_s: float = setting(
        default=60.0,
        gt=0.0,
        le=3600.0,
        description="The longest wait between restarts; a worker that then runs this long delivering frames "
        "starts again from restart_backoff_s at its next failure.",
    )
    silent_s: float = setting(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="A worker that delivers no frame for this long (hung in a model, a driver, a stopped process) "
        "is killed and restarted. Above capture.read_timeout_s and a reconnect: a camera that is down is the "
        "worker's own business (it reconnects), a worker that does not answer is the site's.",
    )
    start_timeout_s: float = setting(
        default=120.0,
        gt=0.0,
        le=3600.0,
        description="A new worker has this long for its first frame (loading models, opening the camera) before "
        "it counts as silent.",
    )
    stop_timeout_s: float = setting(
        default=20.0,
        gt=0.0,
        le=600.0,
        description="On Ctrl-C or SIGTERM each worker gets this long to finish its outputs and summary; then it "
        "is killed (its summary then says so, from the site).",
    )

    def _check(self) -> None:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise _BadValue("restart_backoff_max_s", f"must be >= restart_backoff_s ({self.restart_backoff_s:g})",
                            self.restart_backoff_max_s)
