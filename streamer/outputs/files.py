"""Files that are finished or absent: the temporary name a file is written under, the checked
rename into place, and one-line reasons for OS errors.

Each output is written under a temporary name in its own folder (``.<stem>.part-<pid>-<n><suffix>``),
every write is checked, and only a complete file is moved into place, so a reader never sees half a
file and two runs never interleave in one. An existing file is replaced only with ``overwrite``
(``--overwrite``). Devices and FIFOs (``/dev/null``, ``/dev/full``) are written in place: they
cannot be renamed over.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

from ..errors import SinkError

log = logging.getLogger(__name__)

_part_numbers = itertools.count(1)
# part_path's names: ".<stem>.part-<pid>-<n><suffix>".
_PART_NAME = re.compile(r"^\.(?P<stem>.+)\.part-(?P<pid>[0-9]+)-[0-9]+(?P<suffix>\.[^.]*)?$")


def part_path(final: Path) -> Path:
    """The temporary name ``final`` is written under: the same folder (so ``os.replace`` is atomic)
    and the same suffix (OpenCV chooses the container from it), hidden, unique to this process."""
    final = Path(final)
    return final.with_name(f".{final.stem}.part-{os.getpid()}-{next(_part_numbers)}{final.suffix}")


def partial_path(final: Path) -> Path:
    """Where a file is kept that is not published as complete because another output of its run
    failed: ``rec.mp4`` -> ``rec.partial.mp4``, visible and still playable (the same suffix)."""
    final = Path(final)
    return final.with_name(f"{final.stem}.partial{final.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process, alive
        return True
    # A killed run not yet reaped by its parent (a zombie) still answers kill(0) but writes nothing.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (macOS) or the process just ended
        return True


def remove_stale_parts(finals: Iterable[Path], recordings: Iterable[Path] = ()) -> List[Path]:
    """Remove the temporary files (``part_path`` names) of ``finals`` left by runs that were killed
    (SIGKILL, a power cut) before they could clean up: only names of exactly that form, next to
    those outputs, whose process is gone. A file its run finished but could not publish is never
    of that form (``publish`` gives it a visible ``kept_path`` name), so it is never removed. ``recordings``: live recordings whose numbered segments
    (``rec_00001.mp4`` ...) count as outputs too. Logs once what it removed; returns it."""
    wanted: Dict[Path, Set[Tuple[str, str]]] = {}
    for final in finals:
        final = Path(final)
        wanted.setdefault(final.parent, set()).add((final.stem, final.suffix))
        wanted[final.parent].add(("write-test", ""))  # outputs._check_writable's probe
    segments: Dict[Path, List[Tuple[re.Pattern, str]]] = {}
    for path in recordings:
        path = Path(path)
        pattern = re.compile(re.escape(path.stem) + r"_[0-9]{5,}$")  # recording.segment_path's names
        segments.setdefault(path.parent, []).append((pattern, path.suffix))
        wanted.setdefault(path.parent, set()).add(("write-test", ""))
    removed: List[Path] = []
    for folder, names in wanted.items():
        try:
            entries = [entry for entry in folder.iterdir() if entry.name.startswith(".")]
        except OSError:
            continue
        for entry in entries:
            match = _PART_NAME.match(entry.name)
            if match is None:
                continue
            key = (match["stem"], match["suffix"] or "")
            ours = key in names or any(
                pattern.match(key[0]) and key[1] == suffix for pattern, suffix in segments.get(folder, [])
            )
            pid = int(match["pid"])
            if not ours or pid == os.getpid() or _alive(pid) or not entry.is_file():
                continue
            try:
                entry.unlink()
            except OSError:
                continue
            removed.append(entry)
    if removed:
        log.warning("removed %d unfinished temporary file(s) left by a run that was killed: %s%s",
                    len(removed), ", ".join(str(path) for path in removed[:3]), " ..." if len(removed) > 3 else "")
    return removed


def is_special(path: Path) -> bool:
    """True for an existing device or FIFO (``/dev/null``, ``/dev/full``): written in place."""
    try:
        path = Path(path)
        return path.exists() and not path.is_file() and not path.is_dir()
    except OSError:
        return False


def size_text(n_bytes: int) -> str:
    """``1234567`` -> ``"1.2 MB"``, for messages."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def os_reason(error: BaseException) -> str:
    """A short reason for an OSError, for one-line messages."""
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            return "the disk is full (No space left on device)"
        return error.strerror or str(error)
    return str(error)


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_path(path: Path) -> None:
    """Data on disk before the rename: after a power cut the file is whole or absent, never empty."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_parent(path: Path, what: str) -> None:
    """Create ``path``'s folder; a SinkError naming ``what`` when it cannot be made."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SinkError(f"{what} {path}: cannot create its folder, a file is in the way; "
                        "choose another path") from None
    except OSError as error:
        raise SinkError(f"{what} {path}: cannot create its folder ({os_reason(error)}); "
                        "choose a path in a writable folder") from None


