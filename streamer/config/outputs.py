"""The output sections: what a run writes and shows, MQTT, the people report and the web service."""

from __future__ import annotations

from typing import List, Literal, Optional

from .schema import _BadValue, _Section, check_choice, section, setting

# How output.anonymize hides a face (streamer/picture/anonymize.py); the schema below spells them out too.
ANONYMIZE_MODES = ("blur", "pixelate", "solid")

# web.token and STREAMER_TOKEN: shorter tokens are refused (16 random characters are ~95 bits).
MIN_TOKEN_CHARS = 16


@section
class OutputConfig(_Section):
    codecs: List[str] = setting(
        default=["mp4v", "avc1", "MJPG"],
        min_length=1,
        description="FourCC codes tried in order for the output video.",
    )
    window: bool = setting(default=True, description="Show a preview window when a display exists.")
    window_name: str = setting(default="streamer", min_length=1, description="Preview window title.")
    hud: bool = setting(default=True, description="Draw fps / model ms / skipped / drops in the corner.")
    summary_json: Optional[str] = setting(default=None, description="Also write the end-of-run summary here.")
    overwrite: bool = setting(
        default=False,
        description="Replace existing output files (video, images, events, summary, report); false: a run "
        "whose output exists stops before the first frame, except a live run that starts again (it continues "
        "its events file and segments, records a one-file recording beside the earlier one, and moves an "
        "earlier report to <report>/earlier/<time>/). --overwrite sets it.",
    )
    segment_s: float = setting(
        default=10.0,
        ge=0,
        le=86400,
        description="Live recordings are written as finished files of this many seconds (rec_00001.mp4, ...), "
        "so a power cut loses at most the last one; 0: one file, finished only when the run ends.",
    )
    anonymize: Optional[Literal["blur", "pixelate", "solid"]] = setting(
        default=None,
        description="Hide every face in every picture output (video, images, preview window, served "
        "stream): blur, pixelate or solid. The mask follows the tracker's boxes on every frame, covers "
        "unconfirmed newcomers, and stays anonymize_hold_frames frames after a face's box goes. null: "
        "faces shown. --anonymize MODE sets it.",
    )
    anonymize_shape: Literal["ellipse", "box"] = setting(
        default="ellipse", description="Shape of the face mask: an ellipse (a head) or the grown box."
    )
    anonymize_scale: float = setting(
        default=1.6,
        ge=1.0,
        le=4.0,
        description="Mask width and height over the face box's (two thirds of the extra height above the "
        "box, for the hair). Detector boxes run from forehead to chin: 1.6 covers hair, ears and chin "
        "on the shared photos, where 1.3 leaves ears and hairlines (docs/accuracy.md, Privacy).",
    )
    anonymize_hold_frames: int = setting(
        default=12,
        ge=0,
        le=1000,
        description="Frames a face's last box stays masked after it stops coming (a detector blink, a "
        "track hidden or dropped); a box of this frame that covers it ends it earlier.",
    )
    anonymize_detector: Optional[str] = setting(
        default="centerface",
        description="With anonymize: a second face detector, run with the main one's full-frame detections "
        "(at most every anonymize_detector_interval_s), whose faces are masked too (until its next run) but not "
        "tracked or counted: faces in profile, dim, half-hidden and small ones the main detector misses. "
        "centerface is the main detector's model (from PyPI: nothing more to download), here at 480 px, score "
        "0.1, mirrored: on the stage clip the frames with a face of 40 px or more left partly unmasked went from "
        "64 (null) to 4, each face over 98 % masked (docs/privacy.md). yunet is an upstream download (`streamer "
        "models fetch yunet_2023mar`); null: only the main detector's faces are masked.",
    )
    anonymize_detector_score: float = setting(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="Minimum confidence of anonymize_detector's faces. Low on purpose: a face masked by "
        "mistake costs a blurred patch, a face missed is shown (on the stage clip 0.2 left 35 frames, 0.1: 4).",
    )
    anonymize_detector_interval_s: float = setting(
        default=0.25,
        ge=0.0,
        le=60.0,
        description="anonymize_detector runs at most this often (and after every cut), its boxes held in "
        "between. 0: with every full-frame detection (the same leaks on the shared clips, more of its cost); "
        "0.5 left faces in motion partly unmasked (9 frames on the stage clip, 6 of them under 90 % masked).",
    )
    anonymize_detector_max_side_px: int = setting(
        default=480,
        ge=64,
        le=4096,
        description="anonymize_detector's input: the frame scaled so its long side is at most this (640 px left "
        "more on the stage clip, 12 frames, at twice the cost).",
    )
    anonymize_detector_mirror: bool = setting(
        default=True,
        description="Run anonymize_detector on the frame and on its mirror image too, masking the faces of "
        "both: CenterFace finds faces in profile far more often looking one way than the other.",
    )
    anonymize_detector_grow: float = setting(
        default=1.3,
        ge=1.0,
        le=3.0,
        description="anonymize_detector's boxes are scaled by this about their centres before masking (and "
        "then by anonymize_scale, as every face): they do not follow a face between its runs, and on a dim "
        "face they often cover part of it.",
    )
    labels: bool = setting(
        default=True,
        description="Draw face boxes and labels on pictures; false (--no-labels): a clean picture "
        "(with anonymize, only the masks).",
    )
    privacy: Literal["full", "aggregate"] = setting(
        default="full",
        description="aggregate (--privacy aggregate): no pictures at all (no video, images, window or "
        "stream frames) and no face crops kept past classification; only counts, tracks, labels, events "
        "and the report. full: pictures as configured.",
    )


    def _check(self) -> None:
        from ..detectors.registry import DETECTORS  # imported when checked: detectors read this config

        check_choice("anonymize_detector", self.anonymize_detector, DETECTORS)
        for codec in self.codecs:
            if len(codec) != 4:
                raise _BadValue("codecs", f"a FourCC code is 4 characters, got {len(codec)} in '{codec[:12]}'",
                                self.codecs)


