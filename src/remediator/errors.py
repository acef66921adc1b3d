"""One root exception, one class per kind of failure a caller can act on."""

from __future__ import annotations


class RemediatorError(Exception):
    """Root of every error remediator raises on purpose."""


class ConfigError(RemediatorError):
    """The configuration or a rule file is invalid. Holds every problem found, not only the
    first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class PayloadError(RemediatorError):
    """A webhook body does not follow Alertmanager's v4 schema; the message names the field."""


class RenderError(RemediatorError):
    """An action could not be built from an alert (a label it needs is missing or unusable)."""


class MissingResult(RenderError):
    """An action refers to an earlier action's result (`$results.<action>`) that it was not
    given: the caller reads the incident's results and renders again."""


class StoreError(RemediatorError):
    """The store could not be reached or refused a write. Nothing of sqlite3 or asyncpg leaves
    the store: a backend's error is one of these, with the driver's error as its cause."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or is not open (retry later: the webhook answers 503)."""


class StoreConflict(StoreError):
    """A write broke a uniqueness or integrity rule (a second open incident for one key)."""


class Fenced(StoreError):
    """A transaction of a deposed leader: its leadership epoch is no longer the store's current
    one, so it may not open an incident, claim or start an action (store/leadership.py)."""


class StoreInUse(StoreError):
    """Another process owns the store (a second daemon on one SQLite file)."""


class ListenError(RemediatorError):
    """The daemon cannot listen where it was told to (the port is in use, the address is not
    this host's)."""


class ControlError(RemediatorError):
    """An operator's request cannot be carried out; `status` is the HTTP status that says why."""

    status = 400


class NotFound(ControlError):
    status = 404


class Conflict(ControlError):
    status = 409
