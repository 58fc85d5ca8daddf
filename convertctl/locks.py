"""An exclusive lock on a file, for the caches two concurrent runs may write (POSIX flock)."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(lock: Path):
    """Held until the block ends; the lock file is created if needed and left in place (empty)."""
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
