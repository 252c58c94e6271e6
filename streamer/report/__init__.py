"""The people report: one counter of people by label (``tally.py``), the report built from events
(``build.py``), its page and charts (``page.py``), and the ``report`` command (``command.py``)."""

from .build import PeopleReport, ReportSink, write_report
from .events import read_events
from .tally import LabelCounts, PeopleTally

__all__ = ["LabelCounts", "PeopleReport", "PeopleTally", "ReportSink", "read_events", "write_report"]
