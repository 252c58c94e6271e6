"""Which files a run will write, checked before the first frame.

The default output of each kind of source, and ``check_outputs``: an output that would destroy the
source or another output, replace a file without ``--overwrite``, have the wrong type, or sit where
nothing can be written is refused before any work, with a one-line SinkError; temporary files that
killed runs left beside the outputs are removed.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import SinkError
from ..sources.formats import OUTPUT_IMAGE_SUFFIXES, VIDEO_SUFFIXES
from .files import is_special, make_parent, os_reason, part_path, remove_stale_parts
from .recording import next_segment_number, segment_path
from .sinks import image_output_path

DEFAULT_OUT_DIR = Path("out")
# Where a restarted live run puts the earlier run's report: <report folder>/earlier/<time>/.
EARLIER_REPORTS = "earlier"

log = logging.getLogger(__name__)


def default_output(kind: str, name: str) -> Optional[Path]:
    stem = Path(name).stem or "source"
    if kind == "image":
        suffix = Path(name).suffix.lower()
        return DEFAULT_OUT_DIR / f"{stem}_annotated{suffix if suffix in OUTPUT_IMAGE_SUFFIXES else '.jpg'}"
    if kind == "folder":
        return DEFAULT_OUT_DIR / f"{Path(name).name or 'images'}_annotated"
    if kind == "file":
        return DEFAULT_OUT_DIR / f"{stem}_annotated.mp4"
    return None  # live: record only when asked, a camera can fill a disk


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_writable(path: Path, what: str, overwrite: bool, folder: bool = False, kept: bool = False) -> None:
    """Before the first frame: ``path`` can be written (its folder exists or can be made, and
    takes a new file) and does not replace anything without ``overwrite`` or ``kept`` (a file a
    live run continues or renews). SinkError otherwise."""
    if is_special(path):
        try:
            with open(path, "ab"):
                pass
        except OSError as error:
            raise SinkError(f"{what} {path}: cannot be opened for writing ({os_reason(error)})") from None
        return
    if path.is_dir() and not folder:
        raise SinkError(f"{what} {path} is a folder; expected a file path")
    if path.exists() and not path.is_dir():
        if folder:
            raise SinkError(f"{what} {path} is a file; expected a folder (or a path that does not exist yet)")
        if not (overwrite or kept):
            raise SinkError(f"{what} {path} already exists; pass --overwrite to replace it, or choose another path")
        if not os.stat(path).st_mode & 0o222:
            raise SinkError(f"{what} {path} is read-only; make it writable or choose another path")
    make_parent(path / "x" if folder else path, what)
    probe = part_path((path if folder else path.parent) / "write-test")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.unlink(probe)
    except OSError as error:
        raise SinkError(f"{what} {path}: cannot write in {probe.parent} ({os_reason(error)}); "
                        "choose a path in a writable folder") from None


def _planned_files(kind: str, output: Optional[Path], image_paths: Sequence[Path],
                   segmented: bool) -> List[Tuple[Path, str]]:
    """The annotated files a run will write, with what to call them in messages."""
    if output is None:
        return []
    if kind in ("file", "live"):
        if output.suffix.lower() not in VIDEO_SUFFIXES:
            got = "an image path" if output.suffix.lower() in OUTPUT_IMAGE_SUFFIXES else f"'{output.suffix or 'no suffix'}'"
            raise SinkError(f"--output {output}: this run writes a video, but got {got}; "
                            f"use one of {', '.join(VIDEO_SUFFIXES)}")
        return [(segment_path(output, next_segment_number(output)) if segmented else output, "output video")]
    if kind == "image" and output.suffix and output.suffix.lower() not in OUTPUT_IMAGE_SUFFIXES:
        raise SinkError(f"--output {output}: this run writes an image, but got '{output.suffix}'; "
                        f"use one of {', '.join(OUTPUT_IMAGE_SUFFIXES)} (or a folder)")
    if kind == "folder" and output.suffix.lower() in OUTPUT_IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise SinkError(f"--output {output}: a folder of photos writes a folder of images, but got a file "
                        "name; pass a folder path")
    return [(image_output_path(kind, output, str(path)), "output image") for path in image_paths]


def check_outputs(kind: str, source: str, image_paths: Sequence[Path], output: Optional[Path],
                  others: Sequence[Tuple[Optional[Path], str]], overwrite: bool, segmented: bool,
                  kept: Sequence[Optional[Path]] = ()) -> None:
    """Refuse, before any work, outputs that would destroy the source or each other, replace a file
    without ``overwrite``, have the wrong type, or sit where nothing can be written. ``kept``: the
    ones of ``others`` that may exist already (a live run appends to its events file and renews
    its summary); a segmented recording continues after its highest segment."""
    source_path = Path(source).expanduser()
    local = source_path.exists()
    inputs = list(image_paths) or ([source_path] if local else [])
    files = _planned_files(kind, output, image_paths, segmented)
    files += [(path, what) for path, what in others if path is not None]
    if kind == "folder" and output is not None and local and _same_file(output, source_path):
        raise SinkError(f"--output {output} is the source folder; its photos would be overwritten; choose another folder")
    seen: Dict[Path, str] = {}
    for path, what in files:
        for src in inputs:
            if _same_file(path, src):
                raise SinkError(f"{what} {path} is the source {src}; writing it would destroy the input; "
                                "choose another path")
        key = path.resolve()
        if key in seen and not is_special(path):
            raise SinkError(f"{what} {path} is also the {seen[key]}; give each output its own path")
        seen[key] = what
    if kind == "folder" and output is not None:
        _check_writable(output, "output folder", overwrite, folder=True)
    for path, what in files:
        _check_writable(path, what, overwrite, kept=path in kept)
    remove_stale_parts([path for path, _ in files if not is_special(path)],
                       [output] if segmented and output is not None else [])


def continue_live_outputs(output: Optional[Path], segmented: bool, report_files: Sequence[Path]) -> Optional[Path]:
    """A live run that starts again (a service restarted after a crash, a stop or a reboot) keeps
    what the earlier run wrote, unasked and without --overwrite: a one-file recording
    (``output.segment_s: 0``) that exists is kept and this run records to the first free
    ``<stem>.<N><suffix>`` (N from 2; a segmented one continues its numbering by itself), and an
    earlier report in the report folder is moved to ``<folder>/earlier/<its time>/``, this run's
    report taking its place. Returns the recording's path for this run."""
    if output is not None and not segmented and output.exists() and not is_special(output) and not output.is_dir():
        earlier, number = output, 2
        while output.exists():
            output = earlier.with_name(f"{earlier.stem}.{number}{earlier.suffix}")
            number += 1
        log.info("%s holds an earlier run's recording (kept); this run records to %s", earlier, output)
    found = [path for path in report_files if path.is_file()]
    if found:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(path.stat().st_mtime for path in found)))
        folder = found[0].parent / EARLIER_REPORTS / stamp
        number = 2
        while folder.exists():
            folder = folder.with_name(f"{stamp}.{number}")
            number += 1
        folder.mkdir(parents=True)
        for path in found:
            os.replace(path, folder / path.name)
        log.info("report folder %s held an earlier run's report: moved to %s", found[0].parent, folder)
    return output
