"""The ``eval`` section: the sets every model is scored on, and how encoding is batched and timed.

Each entry of ``eval.sets`` is validated by its set type's spec, which lives beside that type's
evaluator in :mod:`distill.evaluation` (``type`` picks it, :data:`~distill.evaluation.registry.EvalSet`);
a set type is added there, not here."""

from __future__ import annotations

from pydantic import Field, model_validator

from distill.config.base import _Section
from distill.evaluation.fidelity import FidelitySet
from distill.evaluation.labelled import ClassificationSet, ClusteringSet
from distill.evaluation.registry import EvalSet
from distill.evaluation.retrieval import TitleRetrievalSet


def default_eval_sets() -> list[EvalSet]:
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
