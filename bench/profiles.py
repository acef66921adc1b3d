"""Reading py-spy's raw output (collapsed stacks, `--threads`) into tables for RESULTS.md.

Each line is `thread (tid): NAME;frame;frame;... COUNT`, a frame `function (file:line)`. Samples
are on-CPU only (py-spy drops idle ones), so the shares below are shares of the CPU the daemon
used, per thread.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Where a main-thread sample's CPU goes, first match wins (matched against the frames, outermost
# first, of the sample's stack). Patterns are substrings of "function (file)".
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("httpx/httpcore: failed `import sniffio` on every request", ("current_async_library",)),
    ("actions: HTTP client (httpx, httpcore, anyio)", ("HttpAction.", "httpx/", "httpcore/")),
    ("executor: claim, status read, start, finish", ("Executor.",)),
    ("timers: re-arming after each batch", ("Timers.",)),
    ("slack outbox: render and deliver", ("Outbox.",)),
    ("engine: match, decide, build changes", ("Engine.",)),
    ("ingest: json.loads", ("loads (json/__init__.py)",)),
    ("ingest: parse_notification (validation)", ("parse_notification",)),
    ("ingest: append_journal (hand-off to the writer)", ("append_journal",)),
    ("ingest: auth, body read, response, metrics", ("Routes.",)),
    ("notifier and logging", ("LogNotifier", "logging/")),
    ("aiohttp server: HTTP parsing, routing, writing", ("aiohttp/",)),
    ("store: results back from threads", ("_settle_all", "Future", "SqliteStore.")),
)
# samples in none of the above whose innermost frame is here: the event loop's own work
LOOP = ("asyncio/", "selectors.py")


@dataclass
class Profile:
    threads: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)  # main thread
    inclusive: Counter[str] = field(default_factory=Counter)  # main thread
    categories: Counter[str] = field(default_factory=Counter)  # main thread
    writer_self: Counter[str] = field(default_factory=Counter)
    main_total: int = 0

    @property
    def total(self) -> int:
        return sum(self.threads.values())


def _frame(text: str) -> str:
    m = _FRAME.match(text)
    if m is None:
        return text
    path = m.group("file")
    return f"{m.group('func')} ({path})"


def read(path: Path) -> Profile:
    p = Profile()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, _, rest = stack.partition(";")
        thread = head.split(": ", 1)[-1]
        frames = [_frame(f) for f in rest.split(";")] if rest else []
        p.threads[thread] += count
        if thread == "MainThread":
            _main_sample(p, frames, count)
        elif "writer" in thread and frames:
            p.writer_self[frames[-1]] += count
    return p


def _main_sample(p: Profile, frames: list[str], count: int) -> None:
    p.main_total += count
    if frames:
        p.self_time[frames[-1]] += count
    for f in set(frames):
        p.inclusive[f] += count
    p.categories[_category(frames)] += count


def _category(frames: list[str]) -> str:
    for name, patterns in CATEGORIES:
        if any(pat in f for f in frames for pat in patterns):
            return name
    if frames and any(pat in frames[-1] for pat in LOOP):
        return "asyncio event loop (select, callbacks, transports)"
    return "other"


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} %" if total else "-"


def markdown(title: str, p: Profile, top: int = 15) -> str:
    lines = [f"#### {title}", ""]
    threads = ", ".join(f"{name} {_pct(n, p.total)}" for name, n in p.threads.most_common())
    lines += [f"On-CPU samples: {p.total:,}; by thread: {threads}.", ""]
    lines += [
        "Main thread, where the CPU goes (each sample counted in the first category, top to "
        "bottom, whose frames it contains):",
        "",
    ]
    lines += ["| category | share of main thread |", "|---|---|"]
    lines += [f"| {c} | {_pct(n, p.main_total)} |" for c, n in p.categories.most_common()]
    lines += ["", "Main thread, top functions including callees (remediator code):", ""]
    lines += ["| function | inclusive |", "|---|---|"]
    ours = [(f, n) for f, n in p.inclusive.most_common() if "remediator/" in f]
    lines += [f"| `{f}` | {_pct(n, p.main_total)} |" for f, n in ours[:top]]
    lines += ["", "Main thread, top functions by self time:", ""]
    lines += ["| function | self |", "|---|---|"]
    lines += [f"| `{f}` | {_pct(n, p.main_total)} |" for f, n in p.self_time.most_common(top)]
    if p.writer_self:
        writer_total = sum(p.writer_self.values())
        lines += ["", "SQLite writer thread, self time:", ""]
        lines += ["| function | self |", "|---|---|"]
        lines += [f"| `{f}` | {_pct(n, writer_total)} |" for f, n in p.writer_self.most_common(8)]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(markdown(arg, read(Path(arg))))
