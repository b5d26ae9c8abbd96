"""Encoding through the embedding cache: one code path for teacher labels and evaluation."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from distill.config.schema import ChunkingConfig, Params
from distill.labelling.cache import EmbeddingCache, namespace_key
from distill.models import fingerprint, load_model
from distill.prompts import prompt_for

log = logging.getLogger(__name__)

# Library versions that can change an embedding (tokenisation, pooling, kernels) are part of every
# cache key: an upgrade recomputes rather than mixing embeddings from two code versions.
KEY_LIBRARIES = ("sentence-transformers", "transformers", "tokenizers", "torch")


def pack_by_tokens(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Indices in batches of at most ``token_budget`` padded tokens (one row alone may exceed it): rows
    sorted longest first and packed greedily, so each batch's first row sets its padded width."""
    batches: list[list[int]] = [[]]
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches[-1] and (len(batches[-1]) + 1) * lengths[batches[-1][0]] > token_budget:
            batches.append([])
        batches[-1].append(index)
    return batches


def turn_order(roles: list[str], round_index: int) -> list[str]:
    """The order in which models take their turn in round ``round_index`` of a speed measurement:
    rotated by one each round, so that no model always runs first or last under the machine's
    changing load."""
    shift = round_index % len(roles)
    return roles[shift:] + roles[:shift]


