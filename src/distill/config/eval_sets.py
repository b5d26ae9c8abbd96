"""The ``eval`` section: one class per evaluation set type, discriminated by ``type``; each names its
``primary_metric`` and which of its metrics count as quality (the mean score)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from distill.config.base import _Section


class StsSet(_Section):
    """Sentence pairs with human scores (STS-B layout); Spearman of cosine vs score."""

    primary_metric: ClassVar[str] = "spearman"
    name: str
    type: Literal["sts"]
    path: str


class RetrievalSet(_Section):
    """A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv; trec_eval nDCG@10."""

    primary_metric: ClassVar[str] = "ndcg@10"
    name: str
    type: Literal["retrieval"]
    path: str
    split: str = "test"


class HeldoutSet(_Section):
    """A set built from the held-out corpus documents. Held-out documents fall into two seeded halves
    by doc id (:func:`distill.sampling.heldout_half`): a set on ``dev`` shares no document with one on
    ``test``, so recipes are chosen on dev sets (``params/dev.yaml``) and reported on test sets. null
    builds from every held-out document."""

    heldout_half: Literal["dev", "test"] | None = None


class TitleRetrievalSet(HeldoutSet):
    """Retrieval on held-out documents: each document gives one query, its passages are the relevant
    ones, every held-out passage of the set's half is a candidate. ``queries``: ``titles`` (the BBC
    headline) or ``keywords`` (the document's ``keywords`` highest TF-IDF words among the set's
    documents: a query kind no training query mirrors, so a gain that is only headline-shaped shows).
    Hundreds of queries from text no model trained on, so intervals are tight enough to tell a gain
    from noise."""

    primary_metric: ClassVar[str] = "ndcg@10"
    name: str
    type: Literal["title_retrieval"]
    queries: Literal["titles", "keywords"] = "titles"
    keywords: int = Field(default=4, ge=1)
    max_queries: int | None = Field(default=None, gt=1)


class FidelitySet(HeldoutSet):
    """Held-out corpus texts; how closely a student's pairwise similarities follow the teacher's.
    Reported beside the quality sets, never averaged into the mean score."""

    primary_metric: ClassVar[str] = "sim_spearman"
    name: str
    type: Literal["fidelity"]
    max_texts: int = Field(default=500, gt=1)


class LongSet(HeldoutSet):
    """Synthetic long-document sets at each of ``lengths`` (student tokens), ``documents`` candidates
    per length, built from held-out BBC text (LongEmbed's tasks, https://arxiv.org/abs/2404.12096):
    ``passkey`` (find the document holding a name's pass key), ``needle`` (a one-sentence fact hidden in
    news text) with nDCG@1, and ``long_retrieval`` (a held-out headline → its whole article, placed at a
    random position among other articles) with nDCG@10. The primary metric averages every length."""

    primary_metrics: ClassVar[dict[str, str]] = {"passkey": "ndcg@1", "needle": "ndcg@1", "long_retrieval": "ndcg@10"}
    name: str
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


class LabelledSet(HeldoutSet):
    """Texts with labels: a file with ``text_column``/``label_column``, or (no path) the held-out
    corpus documents that carry a label (BBC topics in the offline default); ``heldout_half`` applies
    to the latter only."""

    name: str
    path: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    max_texts: int | None = Field(default=None, gt=1)

    @model_validator(mode="after")
    def _half_of_the_corpus(self) -> LabelledSet:
        if self.path is not None and self.heldout_half is not None:
            raise ValueError(f"eval set {self.name}: heldout_half chooses held-out corpus documents; a set read from "
                             "path has none. Remove heldout_half or path")
        return self


class ClassificationSet(LabelledSet):
    """Accuracy of a logistic-regression probe, cross-fitted: the texts fall into ``folds`` seeded
    groups by document and each group is predicted by a probe trained on the others, so every text is
    a test item; ``repeats`` draws of the folds are averaged, because which documents share a fold
    moves the accuracy by about as much as its bootstrap interval is wide."""

    primary_metric: ClassVar[str] = "accuracy"
    type: Literal["classification"]
    folds: int = Field(default=5, ge=2)
    repeats: int = Field(default=5, ge=1)


class ClusteringSet(LabelledSet):
    """V-measure of k-means (k = number of labels), averaged over ``kmeans_runs`` seeded fits as MTEB
    averages its clustering runs: on a few hundred texts one fit's score moves by several points with
    its seed, noise that a bootstrap over texts does not see."""

    primary_metric: ClassVar[str] = "v_measure"
    type: Literal["clustering"]
    kmeans_runs: int = Field(default=30, ge=1)


EvalSet = Annotated[
    StsSet | RetrievalSet | TitleRetrievalSet | FidelitySet | ClassificationSet | ClusteringSet | LongSet,
    Field(discriminator="type"),
]


def default_eval_sets() -> list:
    """Fidelity, headline and keyword retrieval, topic classification and topic clustering on the test
    half of the held-out BBC articles (``params/dev.yaml`` has the same sets on the dev half)."""
    test = {"heldout_half": "test"}
    return [
        FidelitySet(name="bbc_fidelity", type="fidelity", max_texts=300, **test),
        TitleRetrievalSet(name="bbc_headlines", type="title_retrieval", **test),
        TitleRetrievalSet(name="bbc_keywords", type="title_retrieval", queries="keywords", **test),
        ClassificationSet(name="bbc_topics", type="classification", **test),
        ClusteringSet(name="bbc_clusters", type="clustering", **test),
    ]


def is_quality_set(spec: EvalSet) -> bool:
    """Sets whose primary metric enters the mean score; fidelity compares with the teacher and the
    teacher has none, so it is reported beside the mean, never in it."""
    return spec.type != "fidelity"


class EvalConfig(_Section):
    sets: list[EvalSet] = Field(default_factory=default_eval_sets)
    batch_size: int = Field(default=64, gt=0)
    # Throughput: every model encodes the same seeded sample of held-out texts with batch_size and the
    # same threads, in alternating repeats after a warm-up; the median and spread are reported.
    throughput_texts: int = Field(default=128, gt=0)
    throughput_warmup: int = Field(default=64, ge=0)
    throughput_repeats: int = Field(default=3, gt=0)
    # Students encode evaluation texts in batches of up to this many padded tokens (null: batch_size
    # texts); long-document sets need it so 2k-token batches fit in memory.
    token_budget: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> EvalConfig:
        names = [s.name for s in self.sets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"eval.sets names must be unique, repeated: {duplicates}")
        return self
