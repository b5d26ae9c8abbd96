"""Long documents: a held-out article placed among filler at several token lengths, found by its query."""

from __future__ import annotations

import random
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from distill.errors import DataError
from distill.evaluation.base import Evaluator, HeldoutSet, SetResult
from distill.evaluation.retrieval import judged_ranking
from distill.longdocs import LongDocument, TokenCounter, documents_at_length, filler_sentences, needles, pass_keys
from distill.readers import bbc_articles


class LongSet(HeldoutSet):
    """Synthetic long-document sets at each of ``lengths`` (student tokens), ``documents`` candidates
    per length, built from held-out BBC text (LongEmbed's tasks, https://arxiv.org/abs/2404.12096):
    ``passkey`` (find the document holding a name's pass key), ``needle`` (a one-sentence fact hidden in
    news text) with nDCG@1, and ``long_retrieval`` (a held-out headline → its whole article, placed at a
    random position among other articles) with nDCG@10. The primary metric averages every length."""

    primary_metrics: ClassVar[dict[str, str]] = {"passkey": "ndcg@1", "needle": "ndcg@1", "long_retrieval": "ndcg@10"}
    type: Literal["passkey", "needle", "long_retrieval"]
    lengths: list[int] = Field(default_factory=lambda: [256, 512, 1024, 2048])
    documents: int = Field(default=100, gt=1)  # targets and filler come from the set's heldout_half

    @property
    def primary_metric(self) -> str:  # type: ignore[override]
        return self.primary_metrics[self.type]

    @model_validator(mode="after")
    def _check_lengths(self) -> LongSet:
        if not self.lengths or any(n < 64 for n in self.lengths):
            raise ValueError(f"eval set {self.name}: lengths must be a non-empty list of token counts >= 64")
        return self


class LongDocumentEvaluator(Evaluator):
    """LongEmbed-style sets (``passkey``, ``needle``, ``long_retrieval``; see :class:`LongSet`) at each
    configured length: every query against the documents of its length, one relevant each. Scores per
    length (``len<L>/ndcg@1``, ``len<L>/ndcg@10``) and over all lengths (``ndcg@1``, ``ndcg@10``) by
    trec_eval; the per-item scores are one per query and length. Documents are built to a length in
    the *student's* tokens (``tokenizer``), so a truncating student sees exactly that many."""

    spec_class = LongSet
    uses_heldout = True
    needs_tokenizer = True
    measures: ClassVar[dict[str, str]] = {"ndcg@1": "ndcg_cut_1", "ndcg@10": "ndcg_cut_10"}

    def __init__(self, spec: LongSet, by_length: dict[int, list[LongDocument]]) -> None:
        super().__init__(spec)
        self.by_length = by_length

    @classmethod
    def load(cls, spec, heldout, seed, text_type, tokenizer=None):
        if tokenizer is None:
            raise ValueError("long-document sets are built in a student's tokens: pass its tokenizer")
        if heldout is None or not len(heldout):
            raise DataError(f"eval set {spec.name}: needs a held-out corpus (filler text)")
        rng = random.Random(f"{seed}/{spec.name}")
        if spec.type == "long_retrieval":
            held = set(heldout.loc[heldout["source"] == "bbc", "doc_id"].astype(str))
            articles = [a for a in bbc_articles() if a.doc_id in held and a.title]
            if len(articles) < spec.documents + 10:
                where = f" in the {spec.heldout_half} half" if spec.heldout_half else ""
                raise DataError(
                    f"eval set {spec.name}: {spec.documents} documents need at least {spec.documents + 10} held-out "
                    f"BBC articles (targets plus distractor text), found {len(articles)}{where}: lower documents or "
                    "add bbc articles (corpus.max_texts, corpus.heldout_fraction)")
            rng.shuffle(articles)
            targets = [(" ".join(a.body.split()), a.title) for a in articles[: spec.documents]]
            filler = filler_sentences([a.body for a in articles[spec.documents:]])
        else:
            make = pass_keys if spec.type == "passkey" else needles
            targets = make(spec.documents, rng)
            filler = filler_sentences(heldout["text"].tolist())
        count = TokenCounter(tokenizer)
        return cls(spec, {n: documents_at_length(targets, filler, n, count, seed) for n in spec.lengths})

    def texts(self):
        return [t for docs in self.by_length.values() for d in docs for t in (d.query, d.text)]

    def __call__(self, encoder, reference=None, to_reference_space=None):
        scores: dict[str, float] = {}
        per_item: dict[str, list[np.ndarray]] = {name: [] for name in self.measures}
        for length, docs in self.by_length.items():
            queries = encoder.encode([d.query for d in docs], "query", desc=f"{encoder.name} {self.name}@{length} queries")
            documents = encoder.encode([d.text for d in docs], "passage",
                                       desc=f"{encoder.name} {self.name}@{length} documents")
            qrels = {str(q): {str(q): 1} for q in range(len(docs))}
            _, judged = judged_ranking(queries, documents, qrels, self.measures, depth=10)
            for name, values in judged.items():
                per_item[name].append(values)
                scores[f"len{length}/{name}"] = float(values.mean() * 100)
        items = {name: np.concatenate(values) for name, values in per_item.items()}
        items["primary"] = items[self.primary_metric]
        scores.update({name: float(values.mean() * 100) for name, values in items.items() if name in self.measures})
        return SetResult(scores, items)

    @staticmethod
    def primary_on(items, index):
        return float(items["primary"][index].mean() * 100)
