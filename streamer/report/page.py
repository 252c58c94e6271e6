"""The people report's charts (PNG, matplotlib) and its one-page HTML.

The page is self-contained so it can be mailed or opened from a USB stick: charts are embedded as
``data:`` URIs, the CSS is inline and a Content-Security-Policy forbids every fetch. matplotlib is
the ``report`` extra (wheels for x86-64 and aarch64), imported on first use with the Agg canvas
and no pyplot (no global figure state, no display); without it the page shows the same numbers as
tables. A live run's events carry their capture time ("timestamp"): the page says when by the
clock (the zone of the machine that makes the report). A file's events say where in the file:
times from the first frame of the events.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence
from urllib.parse import urlsplit

# One colour per gender, kept across charts and table; unknown in grey.
_COLOURS = {"female": "#c2417a", "male": "#2b7bb9", "unknown": "#a0a0a0"}
# 1000x500 px at 100 dpi (2x for a sharp picture on high-density screens): labels and ticks read at
# the page's width; 600x300 needed a zoom.
_CHART_SIZE_IN, _CHART_DPI = (10.0, 5.0), 100
_CHART_SCALE = 2
_IN_VIEW = "#4a8c5c"
# People in view over time is drawn as bars up to this many time bins (each readable), as a filled
# step curve beyond.
_MAX_BARS = 120
# The page lists this many people at most (a months-long run has thousands): all are in people.csv.
_MAX_TABLE_ROWS = 1000


def draw_charts(summary: dict) -> Optional[Dict[str, bytes]]:
    """``{file name: PNG bytes}`` for the three charts, or None when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None

    def new_axes():
        figure = Figure(figsize=_CHART_SIZE_IN, dpi=_CHART_DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.spines[["top", "right"]].set_visible(False)
        return figure, axes

    def png(figure) -> bytes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=_CHART_DPI * _CHART_SCALE, metadata={"Software": None})
        return buffer.getvalue()

    charts = {}
    figure, axes = new_axes()
    table = summary["by_age_group_and_gender"]
    groups = [group for group, cells in table.items() if group != "unknown" or sum(cells.values())]
    bottom = [0] * len(groups)
    for gender, colour in _COLOURS.items():
        counts = [table[group][gender] for group in groups]
        if any(counts) or gender != "unknown":
            axes.bar(groups, counts, bottom=bottom, color=colour, label=gender)
            bottom = [b + c for b, c in zip(bottom, counts)]
    axes.set_title("People by age group and gender")
    axes.set_xlabel("age group (years)")
    axes.set_ylabel("people")
    axes.set_ylim(0, max(1, max(bottom, default=0)) * 1.1)
    axes.legend(frameon=False)
    charts["age_gender.png"] = png(figure)

    figure, axes = new_axes()
    in_view, peak = summary["in_view"], summary["peak"]
    unit, scale = _time_unit(in_view["bin_s"])
    values = [math.nan if v is None else v for v in in_view["people"]]
    width = in_view["bin_s"] / scale
    if len(values) <= _MAX_BARS:
        axes.bar([i * width for i in range(len(values))], values, width=width, align="edge", color=_IN_VIEW,
                 edgecolor="white", linewidth=0.5)
    else:  # one filled step curve: thousands of bars are slow to draw and read as noise
        edges = [i * width for i in range(len(values) + 1)]
        heights = values + values[-1:]
        axes.fill_between(edges, heights, step="post", color=_IN_VIEW, linewidth=0,
                          where=[not math.isnan(h) for h in heights])
    axes.set_title(f"Most people in view at once, per {unit}")
    start = time_of_day(in_view.get("start_time"))
    axes.set_xlabel(f"{unit}s from {start}" if start else f"time from the start ({unit}s)")
    axes.set_ylabel("people in view")
    axes.set_ylim(0, max(1, peak["people"]) * 1.15)
    axes.set_xlim(0, max(1, len(values)) * in_view["bin_s"] / scale)
    if peak["people"] and peak["t_s"] is not None:
        at = (peak["t_s"] - in_view["start_t_s"]) / scale
        axes.annotate(f"peak {peak['people']}", (at, peak["people"]), textcoords="offset points",
                      xytext=(4, 4), fontsize=9)
    charts["in_view.png"] = png(figure)

    figure, axes = new_axes()
    bands = summary["dwell"]["bands"]
    axes.bar([band["label"] for band in bands], [band["people"] for band in bands], color="#7a5ea8")
    axes.set_title("Time in view per person")
    axes.set_xlabel("time in view")
    axes.set_ylabel("people")
    axes.set_ylim(0, max(1, max((band["people"] for band in bands), default=0)) * 1.1)
    axes.tick_params(axis="x", labelsize=8 if len(bands) > 6 else 10)
    charts["dwell.png"] = png(figure)
    audience = summary.get("audience")
    if audience and audience["zones"]:
        charts.update(_zone_charts(audience, new_axes, png))
    return charts


