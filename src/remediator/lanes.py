"""One at a time, by lane: what of its target a running action holds.

By default an action holds its whole target: one action at a time per target. A rule's
`one_at_a_time_by` names labels whose values, with the target, make a lane: actions in different
lanes of one target run side by side (fifty failed connectors of one Kafka Connect cluster restart
together), one at a time within a lane. An action holding the whole target waits for every lane,
and every lane waits for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _quoted  # json.dumps' own, in C


def lane_of(by: Sequence[str], labels: Mapping[str, str]) -> str | None:
    """The lane of an action whose rule serialises by `by` (None: the whole target). A missing
    label is the empty string, as in matchers. The text is the compact JSON object of those
    labels, as stored with the claim; written here without json.dumps' encoder, built on every
    call (7 us), since the executor asks for a claim's lane about five times."""
    if not by:
        return None
    try:
        pairs = [f"{_quoted(name)}:{_quoted(labels.get(name, ''))}" for name in by]
    except TypeError:  # not text: json.dumps says how it writes it
        pairs = None
    if pairs is None or len(set(by)) < len(by):
        return json.dumps({name: labels.get(name, "") for name in by}, separators=(",", ":"))
    return "{" + ",".join(pairs) + "}"
