"""One pipeline run at a time: a second run fails at once with a message, instead of corrupting outputs.

Why a lock of our own: a run is a sequence of processes (the flow, then ``dvc repro`` per stage, then
``python -m distill <step>``, then torchrun ranks), and also ``python -m distill <step>`` typed by hand.
DVC's repro lock covers one ``dvc repro``, not the flow's sequence, nor a step run by hand; a Prefect
``concurrency_limit`` covers deployment runs only. So the flow takes this lock (``fcntl.flock``, which the
kernel releases when the holder dies, so a killed run never leaves it stale) and lets its own
descendants through by pid (:data:`HOLDER_ENV`); ``filelock`` would serve the locking, not the hand-down.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil


class PipelineBusyError(RuntimeError):
    """Another process holds the pipeline lock."""


# Set by a process that holds the lock for the subprocesses it starts (the Prefect flow's
# `dvc repro` stages): the pid of the holder. A child honours it only when the lock file names that
# pid and the pid is one of its ancestors, so a stray variable cannot open the lock to others.
HOLDER_ENV = "DISTILL_LOCK_HOLDER"


def _held_by_ancestor(path: Path) -> bool:
    holder = os.environ.get(HOLDER_ENV, "")
    if not holder.isdigit() or not path.is_file() or path.read_text().strip() != f"pid {holder}":
        return False
    ancestors = {p.pid for p in psutil.Process().parents()}
    return int(holder) in ancestors


def holder_env(path: str | Path) -> dict[str, str]:
    """The environment that lets this process's descendants share the lock it holds (directly, or
    through its own ancestor): the holder's pid as the lock file names it."""
    return {HOLDER_ENV: Path(path).read_text().strip().removeprefix("pid ")}


def secondary_rank() -> bool:
    """A torchrun rank other than 0: rank 0 takes the lock for the whole job (``torchrun -m distill
    train`` started by hand, where the ranks are siblings and none is the other's ancestor)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("RANK", "0")) > 0


# Re-entrant per thread, not per process: another thread of the same process opens its own file
# description, and flock then refuses it like any other holder.
_local = threading.local()


@contextmanager
def pipeline_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``path`` (re-entrant within one thread)."""
    key = str(Path(path).resolve())
    held: set[str] = _local.__dict__.setdefault("held", set())
    if key in held or _held_by_ancestor(Path(path)) or secondary_rank():
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
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