# Age groups in the zone-entries chart: one colour each along a sequential ramp (young light, old
# dark), unknown in grey.
_GROUP_CMAP = "viridis_r"
# Zones drawn as panels of the entries chart; the rest are in the tables and zones.csv.
_MAX_ZONE_PANELS = 4


def _zone_charts(audience: dict, new_axes, png) -> Dict[str, bytes]:
    """Zone entries per time bin stacked by age group (one panel per zone, the first
    _MAX_ZONE_PANELS), and each zone's visits per dwell band."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    charts = {}
    entries = audience["entries"]
    unit, scale = _time_unit(entries["bin_s"])
    zones = list(audience["zones"])
    shown = zones[:_MAX_ZONE_PANELS]
    groups: List[str] = []
    for zone_bins in entries["zones"].values():
        for row in zone_bins:
            groups += [key for key in row if key != "t_s" and key not in groups]
    groups.sort(key=lambda group: (group == "unknown", _group_start(group)))
    ramp = colormaps[_GROUP_CMAP]
    colours = {group: _COLOURS["unknown"] if group == "unknown" else ramp(0.15 + 0.75 * i / max(1, len(groups) - 1))
               for i, group in enumerate(groups)}
    starts = [row["t_s"] for bins in entries["zones"].values() for row in bins]
    first = min(starts) if starts else 0.0
    last = max(starts) if starts else 0.0
    width = entries["bin_s"] / scale
    figure = Figure(figsize=(_CHART_SIZE_IN[0], 0.9 + 1.3 * len(shown)), dpi=_CHART_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for axes, zone in zip(panels, shown):
        bins = entries["zones"].get(zone, [])
        x = [(row["t_s"] - first) / scale for row in bins]
        bottom = [0] * len(bins)
        for group in groups:
            counts = [row.get(group, 0) for row in bins]
            if any(counts):
                axes.bar(x, counts, width=width, bottom=bottom, align="edge", color=colours[group],
                         edgecolor="white", linewidth=0.4)
                bottom = [b + c for b, c in zip(bottom, counts)]
        axes.set_ylabel(zone, fontsize=9)
        axes.set_ylim(0, max(1, max(bottom, default=0)) * 1.15)
        axes.set_xlim(0, (last - first) / scale + width)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.spines[["top", "right"]].set_visible(False)
    panels[0].set_title(f"Zone entries per {_bin_name(entries['bin_s'])}, by age group"
                        + (f" (first {len(shown)} of {len(zones)} zones)" if len(shown) < len(zones) else ""))
    panels[-1].set_xlabel(f"{unit}s from the first entry")
    handles = [_patch(colours[group]) for group in groups]
    if handles:
        figure.legend(handles, groups, loc="outside right upper", frameon=False, fontsize=8)
    charts["zone_entries.png"] = png(figure)

    figure, axes = new_axes()
    labels = [band["label"] for band in audience["zones"][zones[0]]["dwell_bands"]]
    width = 0.8 / len(zones)
    for z, zone in enumerate(zones):
        counts = [band["visits"] for band in audience["zones"][zone]["dwell_bands"]]
        axes.bar([i + z * width for i in range(len(labels))], counts, width=width, align="edge", label=zone)
    axes.set_xticks([i + 0.4 for i in range(len(labels))], labels)
    axes.set_title("Time in each zone per visit")
    axes.set_xlabel("dwell time")
    axes.set_ylabel("visits")
    axes.tick_params(axis="x", labelsize=8 if len(labels) > 6 else 10)
    axes.legend(frameon=False, fontsize=8)
    charts["zone_dwell.png"] = png(figure)
    return charts


def _patch(colour):
    from matplotlib.patches import Patch

    return Patch(color=colour)


def _group_start(group: str) -> int:
    digits = "".join(ch for ch in group.split("-")[0] if ch.isdigit())
    return int(digits) if digits else 0


def _bin_name(bin_s: float) -> str:
    return {300.0: "5 minutes", 3600.0: "hour", 86400.0: "day"}.get(bin_s, f"{bin_s:g} s")


def shown_source(source: Optional[str]) -> str:
    """The source as the page names it: a file's or folder's name without its folders, a stream's
    address without its login, query or folders (``rtsp://cam.lan/stream1``)."""
    if not source:
        return "unknown source"
    if "://" in source:
        parts = urlsplit(source)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}/{Path(parts.path).name}"
    return Path(source.rstrip("/\\")).name or source


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _time_unit(bin_s: float):
    if bin_s >= 3600:
        return "hour", 3600.0
    if bin_s >= 60:
        return "minute", 60.0
    return "second", 1.0


