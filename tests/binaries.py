"""External programs the tests drive for real. In CI a missing one fails the test; elsewhere it
skips with the reason, so a laptop without Prometheus can still run the rest."""

from __future__ import annotations

import os
import shutil

import pytest

# Debian installs Alertmanager as prometheus-alertmanager
ALIASES = {"alertmanager": ("alertmanager", "prometheus-alertmanager")}


def require_binary(name: str) -> str:
    """The path of `name`, or fail (CI) / skip (elsewhere) naming the Debian package."""
    for candidate in ALIASES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    message = f"{name} is not installed (Debian: apt-get install {package(name)})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; in CI every real peer must run")
    pytest.skip(message)


def package(name: str) -> str:
    return {
        "promtool": "prometheus",
        "amtool": "prometheus-alertmanager",
        "alertmanager": "prometheus-alertmanager",
    }.get(name, name)
