"""The frame sections: capture (reading a source), the motion gate, and tracking."""

from __future__ import annotations

from typing import Literal

from .schema import _BadValue, _Section, section, setting


@section
class CaptureConfig(_Section):
    queue_size: int = setting(
        default=4,
        ge=1,
        le=256,
        description="Frames a file source reads ahead of the worker, at most (fewer for big frames: what fits "
        "in 8 MB, at least one; the reader waits when full, nothing is lost); live sources keep only the newest "
        "frame and count the ones the worker could not take.",
    )
    photo_decode_side_px: int = setting(
        default=2048,
        ge=0,
        le=65536,
        description="Photos (JPEG, PNG) much bigger than this are decoded at 1/2, 1/4 or 1/8 of their size, "
        "the smallest that keeps the long side at least this long: a 24 MP photo then takes 18 MB instead "
        "of 72 MB per copy. Twice detector.photo_max_side_px (1024) keeps what the detector sees plus detail "
        "for the classifier's crops; the annotated image has the decoded size. 0: always full size.",
    )
    open_timeout_s: float = setting(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds to wait for a network source (RTSP/HTTP) to open before giving up with an error.",
    )
    read_timeout_s: float = setting(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds without a frame after which a network source counts as dropped and is reopened.",
    )
    rtsp_transport: Literal["tcp", "udp"] = setting(
        default="tcp",
        description="RTSP transport: tcp survives lossy Wi-Fi without smeared frames; udp has less latency.",
    )
    reconnect_retries: int = setting(
        default=20,
        ge=0,
        le=1000,
        description="Reopen attempts for a network source that drops; 0: end the run at once. 20 with the "
        "default backoff keeps trying for about 4 minutes, long enough for a camera to reboot.",
    )
    reconnect_backoff_s: float = setting(
        default=1.0, gt=0, le=60, description="Delay before the first reopen attempt; it doubles after each."
    )
    reconnect_backoff_max_s: float = setting(
        default=15.0, gt=0, le=600, description="Longest delay between reopen attempts."
    )


@section
class MotionConfig(_Section):
    enabled: bool = setting(default=True, description="Skip frames where nothing changed.")
    width_px: int = setting(
        default=160,
        ge=16,
        le=1920,
        description="Working width for differencing (aspect kept, never upscaled); 160 px keeps a "
        "talking mouth at 640x480 several pixels wide while update() stays well under 1 ms.",
    )
    pixel_threshold: int = setting(
        default=25,
        ge=1,
        le=255,
        description="Grey-level change that counts; 25 sits above sensor noise and codec flicker "
        "after the blur (30+ started skipping the talking head in carphone).",
    )
    min_area: float = setting(
        default=0.002,
        ge=0.0,
        le=1.0,
        description="Changed share of the frame that opens the gate; 0.002 (38 px at 160x120) is "
        "about the moving part of a talking mouth in a 640x480 webcam frame.",
    )
    recalibrate_area: float = setting(
        default=0.6,
        gt=0.0,
        le=1.0,
        description="Changed share treated as a lighting change or a cut: reset the background to "
        "the frame and analyse once, instead of blending it in over many triggered frames.",
    )
    background_alpha: float = setting(
        default=0.2,
        gt=0.0,
        le=1.0,
        description="How fast the background follows the scene (per frame); 0.2 clears the ghost of "
        "a passing object in ~6 frames (caminandes skips 52% vs 41% at 0.1) and still skips only "
        "10% of the carphone talking head.",
    )
    refresh_frames: int = setting(
        default=30,
        ge=1,
        le=100000,
        description="Analyse at least every this many frames even when still (about 1 s at 30 fps), "
        "so stale results never last longer than that.",
    )


