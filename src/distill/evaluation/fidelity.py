"""Fidelity: how closely a student follows the teacher on held-out texts (no labels needed)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from distill.errors import DataError
from distill.evaluation import metrics
from distill.evaluation.base import Evaluator, HeldoutSet, SetResult
from distill.sampling import spread_sample


class FidelitySet(HeldoutSet):
    """Held-out corpus texts; how closely a student's pairwise similarities follow the teacher's.
    Reported beside the quality sets, never averaged into the mean score: it compares with the teacher,
    and the teacher has no score of its own to compare."""

    primary_metric: ClassVar[str] = "sim_spearman"
    in_mean_score: ClassVar[bool] = False
    type: Literal["fidelity"]
    max_texts: int = Field(default=500, gt=1)


class FidelityEvaluator(Evaluator):
    """How closely a model's pairwise similarities of held-out texts follow the teacher's (Spearman
    ×100, any dimensions), and the mean cosine to the teacher where the model shares its space."""

    spec_class = FidelitySet
    uses_heldout = True

    def __init__(self, spec: FidelitySet, texts: list[str], text_type: str) -> None:
        super().__init__(spec)
        self._texts, self.text_type = texts, text_type

    @classmethod
    def load(cls, spec, heldout, seed, text_type):
        frame = spread_sample(heldout, spec.max_texts, seed, f"eval/{spec.name}") if heldout is not None else heldout
        if frame is None or len(frame) < 2:
            raise DataError(
                f"eval set {spec.name}: needs at least 2 held-out texts, the corpus has "
                f"{0 if frame is None else len(frame)}; raise corpus.heldout_fraction or remove the fidelity set"
            )
        return cls(spec, frame["text"].tolist(), text_type)

    def texts(self):
        return self._texts

    def __call__(self, encoder, reference=None, to_reference_space=None):
        if reference is None or reference is encoder:
            return SetResult({}, {})
        model_x = encoder.encode(self._texts, self.text_type, desc=f"{encoder.name} {self.name}")
        teacher_x = reference.encode(self._texts, self.text_type, desc=f"{reference.name} {self.name}")
        scores = {"sim_spearman": metrics.similarity_spearman(model_x, teacher_x)}
        mapped = to_reference_space(teacher_x) if to_reference_space else None
        if mapped is not None and mapped.shape[1] == model_x.shape[1]:
            scores["cosine"] = float(metrics.row_cosines(model_x, mapped).mean())
        return SetResult(scores, {})

    @staticmethod
    def primary_on(items, index):
        raise ValueError("fidelity is reported beside the mean score, never bootstrapped as a primary metric")
