"""Face chips for the classifiers: square crops around a box, or landmark-aligned chips.

All functions take a BGR ``uint8`` frame ``(H, W, 3)`` and return BGR ``uint8`` chips. Pixel
coordinates use OpenCV's convention (pixel centres at integer coordinates).

The aligned chip reproduces dlib's ``get_face_chip_details(shape, size, padding)`` geometry, which
the Cydral age/gender networks were trained on: a least-squares similarity transform of the face's
landmarks onto dlib's mean face, where the mean face spans ``[0, 1]`` and ``padding`` adds that
fraction of it on every side. dlib uses its own 5-point model (eye corners and nose base); YuNet
gives eye centres, nose tip and mouth corners, so the template below takes those points from
dlib's 68-point mean face (the one dlib's 5-point template was derived from).
"""

from __future__ import annotations

from typing import Literal, Tuple

import cv2
import numpy as np

from ..types import Detections

Border = Literal["replicate", "constant"]
# A crop jitter for test-time augmentation: shift right and down (fractions of the chip's side)
# and zoom (> 1: the face fills more of the chip). NO_JITTER is the plain chip.
Jitter = Tuple[float, float, float]
NO_JITTER: Jitter = (0.0, 0.0, 1.0)

# dlib's mean face (interpolation.h, points 17-67, unit square) at YuNet's landmarks, in YuNet's
# order: right eye (mean of corners 36, 39), left eye (mean of 42, 45), nose tip (30), right
# mouth corner (48), left mouth corner (54). "Right" is the subject's right, on the viewer's left.
# Checked against dlib itself: YuNet's points mapped through dlib's own 5-point chips on 581 faces
# sit within ~0.03 of these, and a template fitted that way gives the same accuracy on UTKFace.
MEAN_FACE_YUNET = np.array(
    [
        [(0.121737 + 0.334606) / 2, (0.216423 + 0.231733) / 2],
        [(0.645647 + 0.858516) / 2, (0.231733 + 0.216423) / 2],
        [0.490127, 0.515625],
        [0.254149, 0.780233],
        [0.726104, 0.780233],
    ],
    np.float64,
)

# Warping straight from a large face to a 32 px chip aliases (every 6th pixel is sampled). The
# chip is warped at up to this many times its size, then area-averaged down, as dlib's pyramid
# does. 8 covers faces up to ~8x the chip with full anti-aliasing; larger ones still get 8x.
_MAX_OVERSAMPLE = 8

_CV_BORDER = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}


def template_points(size: int, padding: float, jitter: Jitter = NO_JITTER) -> np.ndarray:
    """Where the YuNet landmarks land in an aligned ``size`` chip: ``(5, 2)`` float64 pixels;
    ``jitter`` moves and zooms them about the chip centre."""
    points = (padding + MEAN_FACE_YUNET) / (1.0 + 2.0 * padding) * size
    dx, dy, zoom = jitter
    centre = size / 2.0
    return centre + zoom * (points - centre) + np.array([dx, dy]) * size


def yaw_ratio(landmarks_xy: np.ndarray) -> np.ndarray:
    """How far each face is turned: the nose tip's offset from the midpoint of the eyes, along the
    eye line, in eye distances. ``landmarks_xy``: ``(N, 5, 2)`` in YuNet's order. About 0 for a
    frontal face, ~0.5 at a three-quarter view, beyond 1 in profile; the sign says which way.
    Returns ``(N,)`` float32 (0 where the eyes coincide)."""
    marks = np.asarray(landmarks_xy, np.float64).reshape(-1, 5, 2)
    eye_line = marks[:, 1] - marks[:, 0]
    distance = np.linalg.norm(eye_line, axis=1)
    safe = np.maximum(distance, 1e-6)
    offset = np.einsum("ij,ij->i", marks[:, 2] - (marks[:, 0] + marks[:, 1]) / 2, eye_line / safe[:, None])
    return np.where(distance > 1e-6, offset / safe, 0.0).astype(np.float32)


