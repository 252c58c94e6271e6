"""Face chips: square crops at every border, degenerate frames, and landmark alignment."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.classifiers.align import (
    aligned_chip,
    face_chips,
    similarity_transform,
    square_crop,
    template_points,
    yaw_ratio,
)
from streamer.types import Detections

H, W = 120, 160


def quadrant_frame() -> np.ndarray:
    """A 120x160 BGR frame with a distinct colour in each quadrant (so a crop shows its origin)."""
    frame = np.zeros((H, W, 3), np.uint8)
    frame[: H // 2, : W // 2] = (255, 0, 0)
    frame[: H // 2, W // 2 :] = (0, 255, 0)
    frame[H // 2 :, : W // 2] = (0, 0, 255)
    frame[H // 2 :, W // 2 :] = (255, 255, 255)
    return frame


QUADRANT = {"tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 255)}


@pytest.mark.parametrize(
    "name, xyxy, colour_at_centre",
    [
        ("top-left corner", (-10, -10, 20, 20), "tl"),
        ("top-right corner", (W - 20, -10, W + 10, 20), "tr"),
        ("bottom-left corner", (-10, H - 20, 20, H + 10), "bl"),
        ("bottom-right corner", (W - 20, H - 20, W + 10, H + 10), "br"),
        ("top border", (20, -20, 50, 24), "tl"),
        ("bottom border", (W - 50, H - 24, W - 20, H + 20), "br"),
        ("left border", (-20, H - 50, 24, H - 20), "bl"),
        ("right border", (W - 24, 20, W + 20, 50), "tr"),
        ("inside", (10, 10, 40, 40), "tl"),
    ],
)
@pytest.mark.parametrize("border", ["replicate", "constant"])
def test_square_crop_at_borders_comes_from_the_right_place(name, xyxy, colour_at_centre, border):
    chip = square_crop(quadrant_frame(), np.array(xyxy, np.float32), 32, 0.2, border)
    assert chip.shape == (32, 32, 3) and chip.dtype == np.uint8
    assert tuple(int(v) for v in chip[16, 16]) == QUADRANT[colour_at_centre], name


def test_square_crop_border_fill_constant_is_black_and_replicate_is_the_edge():
    frame = quadrant_frame()
    box = np.array([-40, 20, 0, 60], np.float32)  # the left half of the square lies off the frame
    black = square_crop(frame, box, 40, 0.0, "constant")
    edge = square_crop(frame, box, 40, 0.0, "replicate")
    assert (black[:, :15] == 0).all()
    assert (edge[:, :15] == edge[:, 19:20]).all()  # every column repeats the frame's first column
    assert (edge[5, :15] == QUADRANT["tl"]).all()


def test_square_crop_of_a_box_larger_side_and_padding():
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[90:110, 90:110] = 255  # a 20 px white square at the centre
    # box 40 wide x 20 high, padding 0.25 -> 60 px square; the white square fills 1/3 of it
    chip = square_crop(frame, np.array([80, 90, 120, 110], np.float32), 60, 0.25)
    white_rows = np.nonzero(chip[:, 30, 0] > 127)[0]
    assert 19 <= len(white_rows) <= 21 and abs(white_rows.mean() - 29.5) <= 1


@pytest.mark.parametrize("border", ["replicate", "constant"])
def test_square_crop_of_a_1x1_image(border):
    frame = np.full((1, 1, 3), 77, np.uint8)
    chip = square_crop(frame, np.array([0, 0, 1, 1], np.float32), 32, 0.2, border)
    assert chip.shape == (32, 32, 3)
    assert chip[16, 16].tolist() == [77, 77, 77]


@pytest.mark.parametrize(
    "border, expected", [("constant", (0, 0, 0)), ("replicate", QUADRANT["br"])]
)
def test_square_crop_of_a_box_fully_outside(border, expected):
    chip = square_crop(quadrant_frame(), np.array([W + 100, H + 100, W + 140, H + 140], np.float32), 32, 0.2, border)
    assert chip.shape == (32, 32, 3)
    assert (chip == np.array(expected, np.uint8)).all()


def test_square_crop_of_a_degenerate_box_does_not_fail():
    chip = square_crop(quadrant_frame(), np.array([50, 50, 50, 50], np.float32), 16, 0.2)
    assert chip.shape == (16, 16, 3)


def landmark_frame(size: int, padding: float, angle_deg: float = 0.0, scale: float = 3.0, offset=(100.0, 80.0)):
    """A frame holding a dot pattern at template landmarks, rotated/scaled/shifted; returns frame
    and the landmarks in frame pixels."""
    template = template_points(size, padding)
    theta = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.array([size / 2, size / 2])
    landmarks = (template - centre) @ rotation.T * scale + centre * scale + np.array(offset)
    frame = np.zeros((480, 640, 3), np.uint8)
    for i, (x, y) in enumerate(landmarks):
        cv2.circle(frame, (int(round(x)), int(round(y))), int(2 * scale), (50 * (i + 1), 255 - 40 * i, 255), -1)
    return frame, landmarks


def test_similarity_transform_recovers_a_known_transform():
    src = np.array([[0, 0], [10, 0], [0, 10], [7, 3], [2, 9]], np.float64)
    theta, scale, shift = np.deg2rad(25), 1.7, np.array([5.0, -3.0])
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = src @ (scale * rotation).T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_similarity_transform_rejects_coincident_points():
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), np.random.rand(5, 2))


def dot_centres(chip: np.ndarray) -> np.ndarray:
    """Centroids of the bright blobs of a chip, ordered by their blue value (dot index)."""
    mask = (chip[:, :, 2] > 128).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask)
    centres = []
    for label in range(1, count):
        ys, xs = np.nonzero(labels == label)
        centres.append((chip[ys, xs, 0].mean(), xs.mean(), ys.mean()))
    centres.sort()
    return np.array([(x, y) for _, x, y in centres])


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, -45.0])
def test_aligned_chip_puts_landmarks_on_the_template_upright(angle_deg):
    size, padding = 96, 0.2
    frame, landmarks = landmark_frame(size, padding, angle_deg=angle_deg)
    chip = aligned_chip(frame, landmarks, size, padding)
    assert chip.shape == (size, size, 3) and chip.dtype == np.uint8
    found = dot_centres(chip)
    assert found.shape == (5, 2)
    np.testing.assert_allclose(found, template_points(size, padding), atol=1.0)


def test_aligned_chip_at_identity_placement_is_the_frame_itself():
    size, padding = 64, 0.2
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (5, 5), 0)
    chip = aligned_chip(frame, template_points(size, padding), size, padding)
    assert np.abs(chip.astype(int) - frame.astype(int)).max() <= 1


def test_aligned_chip_of_landmarks_off_the_frame_fills_black():
    frame, landmarks = landmark_frame(64, 0.2, offset=(-150.0, -150.0))
    chip = aligned_chip(frame, landmarks, 64, 0.2, border="constant")
    assert chip.shape == (64, 64, 3) and (chip[:5, :5] == 0).all()


def test_face_chips_aligns_only_with_landmarks_and_keeps_order():
    frame, landmarks = landmark_frame(64, 0.2)
    xyxy = np.array([[100, 80, 292, 272], [0, 0, 30, 30]], np.float32)
    second = landmarks + np.array([300.0, 150.0])
    both = Detections(xyxy, np.array([0.9, 0.8], np.float32), np.stack([landmarks, second]).astype(np.float32))
    aligned = face_chips(frame, both, 64, 0.2, align=True)
    assert aligned.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(aligned[0], aligned_chip(frame, landmarks.astype(np.float32), 64, 0.2, "replicate"))
    square = face_chips(frame, both, 64, 0.2, align=False)
    np.testing.assert_array_equal(square[1], square_crop(frame, xyxy[1], 64, 0.2))
    no_landmarks = Detections(xyxy, np.array([0.9, 0.8], np.float32))
    np.testing.assert_array_equal(face_chips(frame, no_landmarks, 64, 0.2, align=True), square)


def test_face_chips_of_no_detections_is_empty_with_the_chip_shape():
    chips = face_chips(quadrant_frame(), Detections.empty(), 32, 0.2, align=True)
    assert chips.shape == (0, 32, 32, 3) and chips.dtype == np.uint8


@pytest.mark.parametrize(
    "nose_x, expected",
    [(50.0, 0.0), (60.0, 0.25), (40.0, -0.25), (90.0, 1.0)],  # eyes at x 30 and 70: distance 40
)
def test_yaw_ratio_is_the_nose_offset_in_eye_distances(nose_x, expected):
    marks = np.array([[[30, 40], [70, 40], [nose_x, 60], [35, 80], [65, 80]]], np.float32)
    assert yaw_ratio(marks)[0] == pytest.approx(expected, abs=1e-6)
    # Rotation does not change it: the same face turned 90 degrees in the picture.
    rotated = marks[..., ::-1].copy()
    assert abs(yaw_ratio(rotated)[0]) == pytest.approx(abs(expected), abs=1e-6)
    assert yaw_ratio(np.zeros((1, 5, 2), np.float32))[0] == 0.0


@pytest.mark.parametrize("jitter", [(0.05, 0.0, 1.0), (0.0, -0.05, 1.0), (0.0, 0.0, 1.1)])
def test_jitter_moves_the_aligned_chip_and_the_square_crop(jitter):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (200, 200, 3), np.uint8)
    marks = np.array([[80, 90], [120, 90], [100, 110], [85, 130], [115, 130]], np.float64)
    assert not np.array_equal(aligned_chip(frame, marks, 64, 0.2), aligned_chip(frame, marks, 64, 0.2, jitter=jitter))
    box = np.array([70, 70, 130, 140], np.float32)
    assert not np.array_equal(square_crop(frame, box, 64, 0.0), square_crop(frame, box, 64, 0.0, jitter=jitter))
    np.testing.assert_allclose(template_points(64, 0.2, (0.0, 0.0, 1.0)), template_points(64, 0.2))
