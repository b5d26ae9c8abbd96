"""Content-addressed embedding cache: teacher labels are paid for once.

Layout: ``<root>/<namespace>/shard-<n>.npz`` plus ``<root>/<namespace>/manifest.json``. The namespace
is a hash of everything that changes an embedding except the text (model weight fingerprint, prompt,
max sequence length, normalisation); within it each row is keyed by a hash of the text. Changing any
of those settings therefore misses exactly the texts it must, and nothing else.

Shards are float16 (``dtype``; scores from rerankers are kept as float32), written to a temporary name
and renamed, so a killed run leaves only whole shards. Many writers share one cache (processes on one
host, or hosts on a shared filesystem): every shard name carries its writer's host and pid, nobody
overwrites or deletes another writer's files, a temporary file is removed only when its writer is
dead (same host) or it is older than ``ORPHAN_SECONDS``, and ``manifest.json`` is rebuilt from the
shards on disk under a file lock, so no writer's shards drop out of it. Every shard is validated
when first seen (row count, shape, finite values); broken ones are deleted and recomputed. Only the
keys stay in memory: embeddings are read from their shards when asked for, so memory does not grow
with the cache.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from filelock import FileLock
from tqdm.auto import tqdm

from distill.atomic import atomic_file, write_json
from distill.errors import DataError

log = logging.getLogger(__name__)

# A temporary shard of a writer on another host is an orphan only after this long: writing one shard
# takes seconds, and a live writer on another host cannot be asked.
ORPHAN_SECONDS = 3600
_WRITER = re.compile(r"_p(\d+)_h([^_/]+)\.npz\.tmp-")

KEY_BYTES = 16


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


def namespace_key(spec: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=12).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    encode_seconds: float = 0.0


@dataclass
class EmbeddingCache:
    """Embeddings of one model configuration (``spec``) under ``root``."""

    root: Path
    spec: dict[str, Any]
    stats: CacheStats = field(default_factory=CacheStats)
    dtype: str = "float16"

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.directory = self.root / namespace_key(self.spec)
        self._index: dict[bytes, tuple[str, int]] = {}
        self._rows: dict[str, int] = {}  # shard name -> row count, for every shard indexed
        self.dim: int | None = None
        self._load()

    # -- reading -------------------------------------------------------------------------------
    def _load(self) -> None:
        if not self.directory.is_dir():
            return
        for tmp in self.directory.glob(".shard-*.tmp-*"):
            if _orphaned(tmp):
                tmp.unlink(missing_ok=True)  # its writer was killed before the rename
        self.refresh()
        if self._rows and not self._manifest_lists_every_shard():
            log.warning("%s is damaged or does not list the shards on disk: rebuilding it from them",
                        self.directory / "manifest.json")
            self._write_manifest()

    def _manifest_lists_every_shard(self) -> bool:
        """Whether ``manifest.json`` is readable and lists at least every shard indexed (shards only
        ever get added, so a writer that renamed one since it was written is no damage)."""
        try:
            listed = json.loads((self.directory / "manifest.json").read_text(encoding="utf-8"))["shards"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return isinstance(listed, dict) and all(listed.get(name) == rows for name, rows in self._rows.items())

    def refresh(self) -> int:
        """Index shards that other writers finished since this object last looked; returns how many rows."""
        before = len(self._index)
        for path in sorted(self.directory.glob("shard-*.npz")) if self.directory.is_dir() else []:
            if path.name in self._rows:
                continue
            keys = self._validate(path)
            if keys is None:
                log.warning("removing invalid cache shard %s", path)
                path.unlink(missing_ok=True)
                continue
            self._rows[path.name] = len(keys)
            for row, key in enumerate(keys):
                # A text two writers raced on sits in two shards; the first one indexed serves it.
                self._index.setdefault(bytes(key), (path.name, row))
        return len(self._index) - before

    def _validate(self, path: Path) -> np.ndarray | None:
        """The shard's keys, or None when it is unreadable or broken; a readable shard of another
        dimension is not broken but a cache in conflict with itself, and stops the run."""
        try:
            with np.load(path) as data:
                keys, embeddings = data["keys"], data["embeddings"]
        except Exception:  # noqa: BLE001 - any unreadable shard is simply recomputed
            return None
        ok = (
            keys.ndim == 2
            and keys.shape[1] == KEY_BYTES
            and embeddings.ndim == 2
            and len(keys) == len(embeddings)
            and np.isfinite(embeddings).all()
        )
        if not ok:
            return None
        if self.dim is not None and embeddings.shape[1] != self.dim:
            raise DataError(
                f"cache shard {path} holds {embeddings.shape[1]}-dimensional rows but the cache's other shards hold "
                f"{self.dim}: two models wrote to one namespace of {self.directory}; delete that folder and relabel"
            )
        self.dim = embeddings.shape[1]
        return keys

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, texts: Sequence[str]) -> list[str]:
        """Distinct texts not yet cached, in first-seen order."""
        seen: set[bytes] = set()
        out = []
        for text in texts:
            key = text_key(text)
            if key not in self._index and key not in seen:
                seen.add(key)
                out.append(text)
        return out

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """float32 embeddings for ``texts`` (all must be cached), read shard by shard."""
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        by_shard: dict[str, tuple[list[int], list[int]]] = {}
        for i, text in enumerate(texts):
            location = self._index.get(text_key(text))
            if location is None:
                raise KeyError(
                    f"text not in the embedding cache {self.directory}: {text[:60]!r}; run the label step first"
                )
            out_rows, shard_rows = by_shard.setdefault(location[0], ([], []))
            out_rows.append(i)
            shard_rows.append(location[1])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for shard, (out_rows, shard_rows) in by_shard.items():
            with np.load(self.directory / shard) as data:
                out[out_rows] = data["embeddings"][shard_rows]
        return out

    # -- writing -------------------------------------------------------------------------------
    def add(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Store one shard atomically, under a unique name: writers of one namespace (two processes,
        or two cache objects in one) never overwrite each other's shards."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != len(texts):
            raise ValueError(f"expected {len(texts)} embeddings of shape (n, dim), got {embeddings.shape}")
        if not np.isfinite(embeddings).all():
            raise ValueError("refusing to cache non-finite embeddings")
        if self.dim is not None and embeddings.shape[1] != self.dim:
            raise ValueError(f"embedding dim {embeddings.shape[1]} differs from the cache's {self.dim}")
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}_p{os.getpid()}_h{_HOST}.npz"
        keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(-1, KEY_BYTES)
        half = embeddings.astype(self.dtype)
        with atomic_file(self.directory / name, "wb") as handle:
            np.savez(handle, keys=keys, embeddings=half)
        self.dim = half.shape[1]
        self._rows[name] = len(half)
        for row, key in enumerate(keys):
            self._index.setdefault(bytes(key), (name, row))
        self._write_manifest()

    def _write_manifest(self) -> None:
        """Rebuild ``manifest.json`` from every shard on disk, under a file lock: the last writer's
        manifest lists every shard renamed before it, its own and other writers'."""
        with FileLock(self.directory / ".manifest.lock"):
            self.refresh()
            write_json(
                self.directory / "manifest.json",
                {
                    "spec": self.spec,
                    "dim": self.dim,
                    "dtype": self.dtype,
                    "rows": len(self._index),
                    "shards": dict(sorted(self._rows.items())),
                },
            )

    def fill_missing(
        self,
        texts: Sequence[str],
        encode: Callable[[list[str], Callable[[int], None]], np.ndarray],
        shard_size: int,
        desc: str = "encoding",
        show_progress: bool = True,
    ) -> int:
        """Encode what is missing (longest first, in shards of ``shard_size``); returns how many texts.

        ``encode(texts, on_batch)`` calls ``on_batch(n)`` after each forward pass, so the progress bar
        moves once per batch, not once per shard. Nothing is returned but the count: a corpus larger
        than memory is labelled one shard at a time.
        """
        todo = self.missing(texts)
        self.stats.hits += len(texts) - len(todo)
        self.stats.misses += len(todo)
        if todo:
            # Longest first: batches of similar length waste little padding, and the
            # slowest batches show up at once in the progress estimate.
            todo.sort(key=len, reverse=True)
            start = time.perf_counter()
            with tqdm(total=len(todo), desc=desc, unit="text", disable=not show_progress) as bar:
                for begin in range(0, len(todo), shard_size):
                    chunk = todo[begin : begin + shard_size]
                    self.add(chunk, encode(chunk, bar.update))
                    _return_freed_memory()
            self.stats.encode_seconds += time.perf_counter() - start
        return len(todo)

    def fill(self, texts: Sequence[str], *args, **kwargs) -> np.ndarray:
        """:meth:`fill_missing` (same arguments), then the embeddings of all ``texts``."""
        self.fill_missing(texts, *args, **kwargs)
        return self.get(texts)


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc only). Forward passes over batches of varying shapes
    fragment glibc's heap: without this the label step's resident memory grew by ~20 MiB per shard
    of 1,024 short texts and never came back (bench/label_memory.py), so it grew with the corpus."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # musl has none
    except OSError:
        return None


_LIBC = _load_libc()
_HOST = socket.gethostname().replace("_", "-") or "host"


def _orphaned(tmp: Path) -> bool:
    """A temporary shard whose writer is gone: dead on this host, or silent for ``ORPHAN_SECONDS``."""
    try:
        age = time.time() - tmp.stat().st_mtime
    except FileNotFoundError:
        return False  # its writer renamed it meanwhile
    match = _WRITER.search(tmp.name)
    if match and match.group(2) == _HOST and not psutil.pid_exists(int(match.group(1))):
        return True
    return age > ORPHAN_SECONDS
