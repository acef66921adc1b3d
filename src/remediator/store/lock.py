"""One process per SQLite file: an exclusive lock on a sidecar file that holds the owner's PID.

The lock is taken before the store is touched (no migration, no crash recovery), and the kernel
drops it when its process dies, however it dies: a stale lock file never blocks a restart."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from remediator.errors import StoreInUse, StoreUnavailable


class InstanceLock:
    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.path = store_path.with_name(store_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Own the store, or raise StoreInUse naming the file and the process that owns it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreUnavailable(f"cannot open {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreInUse(
                f"{self.store_path} is in use by process {holder} (lock {self.path}); "
                "one daemon per SQLite file"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays, harmless
            self._fd = None
