"""Real binaries the tests drive (promtool, amtool, prometheus, alertmanager, PostgreSQL).

`make test` installs them from Debian's packages when it runs as root (scripts/system-deps.sh).
Where they are missing, a test that needs one skips with the reason outside CI and fails in CI
(CI set to anything but empty, 0, false or no): a green CI must mean the tools really ran.
"""

from __future__ import annotations

import os
import shutil

import pytest

# Which Debian package provides each binary, for the message.
PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "alertmanager": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, *alternatives: str) -> str:
    """The path of `name` (or the first alternative found on PATH).

    Missing: fails the test in CI, skips it elsewhere, naming the package to install."""
    for candidate in (name, *alternatives):
        path = shutil.which(candidate)
        if path is not None:
            return path
    package = PACKAGES.get(name, name)
    reason = (
        f"{name} not found on PATH (Debian package {package!r}: "
        f"`make test` as root installs it, or apt-get install {package})"
    )
    if in_ci():
        pytest.fail(f"{reason}; CI must run it, not skip it", pytrace=False)
    pytest.skip(reason)
