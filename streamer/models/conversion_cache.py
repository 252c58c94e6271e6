"""A converted network cached beside its source files: converted once, reused while it matches.

Both converters (``detectors/caffe2onnx.py`` for res10, ``models/tfjs2onnx.py`` for face-api's
AgeGenderNet) turn files of another format into ONNX bytes at load time. The result is written as
``<name>.onnx`` with a sidecar ``<name>.onnx.json`` that vouches for it: the converter's version,
each source file's name, size, mtime and sha256, the graph's sha256, and whatever the converter
needs besides the graph (``extra``). A cache whose sources or converter changed, or that is
damaged, is converted again; with no writable folder the conversion runs in memory each start.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..errors import ModelError
from .fetch import is_writable, write_checked
from .store import file_sha256

logger = logging.getLogger(__name__)

# What a conversion gives: the ONNX bytes and the JSON-able facts a loader needs besides them.
Converted = Tuple[bytes, Dict[str, Any]]


def cache_paths(folder: Path, name: str) -> Tuple[Path, Path]:
    """``(<name>.onnx, <name>.onnx.json)`` in ``folder``: the graph and its sidecar."""
    onnx = Path(folder) / f"{name}.onnx"
    return onnx, onnx.with_name(onnx.name + ".json")


def cached_conversion(
    sources: Sequence[Path], name: str, cache_dirs: Sequence[Path], version: int, convert: Callable[[], Converted],
) -> Converted:
    """``convert()``, done once: the result is cached in the first of ``cache_dirs`` that may be
    written (beside the model first, usually) and reused from any of them while it matches
    ``sources`` and ``version``. With no writable folder the conversion runs in memory."""
    sources = [Path(s) for s in sources]
    for folder in cache_dirs:
        cached = read_cache(sources, version, *cache_paths(folder, name))
        if cached is not None:
            return cached
    converted = convert()
    for folder in cache_dirs:
        if may_write(folder):
            try:
                write_cache(converted, sources, version, *cache_paths(folder, name))
            except (OSError, ModelError) as error:
                logger.warning("could not cache the ONNX conversion of %s in %s (%s); it runs again at the next start",
                               sources[-1].name, folder, error)
                continue
            logger.info("converted %s to ONNX once; cached at %s", sources[-1].name, folder)
            break
    return converted


def may_write(folder: Path) -> bool:
    """``folder`` is writable by its mode bits (``fetch.is_writable``: root too keeps off a read-only
    shared models folder), or does not exist yet and could be made in its nearest existing parent."""
    if folder.is_dir():
        return is_writable(folder)
    parent = next((p for p in folder.parents if p.is_dir()), None)
    return parent is not None and is_writable(parent)


def _source_record(path: Path) -> Dict[str, Any]:
    info = path.stat()
    return {"name": path.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": file_sha256(path)}


def _sources_match(records: Any, sources: Sequence[Path]) -> bool:
    """The sidecar's sources are these files: same size and mtime (no hashing at each start), or,
    when a file was touched, the same sha256."""
    if not isinstance(records, list) or len(records) != len(sources):
        return False
    for record, path in zip(records, sources):
        info = path.stat()
        if record.get("name") != path.name or record.get("size") != info.st_size:
            return False
        if record.get("mtime_ns") != info.st_mtime_ns and record.get("sha256") != file_sha256(path):
            return False
    return True


def read_cache(sources: Sequence[Path], version: int, onnx_path: Path, sidecar: Path) -> Optional[Converted]:
    """The cached conversion when its sidecar vouches for it, else None (logged when it is stale
    or damaged)."""
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta.get("converter") != version or not _sources_match(meta.get("sources"), sources):
            logger.info("the cached ONNX conversion %s is of other files or another converter: converting again", onnx_path)
            return None
        data = onnx_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("onnx_sha256"):
            logger.warning("the cached ONNX conversion %s is damaged (sha256 differs): converting again", onnx_path)
            return None
        extra = meta.get("extra", {})
        if not isinstance(extra, dict):
            raise ValueError("'extra' is not an object")
        return data, extra
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        logger.warning("the cached ONNX conversion %s cannot be read (%s): converting again", onnx_path, error)
        return None


def write_cache(converted: Converted, sources: Sequence[Path], version: int, onnx_path: Path, sidecar: Path) -> None:
    """The graph first, then the sidecar that vouches for it: a crash in between leaves a graph
    without a matching sidecar, which is rebuilt."""
    onnx, extra = converted
    digest = hashlib.sha256(onnx).hexdigest()
    write_checked([onnx], onnx_path, [digest], "the converter")
    meta = {
        "converter": version,
        "sources": [_source_record(path) for path in sources],
        "onnx_sha256": digest,
        "extra": extra,
    }
    write_checked([json.dumps(meta, indent=1).encode()], sidecar, [], "the converter")
