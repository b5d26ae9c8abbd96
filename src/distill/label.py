"""Step 2, label: embed every prepared corpus text with the teacher, through the label cache.

Only texts missing from the cache are encoded, so a rerun after a crash or with more text pays only
for what is new. Output: the cache under ``paths.teacher_cache`` (see :mod:`distill.cache`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from distill.config import Params
from distill.encoding import Encoder
from distill.models import load_model
from distill.prepare import load_corpus

log = logging.getLogger(__name__)


def teacher_encoder(params: Params, cache_root: str | Path) -> Encoder:
    teacher = params.teacher
    model = load_model(
        teacher.model,
        field="teacher.model",
        revision=teacher.revision,
        trust_remote_code=teacher.trust_remote_code,
        max_seq_length=teacher.max_seq_length,
    )
    return Encoder(
        model=model,
        name="teacher",
        cache_root=Path(cache_root),
        prompts=teacher.prompts,
        normalize=teacher.normalize,
        batch_size=teacher.batch_size,
        token_budget=teacher.token_budget,
        shard_size=teacher.shard_size,
    )


def run(params: Params, encoder: Encoder | None = None) -> np.ndarray:
    """Label the whole prepared corpus (train and held-out); returns the embeddings in corpus order."""
    corpus = load_corpus(params)
    encoder = encoder or teacher_encoder(params, params.paths.teacher_cache)
    labels = encoder.encode(corpus["text"].tolist(), params.corpus.text_type, desc="teacher labels")
    cache = encoder.cache(params.corpus.text_type)
    log.info(
        "teacher labels: %d texts, %d cached, %d encoded in %.1fs, stored in %s",
        len(corpus), cache.stats.hits, cache.stats.misses, cache.stats.encode_seconds, cache.directory,
    )
    return labels
