"""Hiding faces in every picture the run outputs: blur, pixelate or a solid fill, in an ellipse
(or box) grown from each face box, before the overlay is drawn and before any sink sees the frame.

The complaint about face-blurring tools is the face that slips through for a frame or two: a
detector blink, a newcomer not yet confirmed, a box that lags a fast turn. So the worker hands
the :class:`Anonymizer` every box the tracker holds on a frame (shown tracks and unconfirmed
candidates), and the anonymizer keeps masking each box for ``hold_frames`` frames after it stops
coming (a missed detection, a track hidden or dropped), unless a current box already covers it.

Boxes are ``xyxy`` float frame pixels (x2/y2 exclusive), images ``(H, W, 3)`` uint8 BGR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Literal, Optional, Tuple

import cv2
import numpy as np

from ..boxes import covered_share
from ..config import ANONYMIZE_MODES

log = logging.getLogger(__name__)

AnonymizeMode = Literal["blur", "pixelate", "solid"]
MaskShape = Literal["ellipse", "box"]

# Detector boxes run from mid-forehead to chin (CenterFace, YuNet): the hair and the crown are
# above the box, the chin at its bottom edge. This share of the mask's extra height goes above the
# box (hair), the rest below (chin, neck): at scale 1.6, 0.4 of the box height above, 0.2 below.
_ABOVE_SHARE = 2.0 / 3.0
# Blur: the face is resampled to about this many cells across its (ungrown) box width, then
# smoothed back up: features (eyes, mouth, nose) are a cell or two wide, so none survives.
_BLUR_CELLS = 6
# Pixelate: blocks of 0.4 of the face width, 2.5 across it. At 5 across, the eyes, nose and mouth
# stayed as darker and lighter blocks, and OpenCV's Haar cascade found 24 of 333 pixelated faces of
# the shared clips and photos at their place (3 across: 1; 2.5: none, as for solid).
_PIXEL_CELLS = 2.5
# Solid: a flat dark grey (BGR), distinct from black letterboxing and from the label colours.
SOLID_BGR = (48, 48, 48)
# Face boxes are about this much taller than wide (CenterFace 1.2-1.3, YuNet 1.2-1.4 on the
# shared photos). A box cut by the frame's edge is shorter (or narrower): it is completed beyond
# the edge to this shape before its mask is drawn, or the ellipse would centre on the visible part
# and leave the chin (or a cheek) at the edge uncovered.
_FACE_ASPECT_HW = 1.25
# A box within this many pixels of the frame's edge was cut by it.
_EDGE_PX = 1.0
# A box held from an earlier frame is dropped once this share of its mask lies inside the mask
# of a box of this frame: it is the same face, masked where it is now.
_COVERED_SHARE = 0.9


@dataclass(frozen=True)
class MaskSpec:
    """How faces are hidden: ``mode`` (blur, pixelate, solid), ``shape`` (ellipse or box), ``scale``
    (mask width and height over the face box's, >= 1) and ``hold_frames`` (frames a face box is
    still masked after it stops coming)."""

    mode: AnonymizeMode = "blur"
    shape: MaskShape = "ellipse"
    scale: float = 1.6
    hold_frames: int = 12

    def __post_init__(self) -> None:
        if self.mode not in ANONYMIZE_MODES:
            raise ValueError(f"MaskSpec mode: expected one of {', '.join(ANONYMIZE_MODES)}, got {self.mode!r}")
        if self.shape not in ("ellipse", "box"):
            raise ValueError(f"MaskSpec shape: expected 'ellipse' or 'box', got {self.shape!r}")
        if not self.scale >= 1.0:
            raise ValueError(f"MaskSpec scale: expected a number >= 1 (the mask covers the face box), got {self.scale!r}")
        if self.hold_frames < 0:
            raise ValueError(f"MaskSpec hold_frames: expected an integer >= 0, got {self.hold_frames!r}")


def mask_rects(xyxy: np.ndarray, scale: float) -> np.ndarray:
    """``(N, 4)`` float64 xyxy of the masks of ``(N, 4)`` face boxes: each box's width and height
    times ``scale``, the extra height mostly above (_ABOVE_SHARE); unclipped."""
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    extra_w, extra_h = (scale - 1.0) * w, (scale - 1.0) * h
    return np.stack([boxes[:, 0] - extra_w / 2, boxes[:, 1] - _ABOVE_SHARE * extra_h,
                     boxes[:, 2] + extra_w / 2, boxes[:, 3] + (1.0 - _ABOVE_SHARE) * extra_h], axis=1)


def complete_at_edges(xyxy: np.ndarray, shape_hw: Tuple[int, int]) -> np.ndarray:
    """``(N, 4)`` float64 face boxes with the ones cut by the frame's edge extended beyond it to a
    face's shape (_FACE_ASPECT_HW): a face at the top edge is a chin under a box that was cut."""
    boxes = np.array(xyxy, np.float64).reshape(-1, 4)
    h, w = shape_hw
    for box in boxes:
        bw, bh = box[2] - box[0], box[3] - box[1]
        if bh < _FACE_ASPECT_HW * bw:
            missing = _FACE_ASPECT_HW * bw - bh
            if box[1] <= _EDGE_PX:
                box[1] -= missing
            elif box[3] >= h - _EDGE_PX:
                box[3] += missing
        elif bw < bh / _FACE_ASPECT_HW:
            missing = bh / _FACE_ASPECT_HW - bw
            if box[0] <= _EDGE_PX:
                box[0] -= missing
            elif box[2] >= w - _EDGE_PX:
                box[2] += missing
    return boxes


