"""``streamer zones --source SRC``: a helper to draw zones and lines for ``audience`` in the config.

It shows the source's first frame with a grid of relative coordinates and the zones and lines the
config already has. In a window, each click prints the point's relative coordinates, Enter (or
Space) prints the points clicked so far as a zone polygon (two points: as a line) ready to paste
into the config, Backspace forgets the last point, q or Esc ends. Without a display (or with
``--no-window``) it writes the same picture as a PNG, whose grid gives the coordinates to read off.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

from ..errors import SinkError, SourceError

# Grid lines every tenth of the frame, labelled with their relative coordinate.
GRID_STEPS = 10
WINDOW_NAME = "streamer zones: click corners, Enter prints them, q ends"
_GRID_COLOR = (255, 255, 255)
_POINT_COLOR = (0, 255, 0)
_KEY_ENTER, _KEY_SPACE, _KEY_BACKSPACE, _KEY_ESC = (10, 13), 32, (8, 127), 27


def relative_point(x_px: float, y_px: float, shape_hw: Tuple[int, int]) -> Tuple[float, float]:
    """A pixel of a ``(H, W)`` frame as relative coordinates (0-1, 3 decimals: a pixel of a
    1000-pixel frame), as the config's zones and lines take them."""
    h, w = shape_hw
    return (round(min(max(x_px / max(w - 1, 1), 0.0), 1.0), 3), round(min(max(y_px / max(h - 1, 1), 0.0), 1.0), 3))


def config_snippet(points: Sequence[Tuple[float, float]], name: str) -> str:
    """The YAML for the points clicked: a line for two points, a zone for three or more."""
    text = "[" + ", ".join(f"[{x:g}, {y:g}]" for x, y in points) + "]"
    if len(points) == 2:
        return f"audience:\n  lines:\n    {name}: {{points: {text}, direction: down}}"
    return f"audience:\n  zones:\n    {name}: {{polygon: {text}}}"