MQTT_PASSWORD_ENV = "STREAMER_MQTT_PASSWORD"


@section
class MqttConfig(_Section):
    enabled: bool = setting(
        default=False,
        description="Publish events, people counts, stats and Home Assistant discovery to an MQTT broker "
        "(pip install 'streamer[mqtt]'). --mqtt HOST[:PORT] turns it on for one run.",
    )
    host: str = setting(default="localhost", min_length=1, description="Broker host name or address.")
    port: int = setting(default=1883, ge=1, le=65535, description="Broker port (1883 plain, 8883 usually TLS).")
    client_id: Optional[str] = setting(
        default=None,
        description="MQTT client id; null: '<topic_prefix>-<camera>'. With a cameras section each camera's is "
        "'<client_id>-<camera>' and the site's own (its people count across cameras) '<client_id or "
        "topic_prefix>-site'. Two clients with one id throw each other off the broker: give each box its own "
        "camera names or id.",
    )
    topic_prefix: str = setting(
        default="streamer", min_length=1, description="First level of every topic: <prefix>/<camera>/available, "
        "<prefix>/<camera>/events, ...",
    )
    camera: Optional[str] = setting(
        default=None,
        description="Camera name in topics and Home Assistant ids; null: from the source (file name, "
        "device name or the stream's host, without credentials), lowercased, other characters as '_'.",
    )
    qos: int = setting(
        default=1,
        ge=0,
        le=2,
        description="QoS of the events (new/update/end) and stats. 1: each reaches the broker at least once, "
        "also across a broker restart (within queue_size). Retained state topics always use 1.",
    )
    keepalive_s: int = setting(
        default=60,
        ge=5,
        le=3600,
        description="MQTT keepalive; the broker publishes the 'offline' Last Will about 1.5x this long "
        "after the box goes silent (a crash that leaves the connection open, a pulled plug).",
    )
    username: Optional[str] = setting(default=None, description="Login user name; null: anonymous.")
    password_file: Optional[str] = setting(
        default=None,
        description=f"File holding the login password (its first line). The environment variable "
        f"{MQTT_PASSWORD_ENV} takes precedence. The password is never logged.",
    )
    tls: bool = setting(
        default=False, description="Connect with TLS (the broker's TLS port, usually 8883)."
    )
    tls_ca_file: Optional[str] = setting(
        default=None, description="CA certificate (PEM) that signed the broker's; null: the system's CAs."
    )
    tls_cert_file: Optional[str] = setting(
        default=None, description="Client certificate (PEM) for brokers that require one; with tls_key_file."
    )
    tls_key_file: Optional[str] = setting(default=None, description="Private key (PEM) of tls_cert_file.")
    stats_interval_s: float = setting(
        default=60.0,
        ge=0.5,
        le=86400,
        description="Seconds between <prefix>/<camera>/stats messages (retained; the first comes 5 s after "
        "connecting, and one more when the run ends).",
    )
    discovery: bool = setting(
        default=True,
        description="Publish Home Assistant MQTT discovery configs (people count with the last event as its "
        "attributes, occupancy, counts per gender and per age group, fps, source status), again whenever Home "
        "Assistant announces itself online. `streamer mqtt retire CAMERA` removes a camera's for good.",
    )
    bridge_availability: bool = setting(
        default=False,
        description="Also publish <prefix>/available: online while any camera under the prefix is (a run that "
        "ends clean says offline only when no other camera is online); entities then need both it and their "
        "camera's <prefix>/<camera>/available. A crash leaves it as it was: the Last Will is the camera's.",
    )
    discovery_prefix: str = setting(
        default="homeassistant", min_length=1, description="Home Assistant's discovery prefix."
    )
    required: bool = setting(
        default=False,
        description="true: stop with an error when the broker cannot be reached within connect_timeout_s at "
        "start (or refuses the login); false: run on, publish once the broker appears.",
    )
    connect_timeout_s: float = setting(
        default=5.0,
        gt=0,
        le=120,
        description="Seconds one connection attempt (TCP, TLS, the broker's answer) may take.",
    )
    reconnect_min_s: float = setting(
        default=1.0, gt=0, le=600, description="Delay before the first reconnect attempt; it doubles after each."
    )
    reconnect_max_s: float = setting(
        default=30.0, gt=0, le=3600, description="Longest delay between reconnect attempts."
    )
    queue_size: int = setting(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Messages held while the broker is away; beyond this the oldest are dropped and "
        "counted (mqtt.dropped in the summary). 1000: about 16 hours of stats at the default interval, "
        "or the new and end events of 500 people.",
    )
    flush_timeout_s: float = setting(
        default=5.0,
        ge=0,
        le=120,
        description="At the end of a run, seconds to wait for queued messages and 'offline' to reach "
        "the broker (one that is away may come back meanwhile).",
    )

    def _check(self) -> None:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise _BadValue("reconnect_max_s", f"must be >= reconnect_min_s ({self.reconnect_min_s:g})",
                            self.reconnect_max_s)
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise _BadValue("tls_key_file", "tls_cert_file and tls_key_file go together: set both or neither",
                            self.tls_key_file)
        for name in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, name)
            if any(ch in value for ch in "+#\x00") or value.startswith("/") or value.endswith("/"):
                raise _BadValue(name, "a topic level may not hold '+', '#' or a NUL, nor start or end with '/'",
                                value)


