"""The repository stands on its own: no link or path in it leads outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A Markdown link's target: [text](target)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError):
        return None


def links_outside(path: Path, text: str) -> list[str]:
    outside = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:|#", target):
            continue
        resolved = (path.parent / target.split("#")[0]).resolve()
        if not resolved.is_relative_to(ROOT):
            outside.append(target)
    return outside


def test_no_markdown_link_leaves_the_repository() -> None:
    found = {
        str(path.relative_to(ROOT)): links
        for path in tracked_files()
        if path.suffix == ".md" and (text := text_of(path)) is not None
        if (links := links_outside(path, text))
    }
    assert found == {}


def test_no_file_names_the_workspace_around_the_repository() -> None:
    """The runbooks the packs came from lived beside the repository while it was written: they
    are named by title, never by a path the reader does not have."""
    found = [
        str(path.relative_to(ROOT))
        for path in tracked_files()
        if path != Path(__file__).resolve() and (text := text_of(path)) is not None
        if "shared/seeds" in text or "../shared/" in text
    ]
    assert found == []


def test_a_link_outside_is_found() -> None:
    readme = ROOT / "README.md"
    assert links_outside(readme, "see [the runbooks](../shared/seeds)") == ["../shared/seeds"]
    assert links_outside(readme, "[rules](rules/) [web](https://x.example) [a](#b)") == []