def time_of_day(iso: Optional[str]) -> Optional[str]:
    """``"2026-12-02T14:30:05+01:00"`` -> ``"14:30:05"``; None -> None."""
    return None if iso is None else datetime.fromisoformat(iso).strftime("%H:%M:%S")


def _span(summary: dict, fine: bool) -> str:
    """When the events run: clock times for a live run's events, else from 0 to the duration."""
    if summary["duration_s"] is None:
        return "no frames"
    length = duration(summary["duration_s"])
    if summary.get("first_time") and summary.get("last_time"):
        first, last = datetime.fromisoformat(summary["first_time"]), datetime.fromisoformat(summary["last_time"])
        day = f"{first.day} {first:%b %Y}"
        end = f"{last:%H:%M:%S}" if last.date() == first.date() else f"{last.day} {last:%b %Y} {last:%H:%M:%S}"
        offset = f"{first:%z}"  # "+0100"
        return f"{day} {first:%H:%M:%S} to {end} ({length}, UTC{offset[:3]}:{offset[3:]})"
    return f"{clock(0.0, fine)} to {clock(summary['duration_s'], fine)} ({length})"


def clock(seconds: Optional[float], fine: bool = False) -> str:
    """``75.25`` -> ``"1:15"`` (``"1:15.3"`` when ``fine``), ``3725`` -> ``"1:02:05"``; None -> ``"-"``."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    whole, fraction = divmod(seconds, 1.0)
    hours, rest = divmod(int(whole), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return text + (f".{int(fraction * 10)}" if fine else "")


def duration(seconds: Optional[float]) -> str:
    """``4.83`` -> ``"4.8 s"``, ``754`` -> ``"12 min 34 s"``, ``7300`` -> ``"2 h 1 min"``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#f6f6f4}
