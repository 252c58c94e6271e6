"""A light face tracker: stable ids, and when each person is classified.

A face keeps a track id while it stays in view (association by IoU, colour and looks at its
region; scene cuts end every track); the classifiers run on a track at first sight and then only
every few frames (or when the face grew), and each track's :class:`~streamer.tracking.labels.PersonLabels`
fuses the results. Pure numpy, no threads: the worker owns the :class:`Tracker` and calls it in order.

Boxes are ``xyxy`` float32 frame pixels (x2/y2 exclusive), ``t_s`` seconds (monotonic, or media time
for files), ``frame_index`` the frame's index in its source. One ``Tracker`` per source.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..boxes import box_area as _area
from ..boxes import box_iou
from ..config import TrackingConfig
from ..types import Detections
from .appearance import appearance_distance
from .labels import AgeGroups
from .track import Track

logger = logging.getLogger(__name__)

# A detection that overlaps a track's box this much is that face, whatever else says otherwise.
_SAME_FACE_IOU = 0.5
# A newly confirmed face overlapping a hidden track's last box this much has taken its place.
_DISPLACED_IOU = 0.3
# A look at consecutive frames does not find a face this much larger or smaller than the box.
_MAX_LOOK_AREA_RATIO = 1.6
# A detection and a track whose box areas differ by more than this factor are not the same face
# in consecutive looks (a face a metre nearer is ~1.5x the side, ~2.3x the area).
_MAX_AREA_RATIO = 3.0


Look = Callable[[Track], Optional[Tuple[Detections, Optional[np.ndarray]]]]
Move = Callable[[Track], Optional[np.ndarray]]


class Tracker:
    """Associates detections with tracks, follows them between detector runs on image evidence,
    and schedules the detector and the classifiers.

    ``Tracker(cfg, age_groups)``: ``age_groups`` are ``ClassifierConfig.age_groups`` (inclusive
    ``[lo, hi]`` years). Per frame the worker calls :meth:`detect_due`; then :meth:`update` with the
    full-frame detections when the detector ran, else :meth:`follow` with the flow's answer (or
    :meth:`predict` without flow); then :meth:`needs_classification` per returned track and
    :meth:`Track.add_sample` with the result. Both take ``look``: a callback that runs the detector
    on a track's region and returns ``(one-row Detections, appearance)`` or None; it is asked for
    tracks that a full-frame run missed, whose flow was lost, that are in doubt (missed before) or
    still tentative, so a box that no longer holds a face disappears within ``max_missed`` frames
    and a newcomer is confirmed on the next frame. :meth:`pop_new` / :meth:`pop_ended` give the
    tracks for ``new`` / ``end`` records; :meth:`end_all` closes the run. Only confirmed tracks are
    returned (shown), recorded and counted as people.
    """

    def __init__(self, cfg: TrackingConfig, age_groups: AgeGroups) -> None:
        if not age_groups:
            raise ValueError("Tracker age_groups: expected ClassifierConfig.age_groups (non-empty), got none")
        self._cfg = cfg
        self._groups = tuple((int(lo), int(hi)) for lo, hi in age_groups)
        self._tracks: List[Track] = []
        self._next_id = 1
        self._new: List[Track] = []
        self._ended: List[Track] = []
        self._last_frame: Optional[int] = None
        self._last_detect_frame: Optional[int] = None
        self._last_detect_t_s: Optional[float] = None
        self._gone: set = set()  # ids ended while the track list was being walked

    @property
    def tracks(self) -> List[Track]:
        """Every track not ended, shown, hidden or tentative, by id."""
        return list(self._tracks)

    def shown_boxes(self, grow: float = 0.0) -> np.ndarray:
        """``(N, 4)`` float32 boxes of the tracks on screen, each side pushed out by ``grow`` times
        the box's width/height (for the motion gate's ignore regions)."""
        boxes = [tr.xyxy for tr in self._shown()]
        if not boxes:
            return np.zeros((0, 4), np.float32)
        xyxy = np.stack(boxes).astype(np.float32)
        wh = np.concatenate([xyxy[:, 2:] - xyxy[:, :2]] * 2, axis=1)
        return xyxy + grow * wh * np.array([-1, -1, 1, 1], np.float32)

    def update(
        self,
        detections: Detections,
        frame_index: int,
        t_s: float,
        appearances: Optional[Sequence[Optional[np.ndarray]]] = None,
        look: Optional[Look] = None,
        cut: bool = False,
    ) -> List[Track]:
        """Match this frame's full-frame detections to tracks; returns the shown tracks by id.

        ``appearances``: one histogram (or None) per detection. A detection that matches no track
        starts a tentative one; a track that matches none is looked for in its region (``look``)
        and counts a miss if not found there; a tentative track that misses is dropped; a track not
        detected for ``max_age_s`` ends. ``cut``: the whole picture changed (a cut in a film, the
        camera switched or swung round): every track ends now, and the faces of the new picture
        start new ones, so that nobody in it takes the id (and the labels) of somebody from the old
        one. A cut to a closer shot of the same person gives them a new id: the lesser error.
        """
        self._advance(frame_index, t_s)
        boxes = np.asarray(detections.xyxy, np.float32).reshape(-1, 4)
        apps = list(appearances) if appearances is not None else [None] * len(boxes)
        matched_dets = set()
        matched_tracks = set()
        for ti, di in ([] if cut else self._match(boxes, apps, frame_index)):
            self._tracks[ti].hit(detections[np.array([di])], frame_index, t_s, apps[di])
            matched_tracks.add(ti)
            matched_dets.add(di)
        kept: List[Track] = []
        for ti, track in enumerate(self._tracks):
            if ti in matched_tracks:
                self._maybe_confirm(track)
                kept.append(track)
            elif cut:
                if track.confirmed:
                    logger.debug("track %s ended by a cut", track.id)
                    self._ended.append(track)
            elif track.confirmed and not track.shown:
                track.miss()  # hidden: its old box says little of where to look
                kept.append(track)
            elif self._check(track, frame_index, t_s, look):
                self._maybe_confirm(track)
                kept.append(track)
        for di in range(len(boxes)):
            if di not in matched_dets and not self._covered(boxes[di], kept):
                track = Track(self._next_id, boxes[di], frame_index, t_s, self._cfg, self._groups)
                track.detection, track.score, track.appearance = detections[np.array([di])], float(detections.confidence[di]), apps[di]
                self._next_id += 1
                self._maybe_confirm(track)
                kept.append(track)
        self._tracks = sorted(kept, key=lambda tr: tr.id)
        self._last_detect_frame, self._last_detect_t_s = frame_index, t_s
        self._drop_gone()
        self._resolve_overlaps()
        return self._shown()

    def follow(self, frame_index: int, t_s: float, move: Move, look: Optional[Look] = None) -> List[Track]:
        """For a frame where the full-frame detector did not run: each shown or tentative track is
        moved where ``move`` (optical flow) says, and looked for in its region when the flow is lost,
        when it is in doubt or tentative, or when it was last detected ``verify_every_frames`` ago
        (``settled_verify_every_frames`` once its labels take no more samples; flow can hold on to
        a patch the face has left). Returns the shown tracks by id."""
        self._advance(frame_index, t_s)
        kept: List[Track] = []
        for track in self._tracks:
            if not track.shown and track.confirmed:
                kept.append(track)  # hidden: waits for a full-frame detection, or for max_age_s
                continue
            moved = move(track)
            every = self._cfg.settled_verify_every_frames if self._labels_done(track) else self._cfg.verify_every_frames
            verified = frame_index - track.last_frame < every
            if moved is not None and track.missed == 0 and track.confirmed and verified:
                track.moved(moved, frame_index)
            else:
                if moved is not None:
                    track.moved(moved, frame_index)
                if not self._check(track, frame_index, t_s, look):
                    continue
                self._maybe_confirm(track)
            kept.append(track)
        self._tracks = kept
        self._drop_gone()
        self._resolve_overlaps()
        return self._shown()

    def predict(self, frame_index: int, t_s: float) -> List[Track]:
        """For a frame where the detector did not run and nothing follows the faces: the shown
        tracks by id, boxes where they were last seen. ``missed`` is unchanged."""
        self._advance(frame_index, t_s)
        return self._shown()

    def _check(self, track: Track, frame_index: int, t_s: float, look: Optional[Look]) -> bool:
        """Look for a track's face in its region; False when the track is to be dropped (tentative
        and not found)."""
        found = look(track) if look is not None else None
        if found is not None and self._plausible(track, *found):
            detection, appearance = found
            track.hit(detection, frame_index, t_s, appearance)
            return True
        track.miss()
        if not track.confirmed:
            logger.debug("track %s dropped: tentative and not found again", track.id)
            return False
        return True

    def detect_due(self, frame_index: int, t_s: float, gate_open: bool) -> bool:
        """Run the detector on this frame? With no face on screen: when the motion gate is open.
        While tracks are shown: when the gate is open, at most every ``detect_min_frames`` frames
        (``classify_every_frames`` while a shown track has fewer than ``min_samples`` samples),
        and at least every ``detect_every_frames`` frames or ``detect_every_s`` seconds."""
        shown = self._shown()
        if not shown:
            return gate_open
        if gate_open:
            # Motion away from the tracked faces (a moving background, or someone new): detect,
            # but not on every frame while faces are being followed anyway. While someone still
            # shows "analysing...", as often as their next classifier sample is due (samples are
            # taken on detected boxes only), so labels appear as soon as without the throttle.
            gap = self._cfg.detect_min_frames
            if not all(track.labels.label_ready for track in shown):
                gap = min(gap, self._cfg.classify_every_frames)
            return self._last_detect_frame is None or frame_index - self._last_detect_frame >= gap
        if self._last_detect_frame is None or self._last_detect_t_s is None:
            return True
        return (
            frame_index - self._last_detect_frame >= self._cfg.detect_every_frames
            or t_s - self._last_detect_t_s >= self._cfg.detect_every_s
        )

    def needs_classification(self, track: Track, frame_index: int, t_s: float, steady: bool = True) -> bool:
        """Run the classifiers on this track now? Only on a face detected on this frame (a box moved
        by flow has no landmarks; otherwise the track's fused labels are reused). Due when the face
        came into view (first sight, or back after being hidden), then every
        ``classify_every_frames`` frames or ``classify_every_s`` seconds, or early when its box area
        grew ``regrow_ratio`` times. No more after ``max_samples`` samples or once the person is
        ``settled``, except to check who it is: when the face is back after being hidden (at a
        counter, the next person steps into the spot) and after a sample that contradicted the
        person's labels. ``steady``: the view is worth a sample (inside the frame, not moving fast:
        the worker's ``steady_views``); an unsteady view is taken only when no steady one came for
        ``classify_every_s`` (someone who never stops is still labelled)."""
        cfg = self._cfg
        labels = track.labels
        if track.detection is None or track.last_frame != frame_index:
            return False
        if labels.last_sample_frame is None or labels.last_sample_t_s is None:
            # First sight. A face that keeps being lost and found is timed from when it was first
            # seen, or an unsteady one would wait for ever.
            return steady or t_s - track.first_t_s >= cfg.classify_every_s
        if labels.label_ready and labels.last_sample_frame < track.view_frame:
            # Back after being hidden: is it still the same person? On a steady view, or on what
            # there is once it has been back classify_every_s.
            if steady or t_s - track.view_t_s >= cfg.classify_every_s:
                return True
        if self._labels_done(track):
            return False
        waited = t_s - labels.last_sample_t_s >= cfg.classify_every_s
        if not (steady or waited):
            return False
        if waited:
            return True
        if frame_index - labels.last_sample_frame >= cfg.classify_every_frames:
            return True
        area = float(_area(track.xyxy))
        return labels.last_sample_area > 0 and area >= cfg.regrow_ratio * labels.last_sample_area

    def _labels_done(self, track: Track) -> bool:
        """The person's labels take no more samples (settled, or ``max_samples`` reached), unless
        the latest one contradicted them."""
        labels = track.labels
        return (labels.samples >= self._cfg.max_samples or labels.settled) and not labels.contradicted

    def split(self, track: Track, frame_index: int, t_s: float) -> Track:
        """Someone else is in ``track``'s box (``PersonLabels.changed_person``): end it and start a new,
        confirmed track on the same box, labelled from the samples that gave the change away; returns
        the track now on the box. When that someone is the person of another shown track whose own
        latest sample is this track's person, two faces crossed and their boxes were swapped: the two
        tracks trade labels instead, and nobody is counted twice."""
        for other in self._shown():
            if other is not track and track.labels.explains(other.labels) and other.labels.explains(track.labels):
                mine, theirs = track.labels.take_contradicting(), other.labels.take_contradicting()
                track.labels, other.labels = other.labels, track.labels
                track.labels.adopt(mine)
                other.labels.adopt(theirs)
                logger.debug("tracks %s and %s trade labels: their faces crossed", track.id, other.id)
                return track
        self._tracks.remove(track)
        if track.confirmed:
            self._ended.append(track)
        new = Track(self._next_id, track.xyxy, frame_index, t_s, self._cfg, self._groups)
        self._next_id += 1
        new.detection, new.score, new.appearance = track.detection, track.score, None
        new.hits = max(new.hits, self._cfg.min_hits)
        new.labels.adopt(track.labels.take_contradicting())
        self._maybe_confirm(new)
        self._tracks = sorted(self._tracks + [new], key=lambda tr: tr.id)
        self._drop_gone()
        logger.debug("track %s split: %s is someone else", track.id, new.id)
        return new

    def pop_new(self) -> List[Track]:
        """Tracks confirmed since the last call (for ``new`` records), by id."""
        new, self._new = self._new, []
        return new

    def pop_ended(self) -> List[Track]:
        """Confirmed tracks ended since the last call (for ``end`` records), by id."""
        ended, self._ended = self._ended, []
        return sorted(ended, key=lambda tr: tr.id)

    def end_all(self) -> List[Track]:
        """End every remaining track (end of the run) and return all ended tracks not yet popped."""
        for track in self._tracks:
            if track.confirmed:
                self._ended.append(track)
        self._tracks = []
        return self.pop_ended()

    # --- internals ---

    def _advance(self, frame_index: int, t_s: float) -> None:
        if self._last_frame is not None and frame_index < self._last_frame:
            raise ValueError(
                f"Tracker frame_index went back from {self._last_frame} to {frame_index}; "
                "frames must come in order: use a new Tracker for a new source"
            )
        self._last_frame = frame_index
        alive: List[Track] = []
        for track in self._tracks:
            track.detection = None
            if t_s - track.last_t_s > self._cfg.max_age_s:
                logger.debug("track %s ended after %.1f s unseen", track.id, t_s - track.last_t_s)
                if track.confirmed:
                    self._ended.append(track)
            else:
                alive.append(track)
        self._tracks = alive

    def _plausible(self, track: Track, detection: Detections, appearance: Optional[np.ndarray]) -> bool:
        """Is the face a look found near ``track`` that track's face? Not when it is about the
        size of another shown track's box there (one face passing in front of another: the hidden
        one's look finds the front one), when its size jumped (a look compares consecutive frames),
        or when its colours veto it."""
        xyxy = detection.xyxy[0]
        others = [tr.xyxy for tr in self._shown() if tr is not track]
        if others and (box_iou(xyxy, np.stack(others))[0] >= _SAME_FACE_IOU).any():
            return False
        ratio = float(_area(xyxy)) / max(float(_area(track.xyxy)), 1.0)
        if not 1.0 / _MAX_LOOK_AREA_RATIO <= ratio <= _MAX_LOOK_AREA_RATIO:
            return False
        return appearance_distance(track.appearance, appearance) <= self._cfg.max_appearance_distance

    def _resolve_overlaps(self) -> None:
        """Two shown boxes on one face (flow points of a face going behind another follow the
        one in front): the track not detected on this frame (else the one detected longer ago)
        hides until its own face comes out, instead of taking the other's place and trading ids."""
        shown = self._shown()
        if len(shown) < 2:
            return
        iou = box_iou(np.stack([tr.xyxy for tr in shown]), np.stack([tr.xyxy for tr in shown]))
        for i, j in zip(*np.nonzero(np.triu(iou, k=1) >= _SAME_FACE_IOU)):
            a, b = shown[i], shown[j]
            if not (a.shown and b.shown) or (a.detection is not None and b.detection is not None):
                continue  # two detections: two faces, however close
            loser = a if (a.detection is None, -a.last_frame, -a.hits) > (b.detection is None, -b.last_frame, -b.hits) else b
            loser.hide()

    @staticmethod
    def _covered(xyxy: np.ndarray, tracks: Sequence[Track]) -> bool:
        """A detection on a face that a track found on this frame (by its look, while a colour
        veto kept the two apart) is not a new person."""
        found = [tr.xyxy for tr in tracks if tr.detection is not None]
        if not found:
            return False
        return bool((box_iou(xyxy, np.stack(found))[0] >= _SAME_FACE_IOU).any())

    def _shown(self) -> List[Track]:
        return [track for track in self._tracks if track.shown]

    def _maybe_confirm(self, track: Track) -> None:
        if not track.confirmed and track.hits >= self._cfg.min_hits:
            track.confirmed = True
            self._new.append(track)
            logger.debug("track %s confirmed at frame %s", track.id, track.last_frame)
            self._end_displaced(track)

    def _end_displaced(self, newcomer: Track) -> None:
        """Hidden tracks whose spot a newly confirmed person now holds end: at a counter, the
        one who left is gone once the next one stands there, and must not come back as them."""
        for track in self._tracks:
            if track is newcomer or track.shown or not track.confirmed:
                continue
            if track.id not in self._gone and box_iou(track.xyxy, newcomer.xyxy)[0, 0] >= _DISPLACED_IOU:
                logger.debug("track %s ended: its spot is taken by track %s", track.id, newcomer.id)
                self._ended.append(track)
                self._gone.add(track.id)

    def _drop_gone(self) -> None:
        if self._gone:
            self._tracks = [track for track in self._tracks if track.id not in self._gone]
            self._gone.clear()

    def _match(self, boxes: np.ndarray, apps: Sequence[Optional[np.ndarray]], frame_index: int) -> List[Tuple[int, int]]:
        """Greedy assignment, cheapest pair first; shown tracks before hidden ones (DeepSORT's
        matching cascade: a recently seen face has the better claim on a detection). A pair is
        allowed when the boxes overlap or their centres are close for their size, their areas are
        alike, and their colours are not too different (``max_appearance_distance``)."""
        if not self._tracks or not len(boxes):
            return []
        cfg = self._cfg
        predicted = np.stack([tr.predicted(frame_index) for tr in self._tracks])
        iou = box_iou(predicted, boxes)
        area_t, area_d = _area(predicted), _area(boxes)
        size = np.sqrt(np.maximum(area_t, 1.0))
        centre_t = (predicted[:, :2] + predicted[:, 2:]) / 2
        centre_d = (boxes[:, :2] + boxes[:, 2:]) / 2
        dist = np.linalg.norm(centre_t[:, None, :] - centre_d[None, :, :], axis=2) / size[:, None]
        ratio = np.maximum(area_t[:, None], 1.0) / np.maximum(area_d[None, :], 1.0)
        looks = np.array([[appearance_distance(tr.appearance, app) for app in apps] for tr in self._tracks])
        # A face seen without a break may change colour (light, a turn); one that comes back after
        # a gap must look like the person who left, or it is the next one in the queue.
        limit = np.array([
            cfg.max_appearance_distance if tr.shown else cfg.reappear_appearance_distance for tr in self._tracks
        ])
        allowed = (
            ((iou >= max(cfg.min_iou, 1e-9)) | (dist <= cfg.max_centre_dist))
            & (ratio <= _MAX_AREA_RATIO) & (ratio >= 1.0 / _MAX_AREA_RATIO)
            & (looks <= limit[:, None])
        )
        cost = (1.0 - iou) + dist + looks
        hidden = np.array([not tr.shown for tr in self._tracks])
        rows, cols = np.nonzero(allowed)
        order = np.lexsort((cost[rows, cols], hidden[rows]))
        used_t, used_d = set(), set()
        pairs: List[Tuple[int, int]] = []
        for k in order:
            ti, di = int(rows[k]), int(cols[k])
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            pairs.append((ti, di))
        return pairs
