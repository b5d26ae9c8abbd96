"""Step 2, label: the teacher's embeddings of every prepared text and query, and its candidates and
scores for every training query.

Embeddings go through the label cache: only texts missing from it are encoded, so a rerun after a
crash or with more text pays only for what is new. With ``cluster`` set, the missing texts are
encoded by Dask workers into the same cache first (:mod:`distill.labelling.dask_label`); what is left, if any,
is encoded here. Corpus texts are ``corpus.text_type`` texts,
queries ``query`` texts (each with the teacher's prompt for its type, e.g. an instruction for an
LLM embedder). Then each training query gets a positive and hard negatives from the teacher's
ranking of the training passages (:mod:`distill.labelling.mining`), scored by ``mining.scorer``: the teacher's
cosines, or a reranker whose scores are cached too (:mod:`distill.labelling.scoring`).

With ``corpus.long_documents``, the long training documents (chunk-pooled with ``teacher.chunking``:
their windows are cached) and their queries are labelled too. With ``student.init: static``, the
teacher's vocabulary is distilled into the static student's starting point (:mod:`distill.static`),
kept in the cache beside the labels.

Outputs: the cache under ``paths.teacher_cache`` and ``<paths.mined>/candidates.parquet`` with
``summary.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from distill.atomic import atomic_dir, write_json
from distill.config.schema import BiEncoderScorer, Params
from distill.encoding import Encoder, teacher_encoder
from distill.labelling.dask_label import dask_client, label_on_client, missing_slices
from distill.labelling.mining import CANDIDATE_COLUMNS, mine_candidates
from distill.labelling.scoring import cached_scores, load_reranker
from distill.readers import CANDIDATES_FILE, SUMMARY_FILE, load_corpus, load_long_documents, load_queries
from distill.static import ensure_static_student

log = logging.getLogger(__name__)


def run(params: Params, encoder: Encoder | None = None) -> None:
    """Label the whole prepared corpus (train and held-out), the training queries and their cloze
    contexts, in this process or on the Dask cluster of ``cluster``, then mine candidates."""
    corpus = load_corpus(params.paths.prepared)
    queries = load_queries(params.paths.prepared)
    encoder = encoder or teacher_encoder(params, params.paths.teacher_cache)
    text_type = params.corpus.text_type
    if params.cluster.enabled:
        slices = missing_slices(params, encoder)
        if slices:  # a cluster only when there is something to encode
            with dask_client(params.cluster) as client:
                encoded = label_on_client(client, params, slices)
            log.info("teacher labels: %d texts encoded on the Dask cluster in %d slices", encoded, len(slices))
    contexts = sorted(set(queries["positive"].dropna()))
    for texts, kind, desc in [(corpus["text"].tolist(), text_type, "teacher labels"),
                              (queries["query"].tolist(), "query", "teacher queries"),
                              (contexts, text_type, "teacher cloze contexts")]:
        cache = encoder.cache(kind)
        cache.refresh()  # shards the cluster's workers wrote
        cache.fill_missing(texts, lambda chunk, on_batch, kind=kind: encoder.budget_encode(chunk, kind, on_batch),
                           shard_size=encoder.shard_size, desc=desc, show_progress=encoder.show_progress)
    if params.corpus.long_documents is not None:
        long_documents = load_long_documents(params.paths.prepared)
        if encoder.chunking is None and long_documents["tokens"].max() > encoder.model.max_seq_length:
            log.warning("long documents of up to %d tokens and a teacher reading %d without teacher.chunking: the "
                        "teacher's targets see only each document's start", long_documents["tokens"].max(),
                        encoder.model.max_seq_length)
        encoder.encode(long_documents["query"].tolist(), "query", desc="teacher long-document queries")
        encoder.encode(long_documents["text"].tolist(), text_type, desc="teacher long documents")
    if params.student.init == "static":
        ensure_static_student(params.paths.teacher_cache, encoder.model, params.student.static)
    cache = encoder.cache(text_type)
    log.info(
        "teacher labels: %d texts, %d cached, %d encoded in this process in %.1fs, stored in %s",
        len(corpus), cache.stats.hits, cache.stats.misses, cache.stats.encode_seconds, cache.directory,
    )
    candidates = pd.DataFrame(columns=CANDIDATE_COLUMNS)
    dropped = 0
    if len(queries):
        # Only what mining needs is read back: the training passages, queries and contexts.
        train = corpus[corpus["split"] == "train"]
        candidates, dropped = mine_candidates(
            queries, encoder.encode(queries["query"].tolist(), "query"), train,
            encoder.encode(train["text"].tolist(), text_type),
            dict(zip(contexts, encoder.encode(contexts, text_type))), params.mining,
        )
        if not isinstance(params.mining.scorer, BiEncoderScorer) and len(candidates):
            reranker = load_reranker(params.mining.scorer)
            pairs = [(q, c) for q, cs in zip(candidates["query"], candidates["candidates"]) for c in cs]
            flat = cached_scores(reranker, pairs, params.paths.teacher_cache)
            width = len(candidates["candidates"].iloc[0])
            candidates["scores"] = [row.tolist() for row in flat.reshape(-1, width)]
    target = Path(params.paths.mined)
    with atomic_dir(target) as staging:
        candidates.to_parquet(staging / CANDIDATES_FILE, index=False)
        write_json(staging / SUMMARY_FILE, {
            "queries": len(queries),
            "mined": len(candidates),
            "dropped_too_few_negatives": dropped,
            "by_kind": {k: int(n) for k, n in candidates["kind"].value_counts().sort_index().items()},
            "scorer": params.mining.scorer.type,
        })
    log.info("mined candidates for %d of %d training queries (%d with too few negatives) into %s, scored by %s",
             len(candidates), len(queries), dropped, target, params.mining.scorer.type)
