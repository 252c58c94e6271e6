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
import os
from pathlib import Path

from .errors import SinkError

_part_numbers = itertools.count(1)


def part_path(final: Path) -> Path:
    """The temporary name ``final`` is written under: the same folder (so ``os.replace`` is atomic)
    and the same suffix (OpenCV chooses the container from it), hidden, unique to this process."""
    final = Path(final)
    return final.with_name(f".{final.stem}.part-{os.getpid()}-{next(_part_numbers)}{final.suffix}")


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


def publish(part: Path, final: Path, overwrite: bool) -> None:
    """Move the finished ``part`` to ``final``. Without ``overwrite`` an existing ``final`` (made
    meanwhile by another run) is kept and the SinkError says where this run's file is."""
    appeared = (f"{final} appeared while this run was writing it (another run?); it was left as it is and "
                f"this run's file kept at {part}; pass --overwrite to replace it")
    try:
        if overwrite:
            os.replace(part, final)
            return
        try:
            os.link(part, final)  # atomic "create if absent"
        except FileExistsError:
            raise SinkError(appeared) from None
        except OSError:  # no hard links here (FAT, some network shares): check, then rename
            if os.path.lexists(final):
                raise SinkError(appeared) from None
            os.replace(part, final)
            return
        os.unlink(part)
    except OSError as error:
        raise SinkError(f"{final}: could not move the finished file into place ({os_reason(error)}); "
                        f"it is at {part}") from None


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
