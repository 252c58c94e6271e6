"""The people report: one counter of people by label (``tally.py``), the report built from events
(``build.py``), its page and charts (``page.py``), and the ``report`` command (``command.py``).

``build``'s names are imported on first use: every tracked run counts people with ``tally``, but
only ``--report`` and the ``report`` command build one (issue 27: start-up time)."""

from __future__ import annotations

from typing import Any

from .tally import LabelCounts, PeopleTally

__all__ = ["LabelCounts", "PeopleReport", "PeopleTally", "ReportSink", "read_events", "write_report"]
_FROM_BUILD = ("PeopleReport", "ReportSink", "read_events", "write_report")


def __getattr__(name: str) -> Any:
    if name in _FROM_BUILD:
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
