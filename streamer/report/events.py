"""Reading a run's events file for the people report: every usable line in one pass, in memory
bounded for a file of any length; lines that cannot be used are skipped and named."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Protocol, Tuple, TypeVar

from ..errors import SourceError

log = logging.getLogger(__name__)

# An events line is a frame's faces, a few hundred bytes each: a longer line is not one of ours (a
# binary file has no newlines) and is skipped without reading it whole into memory.
MAX_LINE_BYTES = 1 << 20


# A file whose first this many lines hold no event is not an events file: stop reading it.
_FOREIGN_AFTER_LINES = 100


# Line numbers quoted per kind of problem; the rest are counted.
_QUOTED_LINES = 5


class _Problems:
    """Lines that could not be used, by kind, for one warning per kind."""

    def __init__(self) -> None:
        self.lines: Dict[str, List[int]] = {}
        self.details: Dict[str, str] = {}  # the first line's detail, per kind
        self.first: Optional[str] = None

    def add(self, kind: str, number: int, detail: str = "") -> None:
        self.lines.setdefault(kind, []).append(number)
        self.details.setdefault(kind, detail)
        if self.first is None:
            self.first = f"line {number} {kind}{detail}"

    def messages(self, path: Path) -> List[str]:
        out = []
        for kind, numbers in self.lines.items():
            detail = self.details[kind]
            if len(numbers) == 1:
                out.append(f"{path}: line {numbers[0]} {kind}{detail}; skipped")
                continue
            quoted = ", ".join(str(n) for n in numbers[:_QUOTED_LINES])
            quoted += ", ..." if len(numbers) > _QUOTED_LINES else ""
            out.append(f"{path}: {len(numbers)} lines {kind.replace('is ', 'are ', 1)} (lines {quoted}; "
                       f"line {numbers[0]}{detail}); skipped")
        return out


def _lines(handle: io.BufferedReader) -> Iterable[Tuple[bytes, bool]]:
    """``(line, too_long)`` for each line, without ever holding more than MAX_LINE_BYTES of one."""
    while True:
        line = handle.readline(MAX_LINE_BYTES)
        if not line:
            return
        if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # skip the rest of the over-long line
                rest = handle.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
            yield b"", True
            continue
        yield line, False


class EventsReport(Protocol):
    """What ``read_events`` feeds: a ``PeopleReport``, or a ``fleet.FleetReport`` of several cameras."""

    @property
    def warnings(self) -> List[str]: ...

    @property
    def untracked_faces(self) -> int: ...

    def add(self, event: dict) -> None: ...

    def all_rows(self) -> List[dict]: ...


Report = TypeVar("Report", bound=EventsReport)


def read_events(path: Path, report: Report) -> Report:
    """Feed every usable line of the events file ``path`` to ``report``, in one pass. Lines that
    cannot be used (not UTF-8, not JSON, not a streamer event, cut short at the end of the file) are
    skipped and named in warnings (logged and kept in ``report.warnings``). SourceError (exit 2)
    when nothing in the file can be used, or when it comes from a run without tracking."""
    path = Path(path)
    if path.is_dir():
        raise SourceError(f"events file {path} is a folder; pass the .jsonl file a run wrote with --events")
    problems, used, number = _Problems(), 0, 0
    try:
        with open(path, "rb") as handle:
            for number, (raw, too_long) in enumerate(_lines(handle), 1):
                if too_long:
                    problems.add(f"is longer than {MAX_LINE_BYTES // (1 << 20)} MB", number,
                                 " (not an events line: a binary file?)")
                    continue
                if not raw.strip():
                    continue
                cut = not raw.endswith(b"\n")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    problems.add("is not UTF-8 text", number,
                                 f" (byte 0x{raw[error.start]:02x} at column {error.start + 1})")
                    continue
                try:
                    event = json.loads(text)
                except ValueError as error:
                    if cut:
                        problems.add("is cut short (the file ends mid-line: the run was stopped hard or is "
                                     "still writing)", number)
                    else:
                        problems.add("is not JSON", number, f" ({error})")
                    continue
                try:
                    if not isinstance(event, dict):
                        raise ValueError(f"a JSON {type(event).__name__}, not an object")
                    report.add(event)
                    used += 1
                except ValueError as error:
                    problems.add("is not a streamer event", number, f" ({error})")
                if not used and number >= _FOREIGN_AFTER_LINES:
                    break
    except FileNotFoundError:
        raise SourceError(f"events file {path} not found; pass the file a tracked run wrote with --events") from None
    except OSError as error:
        raise SourceError(f"events file {path} cannot be read ({error.strerror or error})") from None
    if number == 0:
        raise SourceError(f"events file {path} is empty: no events to report on; a run writes them with "
                          "--mode tracked --events PATH.jsonl")
    if not used:
        raise SourceError(f"events file {path} holds no streamer events ({problems.first or 'only blank lines'}); "
                          "pass the file a tracked run wrote with --events")
    if report.untracked_faces and not report.all_rows():
        raise SourceError(f"events file {path} comes from a run without tracking (its faces have no 'track' id), "
                          "so people cannot be told apart; rerun with --mode tracked --events PATH.jsonl")
    for message in problems.messages(path):
        log.warning("%s", message)
        report.warnings.append(message)
    return report