def kept_path(final: Path) -> Path:
    """A visible, unused name beside ``final`` for a finished file that could not take its place:
    ``two.mp4`` -> ``two.kept-<pid>.mp4`` (``-2``, ``-3`` ... when taken). Not a ``part_path``
    name, so no later run removes it as a killed run's leftover."""
    final = Path(final)
    for attempt in itertools.count(1):
        tail = "" if attempt == 1 else f"-{attempt}"
        candidate = final.with_name(f"{final.stem}.kept-{os.getpid()}{tail}{final.suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise AssertionError("unreachable")


def _keep_finished(part: Path, final: Path) -> Path:
    """Move a finished ``part`` that cannot become ``final`` to ``kept_path`` (where it stays);
    the part itself when even that fails."""
    kept = kept_path(final)
    try:
        os.replace(part, kept)
    except OSError:
        return part
    return kept


def publish(part: Path, final: Path, overwrite: bool) -> None:
    """Move the finished ``part`` to ``final``. Without ``overwrite`` an existing ``final`` (made
    meanwhile by another run) is kept, this run's file gets a visible name (``kept_path``) and
    the SinkError says where it is."""
    def appeared() -> SinkError:
        kept = _keep_finished(part, final)
        return SinkError(f"{final} appeared while this run was writing it (another run?); it was left as it is and "
                         f"this run's finished file kept at {kept}; pass --overwrite to replace it")

    try:
        if overwrite:
            os.replace(part, final)
            return
        try:
            os.link(part, final)  # atomic "create if absent"
        except FileExistsError:
            raise appeared() from None
        except OSError:  # no hard links here (FAT, some network shares): check, then rename
            if os.path.lexists(final):
                raise appeared() from None
            os.replace(part, final)
            return
        os.unlink(part)
    except OSError as error:
        kept = _keep_finished(part, final)
        raise SinkError(f"{final}: could not move the finished file into place ({os_reason(error)}); "
                        f"it is kept at {kept}") from None


def write_bytes(path: Path, data: bytes, overwrite: bool, what: str) -> None:
    """Write ``data`` as the whole of ``path`` (temporary name, fsync, rename); a SinkError naming
    ``what`` and how much was to be written when any step fails (nothing is left behind then)."""
    path = Path(path)
    if is_special(path):
        try:
            with open(path, "wb") as handle:
                handle.write(data)
        except OSError as error:
            raise SinkError(f"{what} {path}: could not write {size_text(len(data))} ({os_reason(error)})") from None
        return
    make_parent(path, what)
    part = part_path(path)
    try:
        with open(part, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        remove_quietly(part)
        raise SinkError(f"{what} {path} not written: {os_reason(error)} ({size_text(len(data))} to write); "
                        "nothing was left there; free space or choose another path") from None
    publish(part, path, overwrite)