main{max-width:1320px;margin:0 auto;padding:20px 28px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px}h3{font-size:15px;margin:18px 0 6px}
.sub{color:#555;margin:0 0 18px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:28px;line-height:1.2}.card span{color:#555;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:8px;padding:6px;flex:1 1 100%}
figure img{display:block;width:100%;max-width:1000px;height:auto}
figcaption{font-size:13px;color:#555;padding:4px 6px 0}
table{border-collapse:collapse;background:#fff;font-size:14px}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:right}th{background:#eee}
td.l,th.l{text-align:left}
.note{background:#fff8e1;border:1px solid #e6d28a;border-radius:6px;padding:8px 12px;margin:14px 0}
.dot{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}
footer{color:#666;font-size:13px;margin-top:26px}
"""


def render_html(summary: dict, rows: Sequence[dict], charts: Optional[Dict[str, bytes]],
                events: Optional[Path] = None) -> str:
    """The whole report page as one HTML string (UTF-8, no external resource)."""
    e = html.escape
    t0 = summary["first_t_s"] or 0.0
    fine = (summary["duration_s"] or 0.0) < 600
    source = shown_source(summary["source"])
    span = _span(summary, fine)
    by_gender, peak, dwell, left = summary["by_gender"], summary["peak"], summary["dwell"], summary["left_out"]
    cards = [
        (summary["people"], _plural(summary["people"], "person", "people")),
        (by_gender["female"], "women"),
        (by_gender["male"], "men"),
        (by_gender["unknown"], "gender unknown"),
        (duration(dwell["median_s"]), "median time in view"),
        (peak["people"], f"most in view at once (at {time_of_day(peak.get('time')) or clock(None if peak['t_s'] is None else peak['t_s'] - t0, fine)})"),
        (left["tracks"], f"seen under {left['min_seen_s']:g} s, left out"),
    ]
    out: List[str] = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: the page must read the same offline and leak nothing when opened.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>People report: {e(source)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>People report: {e(source)}</h1>",
        # Names only, never a folder: the page is meant to be mailed.
        f'<p class="sub">{e(source)} &middot; {e(span)} &middot; {summary["frames"]} frames'
        + (f" &middot; from {e(Path(events).name)}" if events is not None else "") + "</p>",
        '<div class="cards">',
        *(f'<div class="card"><b>{e(str(value))}</b><span>{e(label)}</span></div>' for value, label in cards),
        "</div>",
    ]
    notes = list(summary["warnings"])
    if summary["without_end_record"]:
        still = summary["without_end_record"]
        notes.append(f"{still} {_plural(still, 'person was', 'people were')} still in view where the events stop; "
                     f"{_plural(still, 'the row comes', 'their rows come')} from the frames (ended: false).")
    if charts is None:
        notes.append("Charts not drawn: matplotlib is not installed (pip install 'streamer[report]'); "
                     "the numbers are in the tables below.")
    out += [f'<p class="note">{e(note)}</p>' for note in notes]
    out.append("<h2>Charts</h2>" if charts else "<h2>Counts</h2>")
    if charts:
        captions = {
            "age_gender.png": "People by age group, coloured by gender.",
            "in_view.png": f"Most people in view at once in each {_time_unit(summary['in_view']['bin_s'])[0]}.",
            "dwell.png": "How long each person was in view.",
            "zone_entries.png": "Zone entries over time, stacked by age group.",
            "zone_dwell.png": "How long each visit to a zone lasted.",
        }
        out.append('<div class="charts">')
        for name, data in charts.items():
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            out.append(f'<figure><img src="{uri}" alt="{e(captions[name])}"><figcaption>{e(captions[name])}'
                       "</figcaption></figure>")
        out.append("</div>")
    else:
        out += _count_tables(summary)
    if summary.get("audience"):
        out += _audience_tables(summary["audience"])
    out += _people_table(rows, t0, fine)
    out.append("<footer>Gender and age are estimated from the face by a model, per person from several views: "
               "estimates, not facts: how often they are right is measured in streamer's docs (accuracy). Unknown: the person was not seen well enough to label. "
               "People are counted by face tracks: someone who leaves and comes back later counts again. "
               "All numbers are also in summary.json and people.csv beside this page.</footer>")
    out.append("</main></body></html>\n")
    return "\n".join(out)


def _count_tables(summary: dict) -> List[str]:
    e = html.escape
    out = ['<table><tr><th class="l">age group</th>'
           + "".join(f"<th>{e(g)}</th>" for g in _COLOURS) + "<th>all</th></tr>"]
    for group, cells in summary["by_age_group_and_gender"].items():
        out.append(f'<tr><td class="l">{e(group)}</td>' + "".join(f"<td>{cells[g]}</td>" for g in _COLOURS)
                   + f"<td>{sum(cells.values())}</td></tr>")
    out.append("</table><h2>Time in view</h2><table>")
    out += [f'<tr><td class="l">{e(band["label"])}</td><td>{band["people"]}</td></tr>'
            for band in summary["dwell"]["bands"]]
    unit = _time_unit(summary["in_view"]["bin_s"])[0]
    out.append(f"</table><p>People in view at once, per {unit}: in summary.json (<code>in_view</code>).</p>")
    return out


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else duration(value)


def _percent(share: Optional[float]) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"


def _audience_tables(audience: dict) -> List[str]:
    """Per zone and per line, a row per age group and gender; attention per age group and gender."""
    e = html.escape
    out = ['<h2>Zones, lines and attention</h2>']
    for name, zone in audience["zones"].items():
        out.append(f'<h3>Zone {e(name)}: {zone["people"]} people, {zone["visits"]} visits, dwell median '
                   f'{_seconds(zone["dwell_s"]["p50"])}, {zone["watchers"]} watched the camera '
                   f'({_percent(zone["attention_share"])}), {zone["passers_by"]} passers-by</h3>')
        out.append('<table><tr><th class="l">age group</th><th class="l">gender</th><th>people</th><th>visits</th>'
                   '<th>dwell p50</th><th>dwell p90</th><th>watchers</th><th>attention share</th>'
                   '<th>attention p50</th></tr>')
        for row in zone["by_group"]:
            out.append(f'<tr><td class="l">{e(row["age_group"])}</td><td class="l">{e(row["gender"])}</td>'
                       f'<td>{row["people"]}</td><td>{row["visits"]}</td><td>{_seconds(row["dwell_p50_s"])}</td>'
                       f'<td>{_seconds(row["dwell_p90_s"])}</td><td>{row["watchers"]}</td>'
                       f'<td>{_percent(row["attention_share"])}</td><td>{_seconds(row["attention_p50_s"])}</td></tr>')
        if not zone["by_group"]:
            out.append('<tr><td class="l" colspan="9">nobody entered</td></tr>')
        out.append("</table>")
    for name, line in audience["lines"].items():
        out.append(f'<h3>Line {e(name)}: {line["in"]} people in, {line["out"]} out</h3>')
        out.append('<table><tr><th class="l">age group</th><th class="l">gender</th><th>in</th><th>out</th>'
                   '<th>crossings in</th><th>crossings out</th></tr>')
        for row in line["by_group"]:
            out.append(f'<tr><td class="l">{e(row["age_group"])}</td><td class="l">{e(row["gender"])}</td>'
                       f'<td>{row["in"]}</td><td>{row["out"]}</td><td>{row["crossings_in"]}</td>'
                       f'<td>{row["crossings_out"]}</td></tr>')
        if not line["by_group"]:
            out.append('<tr><td class="l" colspan="6">nobody crossed</td></tr>')
        out.append("</table>")
    attention = audience.get("attention")
    if attention is not None:
        out.append(f'<h3>Attention: {attention["watchers"]} of {attention["people"]} people looked at the camera '
                   f'({_percent(attention["attention_share"])}), {attention["glances"]} glances</h3>')
        out.append('<table><tr><th class="l">age group</th><th class="l">gender</th><th>people</th><th>watchers</th>'
                   '<th>attention share</th><th>glances</th><th>attention p50</th><th>attention p90</th></tr>')
        for row in attention["by_group"]:
            out.append(f'<tr><td class="l">{e(row["age_group"])}</td><td class="l">{e(row["gender"])}</td>'
                       f'<td>{row["people"]}</td><td>{row["watchers"]}</td><td>{_percent(row["attention_share"])}</td>'
                       f'<td>{row["glances"]}</td><td>{_seconds(row["attention_p50_s"])}</td>'
                       f'<td>{_seconds(row["attention_p90_s"])}</td></tr>')
        out.append("</table>")
    out.append("<p>Dwell: time from the first frame in a zone to the first frame out of it. A watcher looked at "
               "the camera (a frontal face) for a glance during the visit; passers-by did not: together they "
               "are the zone's opportunity to see. Counts are per person, labelled as the person finally was; "
               "all of it is in zones.csv, lines.csv and summary.json.</p>")
    return out


def _people_table(rows: Sequence[dict], t0: float, fine: bool) -> List[str]:
    e = html.escape
    out = [f"<h2>People ({len(rows)})</h2>"]
    if not rows:
        return out + ["<p>Nobody was in view long enough to count.</p>"]
    out.append('<table><tr><th>#</th><th>first seen</th><th>last seen</th><th>time in view</th>'
               '<th class="l">gender</th><th>age</th><th class="l">age group</th><th>views used</th></tr>')
    for row in rows[:_MAX_TABLE_ROWS]:
        gender = row["gender"] or "unknown"
        colour = _COLOURS.get(gender, _COLOURS["unknown"])
        probability = f" ({row['gender_p'] * 100:.0f} %)" if row["gender_p"] is not None else ""
        age = "-" if row["age"] is None else f"{row['age']:.0f}"
        if row["age_range"]:
            age += f" ({row['age_range'][0]:.0f}-{row['age_range'][1]:.0f})"
        out.append(
            f"<tr><td>{row['track']}</td><td>{time_of_day(row.get('first_time')) or clock(row['first_t_s'] - t0, fine)}</td>"
            f"<td>{time_of_day(row.get('last_time')) or clock(row['last_t_s'] - t0, fine)}</td><td>{duration(row['seen_s'])}</td>"
            f'<td class="l"><span class="dot" style="background:{colour}"></span>{e(gender + probability)}'
            f'</td><td>{e(age)}</td><td class="l">{e(row["age_group"] or "unknown")}</td>'
            f"<td>{'-' if row['samples'] is None else row['samples']}</td></tr>"
        )
    out.append("</table>")
    if len(rows) > _MAX_TABLE_ROWS:
        out.append(f"<p>The first {_MAX_TABLE_ROWS} of {len(rows)} people; all are in people.csv.</p>")
    return out
