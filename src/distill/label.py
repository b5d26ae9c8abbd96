"""Step 2, label: embed every prepared corpus text with the teacher, through the label cache.

Only texts missing from the cache are encoded, so a rerun after a crash or with more text pays only
for what is new. Output: the cache under ``paths.teacher_cache`` (see :mod:`distill.cache`).
"""

from __future__ import annotations

import logging

import numpy as np

from distill.config import Params
from distill.encoding import Encoder, teacher_encoder
from distill.readers import load_corpus

log = logging.getLogger(__name__)


def run(params: Params, encoder: Encoder | None = None) -> np.ndarray:
    """Label the whole prepared corpus (train and held-out); returns the embeddings in corpus order."""
    corpus = load_corpus(params.paths.prepared)
    encoder = encoder or teacher_encoder(params, params.paths.teacher_cache)
    labels = encoder.encode(corpus["text"].tolist(), params.corpus.text_type, desc="teacher labels")
    cache = encoder.cache(params.corpus.text_type)
    log.info(
        "teacher labels: %d texts, %d cached, %d encoded in %.1fs, stored in %s",
        len(corpus), cache.stats.hits, cache.stats.misses, cache.stats.encode_seconds, cache.directory,
    )
    return labels