def grid_picture(bgr, audience=None):
    """The frame ((H, W, 3) uint8 BGR) with a labelled grid of relative coordinates, and the
    config's zones and lines when ``audience`` (an AudienceConfig) has any; a new image."""
    import cv2

    from ..picture.draw import FONT, _text_scale
    from ..picture.regions import RegionOverlay

    canvas = bgr.copy()
    h, w = canvas.shape[:2]
    scale = _text_scale((h, w))[0] * 0.6
    faint = canvas.copy()
    for step in range(1, GRID_STEPS):
        x, y = round(step / GRID_STEPS * (w - 1)), round(step / GRID_STEPS * (h - 1))
        cv2.line(faint, (x, 0), (x, h - 1), _GRID_COLOR, 1)
        cv2.line(faint, (0, y), (w - 1, y), _GRID_COLOR, 1)
    cv2.addWeighted(faint, 0.35, canvas, 0.65, 0, dst=canvas)
    for step in range(1, GRID_STEPS):
        label = f"{step / GRID_STEPS:.1f}"
        x, y = round(step / GRID_STEPS * (w - 1)), round(step / GRID_STEPS * (h - 1))
        # x along the bottom edge, y along the left: the top-left corners are the zones' labels'.
        for text, at in ((label, (x + 2, h - 4)), (label, (2, y - 2))):
            cv2.putText(canvas, text, at, FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(canvas, text, at, FONT, scale, _GRID_COLOR, 1, cv2.LINE_AA)
    if audience is not None and (audience.zones or audience.lines):
        RegionOverlay(audience).draw(canvas, {})
    return canvas


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``zones --source SRC [--out PNG] [--no-window] [--overwrite]``."""
    parser = subparsers.add_parser(
        "zones",
        help="show a source's first frame to draw audience zones and lines: click corners, get relative coordinates",
        description="Show the first frame of SRC with a grid of relative coordinates (0-1) and the zones and lines "
        "of the config. In a window: click corners (each prints its coordinates), Enter prints them as a zone "
        "(3+ points) or a line (2 points) to paste under 'audience:' in the config, Backspace forgets the last "
        "point, q or Esc ends. Without a display, or with --no-window, the picture is written as a PNG instead.",
    )
    parser.add_argument("--source", required=True, help="the camera, file, URL or photo the zones are for")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the PNG goes without a window (default: out/<source name>_zones.png)")
    parser.add_argument("--no-window", action="store_true", help="write the PNG even where a window could open")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the ``zones`` subcommand: StreamerError (exit 2) when the source gives no frame or the
    PNG cannot be written."""
    from ..config import Config
    from ..outputs.sinks import display_available
    from ..sources.source import open_source

    config = getattr(args, "config_obj", None) or Config()
    with open_source(args.source, config.capture) as source:
        frame = next(iter(source), None)
        name = source.info.name
    if frame is None:
        raise SourceError(f"{args.source}: no frame to draw on (an empty file, or a camera that sent nothing)")
    picture = grid_picture(frame.bgr, config.audience)
    if args.no_window or not display_available():
        return _write_png(picture, args, name)
    return _click(picture, frame.shape_hw)


def _write_png(picture, args: argparse.Namespace, source_name: str) -> int:
    import cv2

    from ..outputs.files import write_bytes

    out = args.out or Path("out") / f"{Path(source_name.rstrip('/')).stem or 'source'}_zones.png"
    ok, png = cv2.imencode(".png", picture)
    if not ok:
        raise SinkError(f"could not encode the {picture.shape[1]}x{picture.shape[0]} picture as PNG")
    write_bytes(out, png.tobytes(), args.overwrite, "zones picture")
    sys.stdout.write(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]}): read the corners of each zone off its "
                     f"grid (relative coordinates, 0-1, y down) and write them under 'audience:' in the config, e.g.\n"
                     f"{config_snippet([(0.2, 0.3), (0.6, 0.3), (0.6, 0.9), (0.2, 0.9)], 'shelf')}\n")
    return 0


def _click(picture, shape_hw: Tuple[int, int]) -> int:
    """The window: clicks print points, Enter prints the shape, q / Esc / closing ends."""
    import cv2

    points: List[Tuple[float, float]] = []
    shapes = 0

    def on_mouse(event, x, y, flags, param) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            points.append(relative_point(x, y, shape_hw))
            sys.stdout.write(f"[{points[-1][0]:g}, {points[-1][1]:g}]\n")
            sys.stdout.flush()

    # No toolbar (Qt builds add one): a click lands on the picture at its own pixel.
    cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    cv2.setMouseCallback(WINDOW_NAME, on_mouse)
    try:
        while True:
            shown = picture.copy()
            h, w = shape_hw
            pixels = [(round(x * (w - 1)), round(y * (h - 1))) for x, y in points]
            for a, b in zip(pixels, pixels[1:]):
                cv2.line(shown, a, b, _POINT_COLOR, 1, cv2.LINE_AA)
            for point in pixels:
                cv2.circle(shown, point, 3, _POINT_COLOR, -1, cv2.LINE_AA)
            cv2.imshow(WINDOW_NAME, shown)
            key = cv2.waitKey(50) & 0xFF
            if key in (ord("q"), _KEY_ESC) or cv2.getWindowProperty(WINDOW_NAME, cv2.WND_PROP_VISIBLE) < 1:
                break
            if key in (*_KEY_ENTER, _KEY_SPACE) and len(points) >= 2:
                shapes += 1
                sys.stdout.write(config_snippet(points, f"zone{shapes}" if len(points) > 2 else f"line{shapes}") + "\n")
                sys.stdout.flush()
                points.clear()
            elif key in _KEY_BACKSPACE and points:
                points.pop()
    finally:
        cv2.destroyWindow(WINDOW_NAME)
    return 0

