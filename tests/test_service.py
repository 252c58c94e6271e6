"""packaging/streamer.service: systemd's own checker accepts it, and it says what README promises."""

from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest
from conftest import REPO

UNIT = REPO / "packaging" / "streamer.service"
INSTALLED_BINARY = "/opt/streamer/bin/streamer"


def _verify(unit_text: str, folder) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` on a copy whose ExecStart binary exists (verify checks it is
    executable; the real path is only there on an installed box)."""
    fake = folder / "streamer"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = folder / "streamer.service"
    assert INSTALLED_BINARY in unit_text
    unit.write_text(unit_text.replace(INSTALLED_BINARY, str(fake)))
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


def _complaints(result: subprocess.CompletedProcess) -> list:
    # verify exits 0 on warnings it "ignores" (an unknown key, a bad value): every line about our
    # unit counts. Lines about the host's own units (a container without systemd running) do not.
    return [line for line in (result.stdout + result.stderr).splitlines() if "streamer.service" in line]


needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@needs_systemd
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    result = _verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0 and _complaints(result) == [], result.stdout + result.stderr


@needs_systemd
@pytest.mark.parametrize("broken, complaint", [
    (("Restart=on-failure", "Restart=sometimes"), "restart"),
    (("MemoryMax=512M", "MemoryMaximum=512M"), "MemoryMaximum"),
])
def test_verify_catches_a_broken_copy(tmp_path, broken, complaint):
    """The check above can fail: systemd-analyze names a mistyped key or value in the unit."""
    result = _verify(UNIT.read_text().replace(*broken), tmp_path)
    assert any(complaint in line for line in _complaints(result)), result.stdout + result.stderr


def test_unit_runs_headless_as_its_own_user_with_restart_memory_cap_and_cache():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["User"] == "streamer" and service.get("DynamicUser", "no") == "no"
    assert service["Restart"] == "on-failure" and service["MemoryMax"]
    assert service["CacheDirectory"] == "streamer"
    assert service["Environment"] == "STREAMER_MODELS_DIR=/var/cache/streamer/models"
    assert service["EnvironmentFile"] == "/etc/streamer/streamer.env"
    exec_start = service["ExecStart"].split()
    assert exec_start[:2] == [INSTALLED_BINARY, "run"]
    assert "--no-window" in exec_start and exec_start[exec_start.index("--source") + 1] == "${STREAMER_SOURCE}"
    assert parser["Install"]["WantedBy"] == "multi-user.target"
