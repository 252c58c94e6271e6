"""Peak memory of one run by input size: a 640x480 stream, a 1080p stream, big photos.

    python3 bench/memory.py [--cases webcam 1080p photo24 photo48] [--mode tracked] [--json out/memory.json]

Each case is one `run.py` in a fresh process with the default config (no window), writing its
annotated output, events and summary into a temporary folder; the figure is the child's own peak
resident memory (VmHWM from /proc, see run_bench.measure_child). Inputs are made from the shared
media: Tears of Steel (640x360, 240 frames) letterboxed to 640x480 and to 1920x1080 (mp4v), and
the Pexels photo of two women (3458x2282) scaled up and padded to 6000x4000 (24 MP) and
8000x6000 (48 MP, the size measured before), saved as JPEG at quality 90.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from run_bench import (  # noqa: E402
    SHARED,
    _letterbox,
    clip_path,
    make_letterboxed,
    measure_child,
    write_json,  # noqa: E402
)

STREAMS = {"webcam": (640, 480), "1080p": (1920, 1080)}
PHOTOS = {"photo24": (6000, 4000), "photo48": (8000, 6000)}
PHOTO = "pexels_women_on_phones.jpg"  # 2 faces, one ~100 px: small faces must survive the scaling
JPEG_QUALITY = 90


def make_photo(media: Path, size_wh: Tuple[int, int], out_dir: Path) -> Path:
    """The shared photo scaled up (aspect kept) and padded to ``size_wh``, as a JPEG."""
    image = cv2.imread(str(media / PHOTO), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {media / PHOTO}; pass --media with the shared media folder")
    scale = min(size_wh[0] / image.shape[1], size_wh[1] / image.shape[0])
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    out = out_dir / f"photo_{size_wh[0]}x{size_wh[1]}.jpg"
    if not cv2.imwrite(str(out), _letterbox(big, size_wh), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise SystemExit(f"cannot write {out}")
    return out


def measure(case: str, mode: str, media: Path, workdir: Path) -> Dict[str, object]:
    """One run of ``case`` in a fresh process: its peak RSS, size and what the summary says."""
    if case in STREAMS:
        source = make_letterboxed(clip_path("tears", media), STREAMS[case], workdir)
        size_wh, output = STREAMS[case], workdir / f"{case}_out.mp4"
    else:
        source = make_photo(media, PHOTOS[case], workdir)
        size_wh, output = PHOTOS[case], workdir / f"{case}_out.jpg"
    events, summary_path = workdir / f"{case}.jsonl", workdir / f"{case}_summary.json"
    argv = [sys.executable, str(REPO / "run.py"), "--source", str(source), "--mode", mode, "--no-window",
            "--no-progress", "--output", str(output), "--events", str(events), "--summary", str(summary_path),
            "--overwrite"]
    figures = measure_child(argv, events, workdir, case)
    summary = json.loads(summary_path.read_text())
    faces = sum(len(json.loads(line).get("faces", [])) for line in events.read_text().splitlines() if line.strip())
    out_wh = None
    if output.suffix == ".jpg":
        written = cv2.imread(str(output))
        out_wh = None if written is None else (written.shape[1], written.shape[0])
    return {"case": case, "size_wh": size_wh, "mode": mode if case in STREAMS else "photo",
            "peak_rss_mb": figures["peak_rss_mb"], "frames": summary["frames_out"], "faces": faces,
            "output_wh": out_wh}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=[*STREAMS, *PHOTOS], default=[*STREAMS, *PHOTOS])
    parser.add_argument("--mode", choices=("all", "gated", "tracked"), default="tracked", help="for the streams")
    parser.add_argument("--media", type=Path, default=SHARED / "media")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="streamer-memory-") as tmp:
        for case in args.cases:
            rows.append(measure(case, args.mode, args.media, Path(tmp)))
    print("| input | size | mode | peak RSS | frames | faces found | annotated output |")
    print("|---|---|---|---:|---:|---:|---|")
    for row in rows:
        w, h = row["size_wh"]
        out = "video, same size" if row["output_wh"] is None else f"{row['output_wh'][0]}x{row['output_wh'][1]}"
        print(f"| {row['case']} | {w}x{h} | {row['mode']} | {row['peak_rss_mb']} MB | {row['frames']} | "
              f"{row['faces']} | {out} |")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
