"""``streamer models list|fetch|verify``: what is present, fetching, and checking checksums, as a
table on stdout."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Sequence

from ..config import Config
from .store import FAILED, MANUAL, MISSING, OPTIONAL, UNVERIFIED, ModelStore


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``models fetch [ids...] [--force] | list | verify [ids...]``: a table on stdout; 0 if all good, else 1."""
    out = sys.stdout
    store = ModelStore.from_config(args.config_obj.models)
    out.write(f"models directories (searched in order): {os.pathsep.join(str(d) for d in store.dirs)}\n")
    if args.action == "list":
        rows = []
        for model in store.list():
            for report in model["files"]:
                rows.append([model["id"], model["task"], model["licence"], model["provided_by"], report.filename,
                             str(report.path) if report.path else "missing"])
        out.write(_table(rows, ["model", "task", "licence", "provided by", "file", "location"]) + "\n")
        return 0
    if args.action == "fetch":
        reports = store.fetch(args.ids, force=args.force)
    else:
        reports = store.verify(args.ids)
        if not args.ids:
            reports = _optional_marked(reports, args.config_obj)
    rows = [[r.model_id, r.filename, r.status, str(r.path) if r.path else "-"] for r in reports]
    out.write(_table(rows, ["model", "file", "status", "path"]) + "\n")
    bad = [r for r in reports if r.status in (FAILED, MISSING) or (r.status == MANUAL and args.ids)]
    for report in reports:
        if report.status in (UNVERIFIED, MANUAL) or report in bad:
            out.write(f"{report.model_id}/{report.filename}: {report.status}: {report.detail}\n")
    optional = sorted({r.model_id for r in reports if r.status == OPTIONAL})
    if optional:
        out.write(f"not needed by this config, and absent (fine; `models fetch ID` when wanted): "
                  f"{', '.join(optional)}\n")
    if bad:
        out.write(f"{len(bad)} file(s) {'could not be fetched' if args.action == 'fetch' else 'missing or corrupt'}"
                  f"{'' if args.action == 'fetch' or args.ids else ' that this config needs'}\n")
        return 1
    return 0


def _optional_marked(reports, config: Config):
    """``verify``'s reports with the absent files that ``config`` does not need (``doctor.needed_models``,
    the mask detector of ``--anonymize`` included) marked ``optional``: a fresh install that fetched
    only what it uses verifies clean. A damaged file stays ``failed``, needed or not."""
    from ..doctor import needed_models  # doctor imports the command line's pieces: imported when used

    needed = needed_models(config, with_mask_detector=True)

    def is_needed(model_id: str, filename: str) -> bool:
        if model_id not in needed:
            return False
        files = needed[model_id]
        return files is None or filename in files

    return [dataclasses.replace(r, status=OPTIONAL, detail="not needed by this config")
            if r.status in (MISSING, MANUAL) and not is_needed(r.model_id, r.filename) else r for r in reports]