def similarity_transform(src_xy: np.ndarray, dst_xy: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``src_xy`` onto ``dst_xy``.

    Umeyama's closed form (what dlib's ``find_similarity_transform`` computes), without
    reflection. ``src_xy``/``dst_xy``: ``(K, 2)`` with K >= 2. Returns the ``(2, 3)`` float64
    matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src_xy, np.float64)
    dst = np.asarray(dst_xy, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError(f"landmarks must not all coincide, got {src.tolist()}")
    cov = dst_c.T @ src_c / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign)) / src_var
    matrix = np.empty((2, 3), np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def _warp(bgr: np.ndarray, matrix: np.ndarray, size: int, border: Border) -> np.ndarray:
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    oversample = int(np.clip(np.floor(1.0 / max(scale, 1e-9)), 1, _MAX_OVERSAMPLE))
    big = matrix * oversample
    # Pixel centre x of the small chip sits at oversample * x + (oversample - 1) / 2 in the big one.
    big[:, 2] += (oversample - 1) / 2.0
    chip = cv2.warpAffine(
        bgr,
        big,
        (size * oversample, size * oversample),
        flags=cv2.INTER_LINEAR,
        borderMode=_CV_BORDER[border],
        borderValue=(0, 0, 0),
    )
    if oversample > 1:
        chip = cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)
    return chip


def aligned_chip(
    bgr: np.ndarray,
    landmarks_xy: np.ndarray,
    size: int,
    padding: float,
    border: Border = "constant",
    jitter: Jitter = NO_JITTER,
) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 BGR chip with the face's 5 YuNet landmarks on dlib's mean face.

    ``landmarks_xy``: ``(5, 2)`` frame pixels in YuNet's order. ``padding`` as in dlib (0.2: the
    mean face spans the middle 1/1.4 of the chip). Parts outside the frame are filled by
    ``border`` ("constant" is black, as dlib's ``extract_image_chip``). ``jitter``: see ``Jitter``.
    """
    landmarks = np.asarray(landmarks_xy, np.float64).reshape(5, 2)
    matrix = similarity_transform(landmarks, template_points(size, padding, jitter))
    return _warp(bgr, matrix, size, border)


def square_crop(
    bgr: np.ndarray,
    xyxy: np.ndarray,
    size: int,
    padding: float,
    border: Border = "replicate",
    jitter: Jitter = NO_JITTER,
) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 BGR chip of the square around a box's centre.

    The square's side is the box's longer side times ``1 + 2 * padding`` (``padding`` of it added
    on every side). Parts outside the frame are filled by ``border``; a box fully outside the
    frame gives a chip of replicated edge pixels (or black). ``jitter``: see ``Jitter``.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy).reshape(4))
    dx, dy, zoom = jitter
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * padding) / zoom
    # The face moves right in the chip when the crop window moves left.
    cx, cy = (x1 + x2) / 2.0 - dx * side, (y1 + y2) / 2.0 - dy * side
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    n = max(int(round(side)), 1)
    height, width = bgr.shape[:2]
    cols = np.arange(left, left + n)
    rows = np.arange(top, top + n)
    crop = bgr[np.ix_(np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1))]
    if border == "constant":
        outside = ((rows < 0) | (rows >= height))[:, None] | ((cols < 0) | (cols >= width))[None, :]
        crop[outside] = 0
    interpolation = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def face_chips(
    bgr: np.ndarray,
    detections: Detections,
    size: int,
    padding: float,
    align: bool,
    border: Border = "replicate",
    jitter: Jitter = NO_JITTER,
) -> np.ndarray:
    """Chips for every detection: ``(N, size, size, 3)`` uint8 BGR, in detection order.

    Landmark-aligned when ``align`` is True and the detector gave landmarks, else square crops.
    """
    chips = np.empty((len(detections), size, size, 3), np.uint8)
    landmarks = detections.landmarks_xy if align else None
    for i in range(len(detections)):
        if landmarks is not None:
            chips[i] = aligned_chip(bgr, landmarks[i], size, padding, border, jitter)
        else:
            chips[i] = square_crop(bgr, detections.xyxy[i], size, padding, border, jitter)
    return chips
