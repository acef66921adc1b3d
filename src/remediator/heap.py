"""The garbage collector's settings for the daemon, taken once before it starts serving.

Python's cyclic collector runs a young-generation pass every 700 net allocations of container
objects, and each pass also looks at what earlier passes kept. At 200 new incidents/s that was
about a tenth of the event loop's CPU (145 µs per new incident on the main thread, 27 µs more on
the writer thread; a pass cost 0.43 ms), for almost no garbage: a request's futures, records and
dicts are freed by reference counting as soon as it ends. So what was built before serving
(modules, config, rules, templates) is moved out of the collector's sight, and a young pass runs
every YOUNG net allocations. Cyclic garbage (an exception's traceback, say) is still collected,
a little later: at most YOUNG container objects wait for it. What was frozen is never collected
while frozen, so a reload, which replaces the config frozen at start (its templates hold cycles),
hands everything back to the collector (released).
"""

from __future__ import annotations

import gc

YOUNG = 10_000  # net container allocations between young-generation passes (Python: 700)
OLDER = 10  # passes of one generation before one of the next (Python's own)


def settle() -> None:
    """Collect what startup left, then keep the collector off what is left, for good."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, OLDER, OLDER)


def released() -> None:
    """What settle() froze can be collected again (the config a reload replaced, say)."""
    gc.unfreeze()
