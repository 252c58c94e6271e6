"""The worker: motion gate -> analysis (or reuse, marked stale) -> overlay, for one frame at a time.

It owns no thread and no window: ``app.run`` feeds it frames from the capture queue and hands its
output to the sinks. Its ``RunStats`` (``streamer.stats``) collect what the HUD and the summary report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .audience import Audience, sightings_of
from .audience.tally import AudienceTally
from .boxes import at_frame_edge, box_iou, box_tuple, clipped, covered_share, scaled_about_centre
from .classifiers.align import yaw_ratio
from .detectors import FaceDetector
from .picture.anonymize import Anonymizer
from .picture.draw import LabelStyle, draw_faces, draw_hud
from .picture.grey import GreyFrame
from .picture.regions import RegionOverlay
from .pipeline import FaceAnalyzer
from .report.tally import PeopleTally
from .stats import RunStats
from .tracking.appearance import appearance_of
from .tracking.flow import BoxFlow
from .tracking.motion import CutDetector, MotionGate
from .tracking.track import Track
from .tracking.tracker import Tracker
from .types import Detections, Face, Frame, FrameResult, GateDecision

# A tracked face's box grown by this share of its size per side still counts as "that face
# moving" for the motion gate: a head turn or nod stays within it.
_TRACKED_MOTION_MARGIN = 0.25
# A face at 64 px whose Laplacian varies this much is sharp (a webcam face in focus measures
# 100-400); motion blur or defocus drops it towards 10.
_SHARP_LAPLACIAN_VAR = 100.0
# A sample from a face turned as far as classifier.max_yaw counts this much of a frontal one.
_TURNED_QUALITY = 0.3
# A face moving this many of its widths per frame is smeared by a webcam's exposure (about half
# the frame time indoors) by ~2.5 % of its width, ~1.5 px of the age network's 64 px chip: about
# the detector's landmark noise. Faster (walking in or out: 0.05-0.15) views read 6 years from the
# person's steady views on the queue bench, against 3 (docs/tracking.md), so they wait for a
# steady one, and weigh 1 / (1 + (speed / _STEADY_SPEED)^2) when taken.
_STEADY_SPEED = 0.05
# A face cut by the frame's edge (walking in or out) loses part of its chip: such views read 14
# years from the person's steady views on the queue bench; their weight, about the ratio of variances.
_CUT_QUALITY = 0.1
# A face found by a look at a track's region is that track's face only if it overlaps its box this
# much; less is a neighbour or a newcomer, left to the next full-frame run.
_LOOK_MIN_IOU = 0.2
# A mask detector's face lying this much inside a face the main detector holds is that face, masked
# already; one reaching beyond it (the chin under a box that lags a turn, the back of a head in
# profile) is masked too. (An overlap rule, IoU 0.3, dropped exactly those: they leaked.)
_MASK_COVERED_SHARE = 0.9


def _detection(track: Track) -> Detections:
    """The track's detection on this frame (callers keep only tracks detected on it)."""
    assert track.detection is not None
    return track.detection


def steady_views(shape_hw: Tuple[int, int], detections: Detections, speeds: Sequence[Optional[float]]) -> np.ndarray:
    """Bool mask ``(N,)`` of faces worth a classifier sample now: inside the frame (not cut by its
    edge) and moving at most _STEADY_SPEED of their width per frame (``speeds``: each face's
    ``Track.speed``; None, not known yet, is not steady)."""
    inside = ~at_frame_edge(detections.xyxy, shape_hw)
    slow = np.array([speed is not None and speed <= _STEADY_SPEED for speed in speeds], bool).reshape(-1)
    return inside & slow


