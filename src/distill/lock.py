"""One pipeline run at a time: a second run fails at once with a message, instead of corrupting outputs."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PipelineBusyError(RuntimeError):
    """Another process holds the pipeline lock."""


_held: set[str] = set()


@contextmanager
def pipeline_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``path`` (re-entrant within one process)."""
    key = str(Path(path).resolve())
    if key in _held:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise PipelineBusyError(
                f"another pipeline run is using this project (lock {path} held by {holder}); "
                "wait for it to finish, then run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