def _pixel_bounds(rect: np.ndarray, shape_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    h, w = shape_hw
    x1, y1 = int(max(0, np.floor(rect[0]))), int(max(0, np.floor(rect[1])))
    x2, y2 = int(min(w, np.ceil(rect[2]))), int(min(h, np.ceil(rect[3])))
    return x1, y1, x2, y2


def _shape_mask(rect: np.ndarray, bounds: Tuple[int, int, int, int], shape: str) -> np.ndarray:
    """``(h, w)`` uint8 mask (255 inside) of ``rect``'s ellipse or box within pixel ``bounds``."""
    x1, y1, x2, y2 = bounds
    if shape == "box":
        return np.full((y2 - y1, x2 - x1), 255, np.uint8)
    mask = np.zeros((y2 - y1, x2 - x1), np.uint8)
    # Sub-pixel ellipse (cv2 shift=4): centre and axes in 1/16 px, so a small face's mask does not
    # jump a pixel from frame to frame.
    fixed = 16
    centre = (int(round(((rect[0] + rect[2]) / 2 - x1) * fixed)), int(round(((rect[1] + rect[3]) / 2 - y1) * fixed)))
    axes = (int(round((rect[2] - rect[0]) / 2 * fixed)), int(round((rect[3] - rect[1]) / 2 * fixed)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, cv2.FILLED, cv2.LINE_8, 4)
    return mask


def face_mask(shape_hw: Tuple[int, int], xyxy: np.ndarray, spec: MaskSpec) -> np.ndarray:
    """``(H, W)`` bool: the pixels the masks of ``(N, 4)`` face boxes cover (for tests and benches)."""
    out = np.zeros(shape_hw, bool)
    for rect in mask_rects(complete_at_edges(xyxy, shape_hw), spec.scale):
        bounds = _pixel_bounds(rect, shape_hw)
        if bounds[2] > bounds[0] and bounds[3] > bounds[1]:
            out[bounds[1]:bounds[3], bounds[0]:bounds[2]] |= _shape_mask(rect, bounds, spec.shape) > 0
    return out


def _hidden(roi: np.ndarray, face_w: float, mode: str) -> np.ndarray:
    """``roi`` ((h, w, 3) uint8 BGR) with its detail removed: a face ``face_w`` px wide no longer shows."""
    h, w = roi.shape[:2]
    if mode == "solid":
        flat = np.empty_like(roi)
        cv2.rectangle(flat, (0, 0), (w, h), SOLID_BGR, cv2.FILLED)  # ~10x np.full_like's fill of 3 channels
        return flat
    cells = _BLUR_CELLS if mode == "blur" else _PIXEL_CELLS
    cell_px = max(2.0, face_w / cells)
    small_wh = (max(1, int(round(w / cell_px))), max(1, int(round(h / cell_px))))
    small = cv2.resize(roi, small_wh, interpolation=cv2.INTER_AREA)
    if mode == "pixelate":
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    # Bilinear upsampling of a few cells leaves creases along the cell rows; a blur of the small
    # picture first makes it one smooth blob.
    small = cv2.GaussianBlur(small, (3, 3), 0, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


class Anonymizer:
    """Masks faces on frames of one source, remembering boxes for ``spec.hold_frames`` frames.

    Per frame: ``boxes = anonymizer.update(frame_index, live_xyxy)`` with the face boxes known on
    this frame, then ``anonymizer.apply(bgr, boxes)`` for the masked copy. ``last_boxes`` holds the
    boxes masked on the latest frame.
    """

    def __init__(self, spec: MaskSpec) -> None:
        self.spec = spec
        self._held: List[Tuple[np.ndarray, int]] = []  # (face box, frame it was last given)
        self.last_boxes = np.zeros((0, 4), np.float32)

    def update(self, frame_index: int, live_xyxy: np.ndarray) -> np.ndarray:
        """The ``(M, 4)`` float32 face boxes to mask on ``frame_index``: ``live_xyxy`` ``(N, 4)``
        and the boxes of the last ``hold_frames`` frames that no live box's mask covers."""
        live = np.asarray(live_xyxy, np.float32).reshape(-1, 4)
        held = [(box, seen) for box, seen in self._held if 0 <= frame_index - seen <= self.spec.hold_frames]
        if held and len(live):
            share = covered_share(mask_rects(np.stack([box for box, _ in held]), self.spec.scale),
                                  mask_rects(live, self.spec.scale))
            held = [entry for entry, covered in zip(held, share >= _COVERED_SHARE) if not covered]
        self._held = held + [(box, frame_index) for box in live]
        boxes = [box for box, _ in self._held]
        self.last_boxes = np.stack(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)
        return self.last_boxes

    def reset(self) -> None:
        """Forget held boxes (a new source)."""
        self._held = []
        self.last_boxes = np.zeros((0, 4), np.float32)

    def apply(self, bgr: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """A copy of ``bgr`` ((H, W, 3) uint8 BGR) with every face of ``(N, 4)`` ``xyxy`` hidden."""
        out = bgr.copy()
        shape_hw = out.shape[:2]
        boxes = complete_at_edges(xyxy, shape_hw)
        for box, rect in zip(boxes, mask_rects(boxes, self.spec.scale)):
            bounds = _pixel_bounds(rect, shape_hw)
            x1, y1, x2, y2 = bounds
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            roi = out[y1:y2, x1:x2]
            hidden = _hidden(roi, float(box[2] - box[0]), self.spec.mode)
            if self.spec.shape == "box":
                roi[:] = hidden
            else:
                # cv2.copyTo writes into the view in place: ~50x faster than np.copyto with a
                # broadcast mask (4 ms a face at 120x150 px).
                written = cv2.copyTo(hidden, _shape_mask(rect, bounds, "ellipse"), roi)
                if written is not roi:
                    roi[:] = written
        return out


def build_anonymizer(mode: Optional[str], shape: str, scale: float, hold_frames: int) -> Optional[Anonymizer]:
    """An :class:`Anonymizer` for ``mode`` (None: faces shown, no anonymizer)."""
    if mode is None:
        return None
    return Anonymizer(MaskSpec(mode, shape, scale, hold_frames))  # type: ignore[arg-type]
