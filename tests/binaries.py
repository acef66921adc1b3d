"""Real binaries the tests drive (promtool, amtool, prometheus, alertmanager, PostgreSQL).

`make test` installs them from Debian's packages when it runs as root (scripts/system-deps.sh).
Where they are missing, a test that needs one skips with the reason outside CI and fails in CI
(CI set to anything but empty, 0, false or no): a green CI must mean the tools really ran.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

# Which Debian package provides each binary, for the message.
PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "alertmanager": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "initdb": "postgresql",
    "postgres": "postgresql",
    "openssl": "openssl",
}
POSTGRES_BIN = "/usr/lib/postgresql/*/bin"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, *alternatives: str) -> str:
    """The path of `name` (or the first alternative found on PATH).

    Missing: fails the test in CI, skips it elsewhere, naming the package to install."""
    for candidate in (name, *alternatives):
        path = shutil.which(candidate)
        if path is not None:
            return path
    missing(name, "on PATH")


def require_postgres_binary(name: str, search: str = POSTGRES_BIN) -> str:
    """A PostgreSQL server program (initdb, postgres). Debian keeps them off PATH, in
    /usr/lib/postgresql/<major>/bin: PATH first, then the newest major there."""
    path = shutil.which(name)
    if path is not None:
        return path
    for directory in sorted(glob.glob(search), key=_major, reverse=True):
        candidate = Path(directory, name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    missing(name, f"on PATH or in {search}")


def _major(directory: str) -> int:
    version = Path(directory).parent.name
    return int(version) if version.isdigit() else -1


def missing(name: str, where: str) -> NoReturn:
    """Fail in CI, skip elsewhere, naming the Debian package to install."""
    package = PACKAGES.get(name, name)
    reason = (
        f"{name} not found {where} (Debian package {package!r}: "
        f"`make test` as root installs it, or apt-get install {package})"
    )
    if in_ci():
        pytest.fail(f"{reason}; CI must run it, not skip it", pytrace=False)
    pytest.skip(reason)
