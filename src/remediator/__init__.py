"""remediator: runs operations runbooks when Alertmanager says so."""

import functools


def __getattr__(name: str) -> str:
    """`remediator.__version__`, read from the installed package on first use: importlib.metadata
    costs every `remediator` process about 50 ms of CPU, which a verb over --url never needs."""
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'remediator' has no attribute {name!r}")


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("remediator")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0"