@section
class ReportConfig(_Section):
    min_seen_s: float = setting(
        default=1.0,
        ge=0,
        le=3600,
        description="People report (--report DIR, `report` command): people in view for less than this many "
        "seconds (a glance in passing, a false detection) are left out of the rows and counts, and counted apart.",
    )
    dwell_bands_s: List[float] = setting(
        default=[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0],
        min_length=1,
        description="Upper edges in seconds of the report's dwell-time bands (here: under 5 s, 5-15 s, ..., "
        "5-10 min, 10 min and more); increasing.",
    )

    def _check(self) -> None:
        edges = self.dwell_bands_s
        if edges[0] <= 0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise _BadValue("dwell_bands_s", "band edges must be positive and increasing", edges)


@section
class WebConfig(_Section):
    host: str = setting(
        default="127.0.0.1",
        min_length=1,
        description="Address `serve` listens on. 127.0.0.1: this machine only; 0.0.0.0 (every network) or any "
        "other address needs a token (web.token or STREAMER_TOKEN). --host overrides.",
    )
    port: int = setting(default=8080, ge=0, le=65535, description="TCP port of `serve` (0: any free port, logged). "
                        "--port overrides.")
    token: Optional[str] = setting(
        default=None,
        description="Access token for `serve` (at least 16 characters): clients send 'Authorization: Bearer "
        "TOKEN' or log in on the page. The environment variable STREAMER_TOKEN overrides it (keeps it out of "
        "this file). Required when host is not a loopback address.",
    )
    allowed_hosts: List[str] = setting(
        default=[],
        description="Names besides this machine's (localhost, loopback addresses, the address listened on) "
        "that requests may give in their Host header, e.g. [camera.lan]: without a token every other Host is "
        "refused (403), so a web page elsewhere cannot reach the service through a name of its own pointed at "
        "127.0.0.1 (DNS rebinding). With a token, a non-empty list restricts Host as well. POSTs from another "
        "site's page (Origin, Sec-Fetch-Site) are always refused.",
    )
    max_upload_mb: float = setting(
        default=10.0, gt=0, le=1024,
        description="Largest photo upload in MB; larger requests get 413 from their Content-Length, unread.",
    )
    max_image_mp: float = setting(
        default=40.0, gt=0, le=1000,
        description="Largest photo in megapixels, read from the image header before decoding (413 above).",
    )
    max_parallel_uploads: int = setting(
        default=2, ge=1, le=64,
        description="Uploads read at once (each photo is decoded and analysed one at a time); 18 more wait "
        "their turn (503 after 2 minutes), and beyond those an upload gets 503 with Retry-After at once, so "
        "parallel uploads cannot grow memory or take the threads the page and /healthz need.",
    )
    stream_fps: float = setting(
        default=10.0, gt=0, le=60,
        description="Frames per second of the live MJPEG stream at most (each frame is encoded once and shared "
        "by every viewer).",
    )
    stream_max_side_px: int = setting(
        default=960, ge=64, le=8192,
        description="The live stream's frames are scaled down to this long side at most.",
    )
    stream_jpeg_quality: int = setting(default=80, ge=10, le=100, description="JPEG quality of the live stream.")
    max_viewers: int = setting(
        default=4, ge=1, le=64,
        description="Live stream viewers at once; the next one gets 503.",
    )

    def _check(self) -> None:
        for name in self.allowed_hosts:
            if not name or any(ch in name for ch in "/ :@") and not name.startswith("["):
                raise _BadValue("allowed_hosts", "a host name or address without a scheme, port or path (an IPv6 "
                                "address in brackets), e.g. camera.lan or 192.0.2.10", name)
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise _BadValue("token", f"needs at least {MIN_TOKEN_CHARS} characters (a guessable token protects "
                            "nothing); generate one with: python -c 'import secrets; print(secrets.token_urlsafe())'",
                            "<hidden>")