@section
class TrackingConfig(_Section):
    enabled: bool = setting(
        default=True,
        description="Track faces, classify each person on a schedule and smooth their labels (stable labels, "
        "far fewer classifier runs); false classifies every face on every analysed frame.",
    )
    min_iou: float = setting(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Overlap (IoU) with a track's predicted box that allows a match. 0.2: a face "
        "moving a third of its width between detector runs still overlaps this much.",
    )
    max_centre_dist: float = setting(
        default=1.0,
        ge=0.0,
        le=10.0,
        description="Centre distance, in face sizes (sqrt of the track box area), that also allows a "
        "match. 1.0: fast motion at a low frame rate moves a face about its own size between detections; "
        "further than that is more likely a neighbour.",
    )
    max_missed: int = setting(
        default=2,
        ge=0,
        le=1000,
        description="Checks in a row that may find no face where a track is before its box is hidden: a "
        "full-frame detector run without a match, then a look at the track's region on each following "
        "frame. 2: a face that left or was covered loses its box within about three frames; one that "
        "comes back within max_age_s keeps its id.",
    )
    max_age_s: float = setting(
        default=3.0,
        gt=0.0,
        le=3600.0,
        description="A track not matched for longer than this ends (an 'end' record); a face that "
        "reappears near its last box within it keeps its id. 3 s: someone turning away or stepping "
        "out briefly is one person in the report; longer risks giving the next passer-by the same id. "
        "For file sources pass the media time (pos_s) as t_s.",
    )
    min_hits: int = setting(
        default=2,
        ge=1,
        le=100,
        description="Detections (full-frame or in the track's region on the next frames) before a track "
        "is confirmed: shown, a 'new' record, counted as a person; a tentative track that is not found "
        "again is dropped. 2: a one-frame false detection does not become a person.",
    )
    flow: bool = setting(
        default=True,
        description="Between detector runs, move each box with the optical flow of points inside the face "
        "(Lucas-Kanade), and look for the face in its region with the detector when the flow is lost. "
        "false: boxes stay where the face was last detected.",
    )
    verify_every_frames: int = setting(
        default=5,
        ge=1,
        le=1000,
        description="A box followed by flow is checked by a look at its region when its face was last "
        "detected this many frames ago: flow can cling to a patch the face has left (a dark wall), and "
        "5 frames (1/6 s at 30 fps) bounds how long such a box can stay, for one small detector run per "
        "face per 5 frames, while the person's labels still take samples (a look that finds the face "
        "is also a chance to classify it).",
    )
    settled_verify_every_frames: int = setting(
        default=10,
        ge=1,
        le=1000,
        description="verify_every_frames for a person whose labels take no more samples (settled, or "
        "max_samples reached): their looks serve only to check the box. 10, measured against 5 on the "
        "bench's clips: recall and label flicker the same, precision within 0.1 point, a quarter fewer "
        "checking looks where people stay (a talking head: 16 -> 12 in 4 s); while labels still take "
        "samples the looks feed them, and fewer of them made per-person ages worse (bench/fusion.py).",
    )
    region_grow: float = setting(
        default=0.75,
        ge=0.1,
        le=5.0,
        description="A look for a track's face runs the detector on its box grown by this share of its "
        "size on every side: 0.75 covers a face that moved most of its width since the last frame, at a "
        "small fraction of a full-frame run.",
    )
    max_appearance_distance: float = setting(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="A detection whose colour histogram differs from a track's by more than this "
        "(Hellinger distance, 0 same, 1 disjoint) never takes its id, however close: someone stepping "
        "into the spot another person just left is a new person. 0.7: above the worst distance measured "
        "between detections of one face (0.58), near the median between two people (0.73). 1.0 turns "
        "the check off.",
    )
    reappear_appearance_distance: float = setting(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="The same limit for a face that comes back to a hidden track (after a gap): at a "
        "counter the next person steps into the same spot. 0.25: one face before and after a gap of "
        "a second measured 0.01-0.2; consecutive people in a synthetic queue of labelled faces "
        "0.26-0.88. A person who turns away and back may get a new id: the lesser error.",
    )
    detect_min_frames: int = setting(
        default=15,
        ge=1,
        le=1000,
        description="While faces are tracked, motion elsewhere runs the detector at most every this many "
        "frames: a newcomer is boxed within 0.5 s at 30 fps, and a moving background (a car window, "
        "trees) does not cost a detection per frame. 15 keeps res10 on a Raspberry Pi 4 (~150 ms a "
        "run) to ~0.3 s of detector time per second at 30 fps (talking-head clip: 5 -> 5.9x, 10 -> "
        "8-10x, 15 -> 10-13x the per-frame loop); 10 boxes newcomers sooner for ~35 % more detector "
        "runs. While someone on screen still shows 'analysing...', every classify_every_frames frames "
        "instead, so labels are not delayed.",
    )
    detect_every_frames: int = setting(
        default=15,
        ge=1,
        le=100000,
        description="While tracks are shown, run the detector at least every this many frames even "
        "when the motion gate is closed, so tracks confirm, move or end. 15: half a second at 30 fps.",
    )
    detect_every_s: float = setting(
        default=1.0,
        gt=0.0,
        le=3600.0,
        description="The same limit in seconds (whichever comes first); 1 s bounds the delay at low fps.",
    )
    classify_every_frames: int = setting(
        default=10,
        ge=1,
        le=100000,
        description="Classify a track again after this many frames (whichever of frames or seconds "
        "comes first); between runs its smoothed labels are reused. 10: three samples a second at "
        "30 fps, a fraction of the CPU of classifying every face every frame.",
    )
    classify_every_s: float = setting(
        default=1.0,
        gt=0.0,
        le=3600.0,
        description="Classify a track again after this many seconds; 1 s keeps labels coming at low fps. Also "
        "how long a due sample waits for a steady view (the face inside the frame and not moving fast) before "
        "it takes the view there is: someone who walks past without stopping is still labelled.",
    )
    regrow_ratio: float = setting(
        default=1.5,
        gt=1.0,
        le=100.0,
        description="Classify again early when the face box area reaches this multiple of its area "
        "at the last sample: the person came closer and a larger crop gives a better estimate.",
    )
    min_samples: int = setting(
        default=3,
        ge=1,
        le=1000,
        description="Samples before a track shows labels ('analysing...' before). 3: one sample is "
        "often a blurred or turned face; three at the default interval take about a second.",
    )
    max_samples: int = setting(
        default=15,
        ge=1,
        le=100000,
        description="Classifier samples per track at most (regrowth included); then its labels are "
        "settled and it costs no more CPU, except one run to check who it is when the face is back after "
        "being hidden (the next person in a queue may have taken the spot). 15: the running mean barely "
        "moves after that. Must be >= min_samples.",
    )
    gender_hysteresis: float = setting(
        default=0.1,
        ge=0.0,
        lt=0.5,
        description="A shown gender flips only when the averaged p_male crosses 0.5 by this margin "
        "on the other side. 0.1: per-frame noise of the classifier is larger than that, its mean is not.",
    )
    age_hysteresis_years: float = setting(
        default=2.0,
        ge=0.0,
        le=50.0,
        description="A shown age group changes only when the smoothed age is this many years past "
        "the group's boundary. 2: a person near 30 does not alternate between 20-29 and 30-39.",
    )

    def _check(self) -> None:
        if self.max_samples < self.min_samples:
            raise _BadValue("max_samples", f"must be >= min_samples ({self.min_samples}), or labels never show",
                            self.max_samples)
