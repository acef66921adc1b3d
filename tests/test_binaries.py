"""tests/binaries.py: a missing binary skips a test outside CI and fails it in CI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.binaries import in_ci, require_binary, require_postgres_binary

MISSING = "remediator-no-such-binary"


def test_a_present_binary_is_found() -> None:
    assert Path(require_binary(Path(sys.executable).name)).is_file()


def test_an_alternative_is_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert require_binary(MISSING, Path(sys.executable).name) == sys.executable


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_outside_ci_a_missing_binary_skips(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_binary(MISSING)


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_in_ci_a_missing_binary_fails(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="CI must run it"):
        require_binary(MISSING)


def test_postgres_binaries_are_found_off_path_newest_major_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for major in ("9", "15", "13"):
        program = tmp_path / "postgresql" / major / "bin" / "initdb"
        program.parent.mkdir(parents=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    found = require_postgres_binary("initdb", str(tmp_path / "postgresql" / "*" / "bin"))
    assert found == str(tmp_path / "postgresql" / "15" / "bin" / "initdb")


def test_a_missing_postgres_binary_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"initdb not found on PATH or in .*postgresql"):
        require_postgres_binary("initdb", str(tmp_path / "postgresql" / "*" / "bin"))
