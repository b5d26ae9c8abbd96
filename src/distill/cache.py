"""Content-addressed embedding cache: teacher labels are paid for once.

Layout: ``<root>/<namespace>/shard-<n>.npz`` plus ``<root>/<namespace>/manifest.json``. The namespace
is a hash of everything that changes an embedding except the text (model weight fingerprint, prompt,
max sequence length, normalisation); within it each row is keyed by a hash of the text. Changing any
of those settings therefore misses exactly the texts it must, and nothing else.

Shards are float16 (``dtype``; scores from rerankers are kept as float32), written to a temporary name and renamed, so a killed run leaves only whole
shards. On open every shard on disk is validated (row count, shape, finite values); broken ones are
deleted and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from distill.io import atomic_file, write_json

log = logging.getLogger(__name__)

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
        self._shards: dict[str, np.ndarray] = {}
        self.dim: int | None = None
        self._load()

    # -- reading -------------------------------------------------------------------------------
    def _load(self) -> None:
        if not self.directory.is_dir():
            return
        for stale in self.directory.glob(".shard-*.tmp-*"):
            stale.unlink(missing_ok=True)  # a shard whose writer was killed before the rename
        for path in sorted(self.directory.glob("shard-*.npz")):
            keys, embeddings = self._validate(path)
            if keys is None:
                log.warning("removing invalid cache shard %s", path)
                path.unlink(missing_ok=True)
                continue
            self._shards[path.name] = embeddings
            for row, key in enumerate(keys):
                self._index[bytes(key)] = (path.name, row)

    def _validate(self, path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
        try:
            with np.load(path) as data:
                keys, embeddings = data["keys"], data["embeddings"]
        except Exception:  # noqa: BLE001 - any unreadable shard is simply recomputed
            return None, None
        ok = (
            keys.ndim == 2
            and keys.shape[1] == KEY_BYTES
            and embeddings.ndim == 2
            and len(keys) == len(embeddings)
            and (self.dim is None or embeddings.shape[1] == self.dim)
            and np.isfinite(embeddings).all()
        )
        if not ok:
            return None, None
        self.dim = embeddings.shape[1]
        return keys, embeddings

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
        """float32 embeddings for ``texts`` (all must be cached)."""
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        rows = []
        for text in texts:
            location = self._index.get(text_key(text))
            if location is None:
                raise KeyError(
                    f"text not in the embedding cache {self.directory}: {text[:60]!r}; run the label step first"
                )
            rows.append(location)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for i, (shard, row) in enumerate(rows):
            out[i] = self._shards[shard][row]
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
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(-1, KEY_BYTES)
        half = embeddings.astype(self.dtype)
        with atomic_file(self.directory / name, "wb") as handle:
            np.savez(handle, keys=keys, embeddings=half)
        self.dim = half.shape[1]
        self._shards[name] = half
        for row, key in enumerate(keys):
            self._index[bytes(key)] = (name, row)
        self._write_manifest()

    def _write_manifest(self) -> None:
        write_json(
            self.directory / "manifest.json",
            {
                "spec": self.spec,
                "dim": self.dim,
                "dtype": self.dtype,
                "rows": len(self._index),
                "shards": {name: len(shard) for name, shard in sorted(self._shards.items())},
            },
        )

    def fill(
        self,
        texts: Sequence[str],
        encode: Callable[[list[str], Callable[[int], None]], np.ndarray],
        shard_size: int,
        desc: str = "encoding",
        show_progress: bool = True,
    ) -> np.ndarray:
        """Encode what is missing (longest first, in shards of ``shard_size``) and return all.

        ``encode(texts, on_batch)`` calls ``on_batch(n)`` after each forward pass, so the progress bar
        moves once per batch, not once per shard.
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
            self.stats.encode_seconds += time.perf_counter() - start
        return self.get(texts)
