"""The floor of any annotated-video run: a plain OpenCV loop that decodes a clip and encodes it
again (mp4v, the app's first codec), nothing else imported. run_bench.py runs it as a child.

    python3 bench/floor.py CLIP OUT.mp4 FIRST_FRAME_MARKER RESULT.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2


def main(clip: str, output: str, first_path: str, out_json: str) -> int:
    capture = cv2.VideoCapture(clip, cv2.CAP_FFMPEG)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    frames = 0
    t_loop = time.monotonic()
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if writer is None:
                writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"), fps, (bgr.shape[1], bgr.shape[0]))
            writer.write(bgr)
            frames += 1
            if frames == 1:
                Path(first_path).write_text("1\n", encoding="utf-8")
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    elapsed = time.monotonic() - t_loop
    result = {"mode": "floor", "frames": frames, "fps": round(frames / elapsed, 2) if elapsed > 0 else 0.0,
              "elapsed_s": round(elapsed, 3), "opencv": cv2.__version__}
    Path(out_json).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
