"""STS sets: Spearman correlation of cosine similarities with human scores, per pair."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from distill.evaluation import metrics
from distill.evaluation.base import Evaluator, SetResult, SetSpec
from distill.readers import read_stsb_pairs


class StsSet(SetSpec):
    """Sentence pairs with human scores (STS-B layout); Spearman of cosine vs score."""

    primary_metric: ClassVar[str] = "spearman"
    type: Literal["sts"]
    path: str


class StsEvaluator(Evaluator):
    """Spearman ×100 between the cosine of each sentence pair and its human score."""

    spec_class = StsSet

    def __init__(self, spec: StsSet, first: list[str], second: list[str], scores: list[float]) -> None:
        super().__init__(spec)
        self.first, self.second, self.scores = first, second, np.asarray(scores, dtype=np.float64)

    @classmethod
    def load(cls, spec, heldout, seed, text_type):
        pairs = read_stsb_pairs(Path(spec.path))
        return cls(spec, [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs])

    def texts(self):
        return self.first + self.second

    def data_files(self):
        return [Path(self.spec.path)]

    def __call__(self, encoder, reference=None, to_reference_space=None):
        first = encoder.encode(self.first, "sentence", desc=f"{encoder.name} {self.name}")
        second = encoder.encode(self.second, "sentence", desc=f"{encoder.name} {self.name}")
        cosines = metrics.row_cosines(first, second)
        items = {"cosine": cosines, "gold": self.scores}
        return SetResult({"spearman": self.primary_on(items, np.arange(len(cosines)))}, items)

    @staticmethod
    def primary_on(items, index):
        return metrics.spearman(items["cosine"][index], items["gold"][index])
