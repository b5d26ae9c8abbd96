"""The label step on a Dask cluster: many workers fill one label cache.

The texts the cache lacks are cut into :class:`TextSlice` references (a prepared parquet file, a
column, row numbers): the scheduler moves row numbers, never texts or embeddings. Each worker
process loads the teacher once, reuses it for every slice it gets, and writes whole shards into the
shared cache (:mod:`distill.labelling.cache` takes many writers), so the result is the single-process cache:
the same keys, embeddings equal up to float16 rounding. A worker that dies mid-slice leaves no
shard for it; Dask reruns the slice on another worker and its rows are written once.

Two entry points share :func:`encode_slice`: ``python -m distill label`` (and so ``dvc repro``)
maps it through a plain :class:`distributed.Client`; the Prefect flow maps it as Prefect tasks on
``prefect-dask``'s ``DaskTaskRunner`` before its DVC stage runs. The cluster is ``cluster.address``
(a running ``dask scheduler``) or a ``LocalCluster`` of ``cluster.n_workers``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from distill.config.schema import ClusterConfig, Params
from distill.encoding import Encoder, teacher_encoder
from distill.errors import DataError
from distill.readers import CORPUS_FILE, QUERIES_FILE

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TextSlice:
    """Rows ``rows`` of ``column`` in the parquet file ``path``, to encode as ``text_type`` texts."""

    path: str
    column: str
    rows: tuple[int, ...]
    text_type: str

    def texts(self) -> list[str]:
        column = _column(self.path, self.column, Path(self.path).stat().st_mtime_ns)
        return [column.iloc[row] for row in self.rows]


@lru_cache(maxsize=4)
def _column(path: str, column: str, mtime_ns: int) -> pd.Series:
    """One read of a column per worker and file version, not one per slice."""
    return pd.read_parquet(path, columns=[column])[column]


def label_sources(params: Params) -> list[tuple[Path, str, str]]:
    """``(parquet file, column, text type)`` of every text the label step encodes: the corpus, the
    training queries and their inverse-cloze contexts."""
    prepared = Path(params.paths.prepared)
    return [
        (prepared / CORPUS_FILE, "text", params.corpus.text_type),
        (prepared / QUERIES_FILE, "query", "query"),
        (prepared / QUERIES_FILE, "positive", params.corpus.text_type),
    ]


def missing_slices(params: Params, encoder: Encoder) -> list[TextSlice]:
    """Slices of at most ``teacher.shard_size`` texts covering every text the cache lacks, each
    text once, longest first (a slice of similar lengths pads little)."""
    slices = []
    for path, column, text_type in label_sources(params):
        texts = pd.read_parquet(path, columns=[column])[column]
        missing = set(encoder.cache(text_type).missing(texts.dropna().tolist()))
        first_rows: dict[str, int] = {}
        for row, text in enumerate(texts):
            if isinstance(text, str) and text in missing:
                first_rows.setdefault(text, row)
        rows = sorted(first_rows.values(), key=lambda r: -len(texts.iloc[r]))
        size = params.teacher.shard_size
        slices += [TextSlice(str(path), column, tuple(rows[i : i + size]), text_type) for i in range(0, len(rows), size)]
    return slices


# One teacher per worker process and configuration, loaded by the first slice and reused by the rest;
# the lock lets a worker with several Dask threads run one forward pass at a time on all its threads.
_WORKER_ENCODERS: dict[str, Encoder] = {}
_WORKER_LOCK = threading.Lock()


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except ValueError:  # not inside a Dask worker (tests call encode_slice directly)
        return torch.get_num_threads()


def encode_slice(params: Params, piece: TextSlice) -> int:
    """Encode the slice's texts that the cache still lacks into the cache; returns how many."""
    with _WORKER_LOCK:
        key = f"{params.teacher.model_dump_json()}|{params.paths.teacher_cache}"
        if key not in _WORKER_ENCODERS:
            torch.set_num_threads(_worker_threads())
            encoder = teacher_encoder(params, params.paths.teacher_cache)
            encoder.show_progress = False
            _WORKER_ENCODERS[key] = encoder
        encoder = _WORKER_ENCODERS[key]
        cache = encoder.cache(piece.text_type)
        cache.refresh()  # shards other workers wrote since this worker last looked
        return cache.fill_missing(
            piece.texts(),
            lambda chunk, on_batch: encoder.budget_encode(chunk, piece.text_type, on_batch),
            shard_size=params.teacher.shard_size,
            show_progress=False,
        )


@contextmanager
def dask_client(config: ClusterConfig) -> Iterator:
    """A ``distributed.Client`` on ``config.address`` or on a LocalCluster started for the block."""
    from distributed import Client, LocalCluster

    if config.address is not None:
        try:
            client = Client(config.address, timeout=config.connect_timeout)
        except (OSError, TimeoutError) as err:
            raise DataError(
                f"cluster.address {config.address!r}: no Dask scheduler answered within {config.connect_timeout:g} s "
                f"({err}); "
                "start one (`dask scheduler`, then `dask worker <address>` on each machine) or fix the address"
            ) from None
        with client:
            yield client
        return
    with LocalCluster(**config.local_cluster_kwargs) as cluster, Client(cluster) as client:
        yield client


def label_on_client(client, params: Params, slices: list[TextSlice]) -> int:
    """Map :func:`encode_slice` over ``slices`` on ``client``; returns the texts encoded. A bar
    counts texts as slices finish."""
    from distributed import as_completed

    futures = client.map(encode_slice, [params] * len(slices), slices, pure=False)
    sizes = {future.key: len(piece.rows) for future, piece in zip(futures, slices)}
    encoded = 0
    with tqdm(total=sum(sizes.values()), desc="teacher labels on dask", unit="text") as bar:
        for future in as_completed(futures):
            try:
                encoded += future.result()
            except Exception as err:
                piece = slices[futures.index(future)]
                raise DataError(f"a Dask worker failed to label rows of {piece.column!r} in {piece.path}: {err}") from err
            bar.update(sizes[future.key])
    return encoded
