"""Atomic file and folder writes: a failed or killed step never leaves a half-written artifact."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it replaces ``target`` whole.

    Staging and retired folders a killed run left beside ``target`` are removed first: outputs are
    written under the pipeline lock, so no other writer of ``target`` can be using them."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_files(*targets: str | Path, mode: str = "wb") -> Iterator[list[Any]]:
    """Open a temp file beside each of ``targets`` for writing; rename them all over their targets when
    the block succeeds, and none of them when it fails (a set of outputs that belong together)."""
    staged: list[tuple[str, Path]] = []
    try:
        with ExitStack() as stack:
            handles = []
            for target in map(Path, targets):
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
                staged.append((tmp, target))
                handles.append(stack.enter_context(os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))))
            yield handles
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


@contextmanager
def atomic_file(target: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside ``target`` for writing; rename it over ``target`` on success."""
    with atomic_files(target, mode=mode) as (handle,):
        yield handle


def write_json(target: str | Path, data: Any) -> None:
    with atomic_file(target) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")

