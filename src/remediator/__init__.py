"""remediator: runs operations runbooks when Alertmanager says so."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("remediator")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
