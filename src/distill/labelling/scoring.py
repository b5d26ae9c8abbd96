"""Teacher scores of (query, passage) pairs from a reranker, cached like the teacher's labels.

The default score teacher is the bi-encoder teacher itself (cosines of cached embeddings; nothing
here runs). A reranker sees query and passage together and scores finer: a
``sentence_transformers.CrossEncoder`` (logits), or a decoder LLM prompted pointwise, scoring
log p(" yes") − log p(" no") for the next token as monoT5 and RankGPT-style pointwise rerankers do.
Scores are cached under ``<paths.teacher_cache>/scores`` keyed by the scorer's fingerprint (weights,
tokenizer, template, lengths, library versions), the query and the passage: a rerun pays only for
new pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import torch

from distill.config.schema import CausalLMScorer, CrossEncoderScorer
from distill.encoding import KEY_LIBRARIES
from distill.errors import ModelLoadError
from distill.labelling.cache import EmbeddingCache
from distill.models import default_device, fingerprint, resolve_model, torch_dtype

log = logging.getLogger(__name__)

# Query and passage joined into one cache "text"; the unit separator occurs in neither.
PAIR_SEPARATOR = "\x1f"


class CrossEncoderReranker:
    """Logits of a ``CrossEncoder`` (no activation), one per pair."""

    def __init__(self, config: CrossEncoderScorer) -> None:
        from sentence_transformers import CrossEncoder

        try:
            self.model = CrossEncoder(resolve_model(config.model), revision=config.revision,
                                      max_length=config.max_length, device=default_device())
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"mining.scorer.model: cannot load cross-encoder {config.model!r}: {err}") from err
        self.config = config
        self.spec = {"type": config.type, "model": fingerprint(self.model.model, self.model.tokenizer),
                     "max_length": config.max_length}

    def score(self, pairs: list[tuple[str, str]], on_batch: Callable[[int], None]) -> np.ndarray:
        out = []
        for begin in range(0, len(pairs), self.config.batch_size):
            batch = pairs[begin : begin + self.config.batch_size]
            logits = self.model.predict(batch, batch_size=len(batch), activation_fn=torch.nn.Identity(),
                                        show_progress_bar=False, convert_to_numpy=True)
            out.append(np.asarray(logits, dtype=np.float32).reshape(len(batch), -1)[:, 0])
            on_batch(len(batch))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class CausalLMReranker:
    """A decoder LLM as a pointwise reranker: log p(yes) − log p(no) after ``template``, left-padded so
    that every sequence's next-token logits sit at the last position."""

    def __init__(self, config: CausalLMScorer) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = resolve_model(config.model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name, revision=config.revision)
            self.model = AutoModelForCausalLM.from_pretrained(name, revision=config.revision,
                                                              dtype=torch_dtype(config.dtype)).to(default_device()).eval()
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"mining.scorer.model: cannot load causal LM {config.model!r}: {err}") from err
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.token_ids = [self._single_token(t, f"mining.scorer.{k}") for k, t in
                          (("yes_token", config.yes_token), ("no_token", config.no_token))]
        self.config = config
        self.spec = {"type": config.type, "model": fingerprint(self.model, self.tokenizer),
                     "template": config.template, "tokens": self.token_ids, "max_length": config.max_length}

    def _single_token(self, text: str, field: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ModelLoadError(f"{field}: {text!r} is {len(ids)} tokens for this tokenizer; expected exactly one")
        return ids[0]

    @torch.inference_mode()
    def score(self, pairs: list[tuple[str, str]], on_batch: Callable[[int], None]) -> np.ndarray:
        out = []
        for begin in range(0, len(pairs), self.config.batch_size):
            batch = pairs[begin : begin + self.config.batch_size]
            prompts = [self.config.template.format(query=q, passage=p) for q, p in batch]
            inputs = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.config.max_length,
                                    return_tensors="pt").to(self.model.device)
            logits = self.model(**inputs).logits[:, -1, self.token_ids].float()
            out.append((logits[:, 0] - logits[:, 1]).cpu().numpy())  # = log p(yes) − log p(no)
            on_batch(len(batch))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def load_reranker(config: CrossEncoderScorer | CausalLMScorer) -> CrossEncoderReranker | CausalLMReranker:
    return CrossEncoderReranker(config) if isinstance(config, CrossEncoderScorer) else CausalLMReranker(config)


def cached_scores(
    reranker: CrossEncoderReranker | CausalLMReranker, pairs: Sequence[tuple[str, str]], cache_root: str | Path
) -> np.ndarray:
    """Scores of ``pairs`` (float32, one per pair); only pairs missing from the cache are scored."""
    spec = {**reranker.spec, "libraries": {name: package_version(name) for name in KEY_LIBRARIES}}
    cache = EmbeddingCache(Path(cache_root) / "scores", spec, dtype="float32")
    keys = [f"{q}{PAIR_SEPARATOR}{p}" for q, p in pairs]

    def score(chunk: list[str], on_batch: Callable[[int], None]) -> np.ndarray:
        split = [tuple(key.split(PAIR_SEPARATOR, 1)) for key in chunk]
        return reranker.score(split, on_batch)[:, None]

    scores = cache.fill(keys, score, shard_size=4096, desc=f"{reranker.config.type} scores")
    log.info("reranker scores: %d pairs, %d cached, %d scored", len(keys), cache.stats.hits, cache.stats.misses)
    return scores[:, 0]