def sample_quality(bgr: np.ndarray, detections: Detections, max_yaw: Optional[float],
                   speeds: Optional[Sequence[Optional[float]]] = None) -> np.ndarray:
    """How much to trust a classifier sample of each face, ``(N,)`` in (0, 1]: sharpness (the
    variance of the Laplacian of the face at 64 px, full marks from _SHARP_LAPLACIAN_VAR) times
    frontalness (1 for a frontal face, falling to _TURNED_QUALITY at ``max_yaw``), times
    _CUT_QUALITY for a face cut by the frame's edge and a motion factor from ``speeds`` (each
    face's ``Track.speed``, face widths per frame; None: not known)."""
    quality = np.ones(len(detections), np.float32)
    quality[at_frame_edge(detections.xyxy, bgr.shape[:2])] *= _CUT_QUALITY
    for i, speed in enumerate(speeds if speeds is not None else ()):
        if speed is not None:
            quality[i] /= 1.0 + (speed / _STEADY_SPEED) ** 2
    h, w = bgr.shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(detections.xyxy):
        left, top, right, bottom = int(max(0, x1)), int(max(0, y1)), int(min(w, x2)), int(min(h, y2))
        if right - left < 4 or bottom - top < 4:
            continue
        grey = cv2.cvtColor(cv2.resize(bgr[top:bottom, left:right], (64, 64), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)
        sharpness = float(cv2.Laplacian(grey, cv2.CV_32F).var())
        quality[i] *= min(1.0, max(sharpness / _SHARP_LAPLACIAN_VAR, 0.1))
    if max_yaw is not None and detections.landmarks_xy is not None and len(detections):
        turn = np.clip(np.abs(yaw_ratio(detections.landmarks_xy)) / max_yaw, 0.0, 1.0)
        quality *= 1.0 - (1.0 - _TURNED_QUALITY) * turn
    return quality


@dataclass(frozen=True)
class Finding:
    """How the worker finds and follows faces: the models, the motion gate (None: every frame is
    analysed), the tracker (None: no ids, labels per frame) and the optical flow that moves its
    boxes between detections, with the share of a face's size a region look grows by."""

    analyzer: FaceAnalyzer
    gate: Optional[MotionGate] = None
    tracker: Optional[Tracker] = None
    flow: Optional[BoxFlow] = None
    region_grow: float = 0.75


@dataclass(frozen=True)
class PictureSpec:
    """What the output frames show. ``anonymizer``: faces hidden before the overlay (and so before
    any sink), with ``mask_detector`` (``output.anonymize_detector``) finding the faces the main
    detector misses, at most every ``mask_interval_s``, its boxes scaled ``mask_grow`` about their
    centres; ``labels``: boxes and labels drawn;
    ``pictures``: False (``--privacy aggregate``) draws nothing at all; ``hud``: the stats line;
    ``regions``: the audience's zones and lines drawn (``audience.draw``); ``in_place``: draw on
    the frame's own pixels (``Frame.bgr`` becomes the annotated picture), for a caller that keeps
    no clean copy of it: a frame's copy and its memory saved per frame."""

    hud: bool = False
    label_style: LabelStyle = LabelStyle()
    labels: bool = True
    pictures: bool = True
    anonymizer: Optional[Anonymizer] = None
    mask_detector: Optional[FaceDetector] = None
    mask_interval_s: float = 0.0
    mask_grow: float = 1.0
    regions: Optional[RegionOverlay] = None
    in_place: bool = False


class Worker:
    """Runs the models on the frames that need them and draws every frame.

    Without a tracker, every frame the gate lets through is analysed in full (detect + classify
    each face) and the others reuse the last faces, marked stale. With a tracker, the detector
    runs on gated frames (and every few frames while faces are in view), boxes in between come
    from the tracker, and each person is classified only on its schedule; labels are smoothed
    per track.
    """

    def __init__(self, *, finding: Finding, picture: PictureSpec = PictureSpec(),
                 people: Optional[PeopleTally] = None, audience: Optional[Audience] = None,
                 audience_tally: Optional[AudienceTally] = None) -> None:
        """``finding``: how faces are found and followed; ``picture``: what the output frames show;
        ``people``: counts each ended person for the summary (constant memory: a camera that runs
        for months sees people without end); ``audience``: zones, lines and attention of the
        tracked people (its records counted by ``audience_tally`` for the summary)."""
        self.analyzer, self.gate, self.tracker = finding.analyzer, finding.gate, finding.tracker
        self.flow, self.region_grow = finding.flow, finding.region_grow
        self.anonymizer, self.labels, self.pictures = picture.anonymizer, picture.labels, picture.pictures
        self.label_style, self.hud = picture.label_style, picture.hud
        self.regions = picture.regions
        self.in_place = picture.in_place
        # The mask detector runs with the full-frame detector (at most every mask_interval_s), its
        # faces masked until its next run, never tracked; _mask_boxes holds its latest (N, 4) boxes.
        self.mask_detector = picture.mask_detector if picture.anonymizer is not None else None
        self.mask_interval_s = picture.mask_interval_s
        self._mask_boxes = np.zeros((0, 4), np.float32)
        # mask_grow: the mask detector's boxes scaled by this about their centres (they are not
        # tracked, so they do not follow a face between runs; in the dark they cover part of a face).
        self.mask_grow = picture.mask_grow
        self._mask_t_s: Optional[float] = None  # when the mask detector last ran (frame time)
        self._cuts = CutDetector()
        self._turned: Dict[int, bool] = {}  # track id -> its latest detection was turned away
        self.stats = RunStats()
        self.people = people
        self.audience, self.audience_tally = (audience, audience_tally) if finding.tracker is not None else (None, None)
        self._records: List[dict] = []
        self._record_base: dict = {}  # source, frame and t_s of the latest frame, for end-of-run records
        self._labels_sent: Dict[int, Tuple[Optional[str], Optional[str]]] = {}  # track id -> labels in its last record
        self._last_faces: Tuple[Face, ...] = ()
        self._last_analysed_index: Optional[int] = None
        self._last_model_ms = 0.0  # shown on the HUD until the models run again

    def process(self, frame: Frame, dropped: int = 0) -> Tuple[FrameResult, Optional[np.ndarray]]:
        """The result for ``frame`` and its annotated copy ((H, W, 3) uint8 BGR; None when the
        run keeps no pictures)."""
        stats = self.stats
        stats.mark_in(frame.index, frame.t_s)
        timings: Dict[str, float] = {}
        decision: Optional[GateDecision] = None
        gate_open = True
        grey: Optional[GreyFrame] = None
        if self.gate is not None or self.tracker is not None:
            t0 = time.perf_counter()
            grey = GreyFrame.of(frame.bgr)  # one conversion, shared by the gate, the cut detector and the flow
            timings["grey"] = (time.perf_counter() - t0) * 1000.0
        if self.gate is not None:
            assert grey is not None
            t0 = time.perf_counter()
            ignore = None
            if self.tracker is not None:
                # Motion on a face already tracked (talking, nodding) is the tracker's job; only
                # motion elsewhere (someone new) needs the detector before its schedule.
                ignore = grey.to_grey(self.tracker.shown_boxes(grow=_TRACKED_MOTION_MARGIN))
            decision = self.gate.update(grey.grey, frame.index, ignore)
            timings["gate"] = (time.perf_counter() - t0) * 1000.0
            gate_open = decision.analyse
        if self.tracker is not None:
            assert grey is not None
            cut = self._cuts.update(grey.grey) or (decision is not None and decision.reason == "recalibrate")
            faces, analysed = self._tracked(frame, grey, gate_open, cut, timings)
        elif gate_open or self._last_analysed_index is None:
            faces, model_ms = self.analyzer.analyse(frame.bgr)
            timings.update(model_ms)
            stats.faces_classified += sum(face.classified for face in faces)
            self._last_faces, analysed = faces, True
            self._look_for_masks(frame, timings)
        else:
            faces, analysed = self._last_faces, False
        if analysed:
            self._last_analysed_index = frame.index
            stats.analysed += 1
        else:
            stats.skipped += 1
        stale = not analysed
        since = 0 if analysed else frame.index - (self._last_analysed_index or 0)
        if "detect" in timings:
            self._last_model_ms = timings["detect"] + timings.get("classify", 0.0)
        annotated = self._picture(frame, faces, stale, dropped, timings) if self.pictures else None
        for stage, ms in timings.items():
            stats.add_ms(stage, ms)
        result = FrameResult(
            frame=frame, faces=faces, stale=stale, frames_since_analysis=since, gate=decision, timings_ms=timings
        )
        return result, annotated

    def _picture(self, frame: Frame, faces: Tuple[Face, ...], stale: bool, dropped: int,
                 timings: Dict[str, float]) -> np.ndarray:
        """The annotated frame (a copy unless ``in_place``): faces hidden first when anonymizing,
        then the overlay."""
        picture = frame.bgr
        own = self.in_place  # may ``picture`` be drawn on
        if self.anonymizer is not None:
            t0 = time.perf_counter()
            live_xyxy = self._face_boxes_to_mask(faces)
            if len(self._mask_boxes):
                live_xyxy = np.concatenate([live_xyxy, self._mask_boxes])
            boxes = self.anonymizer.update(frame.index, live_xyxy)
            picture, own = self.anonymizer.apply(picture, boxes), True
            timings["anonymize"] = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        if self.regions is not None:  # under the face labels, which must stay readable
            canvas = picture if own and picture.flags.c_contiguous else picture.copy()
            picture, own = self.regions.draw(canvas, self.audience.occupancy() if self.audience is not None else {}), True
        annotated = draw_faces(picture, faces if self.labels else (), stale=stale, style=self.label_style, in_place=own)
        if self.hud:
            draw_hud(annotated, self.hud_lines(dropped))
        timings["draw"] = (time.perf_counter() - t0) * 1000.0
        return annotated

    def _look_for_masks(self, frame: Frame, timings: Dict[str, float], force: bool = False) -> None:
        """Run the mask detector on a frame the full-frame detector ran on, at most every
        ``mask_interval_s`` (always after a cut, ``force``): its faces that no face of the main
        detector already covers are masked until its next run."""
        if self.mask_detector is None:
            return
        t_s = frame.pos_s if frame.pos_s is not None else frame.t_s
        if not force and self._mask_t_s is not None and 0.0 <= t_s - self._mask_t_s < self.mask_interval_s:
            return
        self._mask_t_s = t_s
        t0 = time.perf_counter()
        found = scaled_about_centre(self.mask_detector.detect(frame.bgr).xyxy, self.mask_grow)
        # Only what will be masked counts as known: a track the tracker holds but hides (missed
        # checks) is not masked, and the mask detector's face on it must be. The grown box is
        # compared: grown, a face's box often reaches the chin a lagging track box leaves out.
        known = self._face_boxes_to_mask(self._last_faces)
        if len(found) and len(known):
            found = found[covered_share(found, known) < _MASK_COVERED_SHARE]
        self._mask_boxes = found
        timings["mask_detect"] = (time.perf_counter() - t0) * 1000.0

    def _face_boxes_to_mask(self, faces: Tuple[Face, ...]) -> np.ndarray:
        """``(N, 4)`` float32: the main detector's face boxes the anonymizer masks on this frame:
        with a tracker every box it holds that is shown or not yet confirmed (a newcomer is hidden
        before it is shown; boxes that went are held by the anonymizer for a few frames), else
        ``faces``."""
        if self.tracker is not None:
            live = [track.xyxy for track in self.tracker.tracks if track.shown or not track.confirmed]
        else:
            live = [face.xyxy for face in faces]
        return np.array(live, np.float32).reshape(-1, 4)

    def _tracked(
        self, frame: Frame, grey: GreyFrame, gate_open: bool, cut: bool, timings: Dict[str, float]
    ) -> Tuple[Tuple[Face, ...], bool]:
        """Faces from the tracker; True when the full-frame detector ran on this frame. ``grey``:
        the frame's grey picture; ``cut``: the whole picture changed (the gate's "recalibrate")."""
        tracker, analyzer, flow = self.tracker, self.analyzer, self.flow
        assert tracker is not None
        # File time when there is one: decoding faster than real time must not shrink the
        # tracker's seconds-based limits.
        t_s = frame.pos_s if frame.pos_s is not None else frame.t_s
        bgr = frame.bgr
        if flow is not None:
            t0 = time.perf_counter()
            flow.next_frame(grey)
            timings["flow"] = (time.perf_counter() - t0) * 1000.0

        def move(track: Track) -> Optional[np.ndarray]:
            assert flow is not None
            t0 = time.perf_counter()
            moved = flow.follow(track.id, track.xyxy)
            timings["flow"] = timings.get("flow", 0.0) + (time.perf_counter() - t0) * 1000.0
            return moved

        def look(track: Track) -> Optional[Tuple[Detections, Optional[np.ndarray]]]:
            t0 = time.perf_counter()
            found = analyzer.detect_near(bgr, track.xyxy, self.region_grow)
            timings["look"] = timings.get("look", 0.0) + (time.perf_counter() - t0) * 1000.0
            if not len(found):
                return None
            overlap = box_iou(track.xyxy, found.xyxy)[0]
            best = int(np.argmax(overlap))
            if overlap[best] < _LOOK_MIN_IOU:
                return None  # a face nearby, but not this one (a neighbour, or someone new)
            row = found[np.array([best])]
            return row, appearance_of(bgr, row.xyxy[0])

        detected = cut or tracker.detect_due(frame.index, t_s, gate_open)
        if detected:
            t0 = time.perf_counter()
            detections = analyzer.detect(bgr)
            timings["detect"] = (time.perf_counter() - t0) * 1000.0
            appearances = [appearance_of(bgr, xyxy) for xyxy in detections.xyxy]
            tracks = tracker.update(
                detections, frame.index, t_s, appearances, look if flow is not None else None, cut=cut
            )
            self._look_for_masks(frame, timings, force=cut)
        elif flow is not None:
            tracks = tracker.follow(frame.index, t_s, move, look)
        else:
            tracks = tracker.predict(frame.index, t_s)
        if flow is not None:
            t0 = time.perf_counter()
            alive = set()
            for track in tracker.tracks:
                alive.add(track.id)
                if track.detection is not None:
                    flow.seed(track.id, track.xyxy)
            for key in flow.keys():
                if key not in alive:
                    flow.forget(key)
            timings["flow"] += (time.perf_counter() - t0) * 1000.0
        self._classify_due(bgr, frame.index, t_s, timings)
        self._collect_records(frame, t_s)
        boxes = clipped(np.array([track.xyxy for track in tracks], np.float32).reshape(-1, 4), bgr.shape[:2])
        small = analyzer.too_small(boxes)
        faces = []
        for track, box, box_small in zip(tracks, boxes, small):
            ready = track.labels.label_ready
            shows_gender = ready and self._shows_gender(track)
            zones, looking = self.audience.state(track.id) if self.audience is not None else ((), None)
            faces.append(
                Face(
                    xyxy=box_tuple(box),
                    score=track.score,
                    gender=track.labels.gender if shows_gender else None,
                    gender_p=track.labels.gender_p if shows_gender else None,
                    age=track.labels.age_years if ready else None,
                    age_group=track.labels.age_group if ready else None,
                    classified=ready,
                    track=track.id,
                    too_small=not ready and bool(box_small),  # a labelled person stays labelled further away
                    age_range=track.labels.age_range if ready else None,
                    turned=not ready and self._turned.get(track.id, False),
                    zones=zones if self.audience is not None and self.audience.zone_names else None,
                    looking=looking,
                )
            )
        return tuple(faces), detected

    def _classify_due(self, bgr: np.ndarray, frame_index: int, t_s: float, timings: Dict[str, float]) -> None:
        """Classify the tracks detected on this frame whose schedule says so, in one batch, except
        faces too small or turned away (a turned face's label would be a guess: it waits)."""
        tracker, analyzer = self.tracker, self.analyzer
        assert tracker is not None
        detected = [track for track in tracker.tracks if track.detection is not None]
        if detected:
            turned = analyzer.turned(Detections.concat([_detection(track) for track in detected]))
            self._turned.update((track.id, bool(away)) for track, away in zip(detected, turned))
        steady = steady_views(bgr.shape[:2], Detections.concat([_detection(track) for track in detected]),
                              [track.speed for track in detected]) if detected else np.zeros(0, bool)
        due = [track for track, ok in zip(detected, steady)
               if tracker.needs_classification(track, frame_index, t_s, steady=bool(ok))]
        if not due:
            return
        detections = Detections.concat([_detection(track) for track in due])
        big = analyzer.classifiable(detections)
        if not big.any():
            return
        due, detections = [track for track, ok in zip(due, big) if ok], detections[big]
        t0 = time.perf_counter()
        labels = analyzer.classify(bgr, detections)
        timings["classify"] = (time.perf_counter() - t0) * 1000.0
        self.stats.faces_classified += len(due)
        quality = sample_quality(bgr, detections, analyzer.max_yaw, [track.speed for track in due])
        for i, track in enumerate(due):
            x1, y1, x2, y2 = detections.xyxy[i]
            low, high = (float(v) for v in labels.age_range[i])
            track.add_sample(
                float(labels.p_male[i]), float(labels.age_years[i]), float(min(x2 - x1, y2 - y1)), track.score,
                quality=float(quality[i]), age_range=None if np.isnan(low) else (low, high),
            )
        # After the whole batch: two faces that crossed contradict their tracks on the same frame,
        # and the tracker can only tell a swap from a newcomer when both samples are in.
        for track in due:
            if track.labels.changed_person:
                tracker.split(track, frame_index, t_s)

    def _shows_gender(self, track: Track) -> bool:
        """A child's gender stays unshown below the analyzer's confidence, as in photos: on the
        overlay, in the events and in the track records alike."""
        fused = track.labels
        return (fused.p_male is not None and fused.age_years is not None
                and self.analyzer.shown_gender(fused.p_male, fused.age_years) is not None)

    def _record(self, track: Track) -> dict:
        """``track.to_record()`` with the gender left out where ``_shows_gender`` says so."""
        record = track.to_record()
        if record.get("gender") is not None and not self._shows_gender(track):
            record.update(gender=None, gender_p=None)
        return record

    def _collect_records(self, frame: Frame, t_s: float) -> None:
        tracker = self.tracker
        assert tracker is not None
        base = {"source": frame.source, "frame": frame.index, "t_s": round(t_s, 4), **frame.clock()}
        self._record_base = base
        for track in tracker.pop_new():
            self._records.append({"event": "new", **base, "track": track.id})
        for track in tracker.tracks:
            # "update": a person's shown labels settled or changed (what a dashboard shows).
            if not (track.shown and track.labels.label_ready):
                continue
            record = self._record(track)
            labels = (record["gender"], record["age_group"])
            if self._labels_sent.get(track.id) != labels:
                self._labels_sent[track.id] = labels
                self._records.append({"event": "update", **base, **record})
        if self.audience is not None:
            shown = [track for track in tracker.tracks if track.shown]
            self._audience_records(self.audience.update(t_s, frame.shape_hw, sightings_of(shown)), base)
        for track in tracker.pop_ended():
            self._end(track, base)

    def _end(self, track: Track, base: dict) -> None:
        self._turned.pop(track.id, None)
        self._labels_sent.pop(track.id, None)
        record = self._record(track)
        if self.audience is not None:
            # The person's open zone visits end before the person does.
            exits, fields = self.audience.end(track.id, base["t_s"])
            self._audience_records(exits, base)
            record.update(fields)
        if self.people is not None:
            self.people.add(record)
        end = {"event": "end", **base, **record}
        if self.audience_tally is not None:
            self.audience_tally.add(end)
        self._records.append(end)

    def _audience_records(self, records: List[dict], base: dict) -> None:
        """``zone_enter`` / ``zone_exit`` / ``line_cross`` records, stamped like the track records."""
        for body in records:
            record = {"event": body["event"], **base, **body}
            if self.audience_tally is not None:
                self.audience_tally.add(record)
            self._records.append(record)

    def pop_records(self) -> List[dict]:
        """Track ``new`` / ``update`` / ``end`` records, and the audience's ``zone_enter`` /
        ``zone_exit`` / ``line_cross``, since the last call (events schema)."""
        records, self._records = self._records, []
        return records

    def finish(self) -> List[dict]:
        """End every open track (end of run); their ``end`` records, stamped with the last frame
        seen, like those of tracks that end mid-run."""
        if self.tracker is None:
            return []
        for track in self.tracker.end_all():
            self._end(track, self._record_base)
        return self.pop_records()

    def hud_lines(self, dropped: int) -> List[str]:
        stats = self.stats
        total = stats.analysed + stats.skipped
        skipped_pct = 100.0 * stats.skipped / total if total else 0.0
        return [
            f"fps in {stats.fps_in:.1f} out {stats.fps_out:.1f}",
            f"model {self._last_model_ms:.0f}ms skip {skipped_pct:.0f}% drop {dropped}",
        ]