@dataclass
class Encoder:
    """Encodes texts of a given type with ``model`` and its prompts, through a cache under ``cache_root``."""

    model: SentenceTransformer
    name: str
    cache_root: Path
    prompts: dict[str, str] = field(default_factory=dict)
    normalize: bool = True
    batch_size: int = 32
    shard_size: int = 2048
    # Cache fills batch by tokens, not texts: up to this many (padded) tokens per forward pass, so
    # short texts go in large batches and long ones in small batches. None: fixed batch_size.
    token_budget: int | None = None
    # Read-only caches consulted first (the evaluation teacher reads the label cache).
    fallback_roots: tuple[Path, ...] = ()
    # Texts longer than the model reads: chunk-and-pool (teacher.chunking); None truncates them.
    chunking: ChunkingConfig | None = None
    show_progress: bool = True
    _caches: dict[str, EmbeddingCache] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.model)

    def spec(self, text_type: str) -> dict:
        """Everything besides the text that determines an embedding."""
        return {
            "model": self.fingerprint,
            "prompt": prompt_for(self.prompts, text_type),
            "max_seq_length": self.model.max_seq_length,
            "normalize": self.normalize,
            "libraries": {name: package_version(name) for name in KEY_LIBRARIES},
        }

    def cache(self, text_type: str, root: Path | None = None) -> EmbeddingCache:
        """One cache object per namespace: text types with the same prompt share it."""
        root = Path(root or self.cache_root)
        spec = self.spec(text_type)
        key = f"{root}:{namespace_key(spec)}"
        if key not in self._caches:
            self._caches[key] = EmbeddingCache(root, spec)
        return self._caches[key]

    def _encode_batch(self, texts: list[str], text_type: str, batch_size: int) -> np.ndarray:
        # An explicit prompt ("" for none), so a model's own default prompt never applies behind the
        # cache key's back.
        return self.model.encode(
            texts,
            prompt=prompt_for(self.prompts, text_type),
            batch_size=batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)

    def raw_encode(self, texts: list[str], text_type: str) -> np.ndarray:
        """A plain ``encode`` in batches of ``batch_size``, no cache (throughput measurements)."""
        return self._encode_batch(texts, text_type, self.batch_size)

    def token_batches(self, texts: list[str], text_type: str) -> list[list[int]]:
        """Indices of ``texts`` in batches of about ``token_budget`` padded tokens, longest first."""
        if not self.token_budget:
            return [list(range(i, min(i + self.batch_size, len(texts)))) for i in range(0, len(texts), self.batch_size)]
        prompt = prompt_for(self.prompts, text_type)
        lengths = [
            len(ids)
            for ids in self.model.tokenizer(
                [prompt + t for t in texts], truncation=True, max_length=self.model.max_seq_length
            )["input_ids"]
        ]
        return pack_by_tokens(lengths, self.token_budget)

    def budget_encode(
        self, texts: list[str], text_type: str, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Like :meth:`raw_encode`, in :meth:`token_batches`; ``on_batch(n)`` after each batch."""
        out = np.empty((len(texts), self.model.get_embedding_dimension()), dtype=np.float32)
        for batch in self.token_batches(texts, text_type) if texts else []:
            out[batch] = self._encode_batch([texts[i] for i in batch], text_type, len(batch))
            if on_batch is not None:
                on_batch(len(batch))
        return out

    def encode(self, texts: list[str], text_type: str, desc: str | None = None) -> np.ndarray:
        """Embeddings for ``texts`` as float32; only texts missing from every cache are encoded. With
        ``chunking``, a text longer than the model reads is the token-weighted mean of its windows'
        embeddings, re-normalised; the windows are cached like any text."""
        if self.chunking is None:
            return self._encode_cached(texts, text_type, desc)
        windows = [self.windows(text, text_type) for text in texts]
        units = list(dict.fromkeys(w for spans in windows for w, _ in spans))
        row = {unit: i for i, unit in enumerate(units)}
        embeddings = self._encode_cached(units, text_type, desc)
        out = np.empty((len(texts), embeddings.shape[1]), dtype=np.float32)
        for i, spans in enumerate(windows):
            weights = np.array([w for _, w in spans], dtype=np.float64)
            pooled = (weights[:, None] * embeddings[[row[u] for u, _ in spans]]).sum(axis=0) / weights.sum()
            out[i] = pooled / max(np.linalg.norm(pooled), 1e-12) if self.normalize else pooled
        return out

    def windows(self, text: str, text_type: str) -> list[tuple[str, int]]:
        """``(window text, token count)``: the whole text when the model reads all of it, else windows
        of ``chunking.tokens`` tokens overlapping by ``chunking.overlap``, cut at token offsets."""
        tokenizer = self.model.tokenizer
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = encoded["offset_mapping"]
        room = self.model.max_seq_length - len(tokenizer(prompt_for(self.prompts, text_type))["input_ids"])
        if len(offsets) <= room:
            return [(text, max(len(offsets), 1))]
        size = min(self.chunking.tokens, room)
        stride = size - min(self.chunking.overlap, size - 1)
        spans = []
        for start in range(0, len(offsets), stride):
            end = min(start + size, len(offsets))
            spans.append((text[offsets[start][0]: offsets[end - 1][1]], end - start))
            if end == len(offsets):
                break
        return spans

    def _encode_cached(self, texts: list[str], text_type: str, desc: str | None = None) -> np.ndarray:
        for root in self.fallback_roots:
            fallback = self.cache(text_type, root)
            if len(fallback) and not fallback.missing(texts):
                fallback.stats.hits += len(texts)
                return fallback.get(texts)
        return self.cache(text_type).fill(
            texts,
            lambda chunk, on_batch: self.budget_encode(chunk, text_type, on_batch),
            shard_size=self.shard_size,
            desc=desc or f"{self.name} {text_type}",
            show_progress=self.show_progress,
        )

    @property
    def misses(self) -> int:
        return sum(c.stats.misses for c in self._caches.values())


@dataclass
class TruncatedEncoder:
    """The first ``dim`` coordinates of ``encoder``'s embeddings, re-normalised: how a Matryoshka-trained
    model is served at a smaller size. Reads through ``encoder``'s cache, so it costs no encoding."""

    encoder: Encoder
    dim: int

    @property
    def name(self) -> str:
        return f"{self.encoder.name}@{self.dim}"

    def encode(self, texts: list[str], text_type: str, desc: str | None = None) -> np.ndarray:
        full = self.encoder.encode(texts, text_type, desc)[:, : self.dim]
        return full / np.maximum(np.linalg.norm(full, axis=1, keepdims=True), 1e-12)


def measure_throughput(
    encoders: dict[str, Encoder], texts: list[str], text_type: str, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """Texts/s of a plain ``encode`` (no cache) per model: same texts, batch size and threads, one
    warm-up each, then ``repeats`` rounds in which every model runs once, in :func:`turn_order`."""
    for encoder in encoders.values():
        if warmup:
            encoder.raw_encode(texts[:warmup], text_type)
    rates: dict[str, list[float]] = {role: [] for role in encoders}
    roles = list(encoders)
    for round_index in range(repeats):
        for role in turn_order(roles, round_index):
            start = time.perf_counter()
            encoders[role].raw_encode(texts, text_type)
            rates[role].append(len(texts) / (time.perf_counter() - start))
        log.info("throughput round %d/%d: %s", round_index + 1, repeats,
                 ", ".join(f"{r} {rates[r][-1]:.1f}/s" for r in roles))
    return rates


def teacher_encoder(params: Params, cache_root: str | Path) -> Encoder:
    """The teacher with its prompts and batching, caching under ``cache_root``."""
    teacher = params.teacher
    model = load_model(
        teacher.model,
        field="teacher.model",
        revision=teacher.revision,
        trust_remote_code=teacher.trust_remote_code,
        max_seq_length=teacher.max_seq_length,
        dtype=teacher.dtype,
        attn_implementation=teacher.attn_implementation,
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
        chunking=teacher.chunking,
    )
