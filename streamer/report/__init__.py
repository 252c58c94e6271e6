"""The people report: one counter of people by label (``tally.py``), the report built from events
(``build.py``), its page and charts (``page.py``), and the ``report`` command (``command.py``).

``build``'s names are imported on first use: every tracked run counts people with ``tally``, but
only ``--report`` and the ``report`` command build one (start-up time)."""

from __future__ import annotations

from typing import Any

from .tally import LabelCounts, PeopleTally

__all__ = ["LabelCounts", "PeopleReport", "PeopleTally", "ReportSink", "read_events", "write_report"]
_LAZY = {"PeopleReport": "build", "ReportSink": "build", "write_report": "build", "read_events": "events"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
