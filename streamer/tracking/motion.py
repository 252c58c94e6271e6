"""Motion gate: decide per frame whether the face models need to run.

Frame differencing against a running background, in the spirit of frigate's motion detector:
downscale, grey, blur, compare with an exponentially weighted background, count the pixels that
changed. Pure and single-threaded; one ``update`` costs well under a millisecond at 640x480.
"""

from __future__ import annotations

import logging
from typing import Optional, Tuple

import cv2
import numpy as np

from ..config import MotionConfig
from ..types import GateDecision

logger = logging.getLogger(__name__)

# Gaussian kernel on the working image (160 px wide by default): wide enough to average away
# sensor noise and codec blocking, narrow enough that a face-sized blob survives.
_BLUR_KSIZE = (5, 5)


class MotionGate:
    """Decides for each frame whether to analyse it (``update``) and keeps the background.

    Reasons, in order of precedence: "off" (gate disabled), "first" (first frame, after
    ``reset``, a frame size change or the index going backwards), "recalibrate" (the whole frame
    changed, e.g. lights switched on: the background jumps to this frame), "motion" (changed
    share >= ``min_area``), "refresh" (``refresh_frames`` frames since the last analysed one),
    "tracked" (analyse=False: motion only inside ``ignore_xyxy``), "still" (analyse=False: reuse
    the last results as stale).
    """

    def __init__(self, cfg: MotionConfig) -> None:
        self._cfg = cfg
        self._background: Optional[np.ndarray] = None
        self._shape_hw: Optional[Tuple[int, int]] = None
        self._last_analysed_index = 0

    def reset(self) -> None:
        """Forget the background: the next frame is analysed with reason "first"."""
        self._background = None
        self._shape_hw = None
        self._last_analysed_index = 0

    def update(self, bgr: np.ndarray, index: int, ignore_xyxy: Optional[np.ndarray] = None) -> GateDecision:
        """Decide for one frame and fold it into the background.

        ``bgr``: ``(H, W, 3)`` uint8 BGR (or ``(H, W)`` uint8 grey); ``index``: the frame's index
        in its source, used for the refresh interval. ``changed_frac`` is the share (0-1) of the
        working image that differs from the background by more than ``pixel_threshold`` grey
        levels (0.0 when the gate is off or has no background yet).

        ``ignore_xyxy`` (``(N, 4)`` pixels of ``bgr``, optional): regions whose motion does not open
        the gate, e.g. faces already tracked: a person talking keeps changing their own box, and
        the tracker follows that without a new detection. Motion only there gives reason
        "tracked" (analyse=False); ``changed_frac`` still counts the whole frame.
        """
        if not self._cfg.enabled:
            return GateDecision(analyse=True, changed_frac=0.0, reason="off")
        grey = self._prepare(bgr)
        shape_hw = (int(bgr.shape[0]), int(bgr.shape[1]))
        if self._background is None or shape_hw != self._shape_hw or index < self._last_analysed_index:
            if self._background is not None:
                logger.info(
                    "motion gate restarting: frame %s index %s after %s index %s",
                    shape_hw,
                    index,
                    self._shape_hw,
                    self._last_analysed_index,
                )
            self._background = grey
            self._shape_hw = shape_hw
            return self._analysed(index, 0.0, "first")

        changed = cv2.absdiff(grey, self._background) > self._cfg.pixel_threshold
        changed_frac = float(np.count_nonzero(changed)) / changed.size
        if changed_frac >= self._cfg.recalibrate_area:
            # A change over most of the frame is the light, the camera or a cut, not a subject moving:
            # blending it in slowly would keep the gate open for dozens of frames.
            self._background = grey
            return self._analysed(index, changed_frac, "recalibrate")
        # The background keeps adapting while the gate is closed, so slow light drift and objects
        # that stop moving fade into it instead of accumulating into a false trigger.
        cv2.accumulateWeighted(grey, self._background, self._cfg.background_alpha)
        if changed_frac >= self._cfg.min_area:
            if ignore_xyxy is None or len(ignore_xyxy) == 0:
                return self._analysed(index, changed_frac, "motion")
            if self._outside_frac(changed, ignore_xyxy, shape_hw) >= self._cfg.min_area:
                return self._analysed(index, changed_frac, "motion")
            if index - self._last_analysed_index >= self._cfg.refresh_frames:
                return self._analysed(index, changed_frac, "refresh")
            return GateDecision(analyse=False, changed_frac=changed_frac, reason="tracked")
        if index - self._last_analysed_index >= self._cfg.refresh_frames:
            return self._analysed(index, changed_frac, "refresh")
        return GateDecision(analyse=False, changed_frac=changed_frac, reason="still")

    @staticmethod
    def _outside_frac(changed: np.ndarray, ignore_xyxy: np.ndarray, shape_hw: Tuple[int, int]) -> float:
        """Share of the working image changed outside the ignored boxes."""
        outside = changed.copy()
        sy, sx = changed.shape[0] / shape_hw[0], changed.shape[1] / shape_hw[1]
        for x1, y1, x2, y2 in np.asarray(ignore_xyxy, np.float32).reshape(-1, 4):
            c1, r1 = max(0, int(np.floor(x1 * sx))), max(0, int(np.floor(y1 * sy)))
            c2, r2 = int(np.ceil(x2 * sx)), int(np.ceil(y2 * sy))
            outside[r1:r2, c1:c2] = False
        return float(np.count_nonzero(outside)) / outside.size

    def _analysed(self, index: int, changed_frac: float, reason: str) -> GateDecision:
        self._last_analysed_index = index
        return GateDecision(analyse=True, changed_frac=changed_frac, reason=reason)

    def _prepare(self, bgr: np.ndarray) -> np.ndarray:
        """Downscaled, grey, blurred float32 working image ``(h, width_px)``."""
        if bgr.dtype != np.uint8 or bgr.ndim not in (2, 3) or (bgr.ndim == 3 and bgr.shape[2] != 3):
            raise ValueError(
                f"motion gate frame: expected a uint8 (H, W, 3) BGR or (H, W) grey image, got "
                f"{bgr.dtype} {bgr.shape}; pass Frame.bgr as decoded by OpenCV"
            )
        height, width = bgr.shape[:2]
        work_w = min(self._cfg.width_px, width)
        work_h = max(1, round(height * work_w / width))
        # Grey first: resizing one channel instead of three halves the cost. INTER_AREA averages
        # whole pixel blocks, so isolated noisy pixels shrink instead of aliasing through.
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        if work_w != width:
            grey = cv2.resize(grey, (work_w, work_h), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(grey, _BLUR_KSIZE, 0).astype(np.float32)


# Grey-level spread under which a thumbnail counts as flat.
_FLAT_GREY_STD = 2.0


class CutDetector:
    """Says when the picture was replaced by another: a cut in a film, a camera switched or
    swung round. The tracker ends every track not found again on such a frame, so that nobody in
    the new picture takes the id of someone from the old one.

    The motion gate's "recalibrate" misses cuts between two dim scenes (a stage and its audience
    change only ~30 % of their pixels beyond the gate's threshold). Here consecutive frames are
    compared as 32x24 grey thumbnails by normalised correlation: measured on the shared clips, the
    frames of a shot correlate at 0.66 or more (median 0.98-1.0; a walking llama, a camera pan),
    every cut at 0.26 or less.
    """

    THUMB_WH = (32, 24)
    # Between the worst correlation within a shot (0.32, caminandes) and the best across a cut (0.26).
    MAX_CORRELATION = 0.3

    def __init__(self) -> None:
        self._prev: Optional[np.ndarray] = None

    def update(self, picture: np.ndarray) -> bool:
        """True when this frame starts a new shot: ``(H, W, 3)`` uint8 BGR, or ``(h, w)`` uint8
        grey (the frame's ``GreyFrame``, which the worker has made anyway)."""
        thumb = cv2.resize(picture, self.THUMB_WH, interpolation=cv2.INTER_AREA)
        if thumb.ndim == 3:
            thumb = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY)
        thumb = thumb.astype(np.float32).ravel()
        spread = float(thumb.std())
        # A flat picture (black between shots, a lens cap) has no pattern to compare: not a cut.
        pattern = (thumb - thumb.mean()) / spread if spread >= _FLAT_GREY_STD else None
        prev, self._prev = self._prev, pattern
        if prev is None or pattern is None:
            return False
        return float(np.mean(pattern * prev)) < self.MAX_CORRELATION
