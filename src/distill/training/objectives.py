"""The training objectives ``train.objectives`` weights: for each name, the data it learns from, the
loss that computes it, and what it needs of the batch and the labels.

An objective is added here alone, one entry of :data:`OBJECTIVES` (and its loss class in
:mod:`distill.training.losses` where the library has none): the config validates ``train.objectives``
against this table, and :func:`distill.training.losses.weighted_loss` builds the loss the trainer gets
from it. Loss classes are named by import path and load when training starts: the config imports
this module whenever params are validated, and that should not load torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from distill.config.schema import TrainConfig

LIBRARY = "sentence_transformers.sentence_transformer.losses"
COSINE = "sentence_transformers.util:pairwise_cos_sim"


def imported(path: str) -> Any:
    """The object at ``"module:name"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def in_cosine_units(scores, config: TrainConfig):
    """Teacher scores rescaled into the student's cosine units (identity for the bi-encoder teacher,
    whose scores are cosines too): score / teacher temperature × student temperature."""
    return scores * (config.student_temperature / config.teacher_temperature)


@dataclass(frozen=True)
class Objective:
    """One weighted objective.

    ``data``: ``texts`` (corpus texts labelled with teacher embeddings, ``(batch, teacher_dim)``) or
    ``candidates`` (a mined query with its positive and negatives, labelled with teacher scores
    ``(batch, 1 + negatives)``). ``loss``: the loss class as ``"module:Class"``, called with the student
    and ``options(config)``. ``labels``: the teacher labels as this loss takes them (default: as they
    are). ``teacher_space``: compares the student's embeddings with the teacher's (through a projection
    where dimensions differ). ``in_batch``: the batch's other examples are its negatives or its
    relations, so batches must be whole and under DDP it gathers across processes.
    ``teacher_embeddings`` (candidates only): the loss takes the teacher's embeddings of the query and
    of every candidate beside the scores, labels ``(batch, 1 + candidates, 1 + teacher_dim)`` (see
    :func:`distill.training.candidates.candidate_dataset`); the other candidate objectives of the same
    run still get the scores alone."""

    data: Literal["texts", "candidates"]
    loss: str
    options: Callable[[TrainConfig], dict[str, Any]] = field(default=lambda config: {})
    labels: Callable[[Any, TrainConfig], Any] | None = None
    teacher_space: bool = False
    in_batch: bool = False
    teacher_embeddings: bool = False


OBJECTIVES: dict[str, Objective] = {
    # In-batch similarity matrices (Jasper and Stella; RKD): the student keeps its own space.
    "similarity": Objective("texts", "distill.training.losses:InBatchSimilarityLoss", in_batch=True),
    # The teacher's embeddings themselves (LEAF-style alignment), by squared error or cosine distance.
    # (EmbedDistillLoss takes one teacher embedding per text column, hence the one-element list.)
    "mse": Objective("texts", f"{LIBRARY}:EmbedDistillLoss", lambda config: {"distance_metric": "mse"},
                     labels=lambda embeddings, config: [embeddings], teacher_space=True),
    "cosine": Objective("texts", f"{LIBRARY}:EmbedDistillLoss", lambda config: {"distance_metric": "cosine"},
                        labels=lambda embeddings, config: [embeddings], teacher_space=True),
    # The teacher's score margins between a query's positive and each negative (Hofstätter et al., 2020).
    "margin_mse": Objective("candidates", f"{LIBRARY}:MarginMSELoss",
                            lambda config: {"similarity_fct": imported(COSINE)}, labels=in_cosine_units),
    # The teacher's distribution over a query's candidates (listwise KL), at both temperatures.
    "kl": Objective("candidates", f"{LIBRARY}:DistillKLDivLoss",
                    lambda config: {"similarity_fct": imported(COSINE),
                                    "student_temperature": config.student_temperature,
                                    "teacher_temperature": config.teacher_temperature}),
    # The teacher's positive against the hard and in-batch negatives (InfoNCE).
    "mnrl": Objective("candidates", f"{LIBRARY}:MultipleNegativesRankingLoss",
                      lambda config: {"scale": 1 / config.student_temperature}, in_batch=True),
    # The teacher's distribution of each query over every passage of the batch, its own candidates and
    # every other query's (TAS-B's in-batch supervision), from the teacher's embeddings. Both sides are
    # cosines, so both take the student's temperature: train.teacher_temperature is the scale of the
    # candidate scorer's scores, which may be a reranker's logits.
    "in_batch_kl": Objective("candidates", "distill.training.losses:InBatchKLDivLoss",
                             lambda config: {"student_temperature": config.student_temperature,
                                             "teacher_temperature": config.student_temperature},
                             in_batch=True, teacher_embeddings=True),
    # Jasper's pairwise rank term on the candidates' teacher scores.
    "relative": Objective("candidates", "distill.training.losses:RelativeSimilarityLoss", labels=in_cosine_units),
}


def objectives(data: Literal["texts", "candidates"] | None = None, *, teacher_space: bool | None = None,
               in_batch: bool | None = None, teacher_embeddings: bool | None = None) -> tuple[str, ...]:
    """The names of the objectives with these properties (``None``: either), in table order."""
    return tuple(name for name, o in OBJECTIVES.items()
                 if data in (None, o.data) and teacher_space in (None, o.teacher_space) and in_batch in (None, o.in_batch)
                 and teacher_embeddings in (None, o.teacher_embeddings))


def weights_override(**weights: float) -> str:
    """A ``train.objectives={…}`` override that names every objective, those not given at 0: params
    layers merge key by key, so an override that leaves an objective out inherits its weight."""
    unknown = sorted(set(weights) - set(OBJECTIVES))
    if unknown:
        raise ValueError(f"unknown objectives {unknown}; expected names from {list(OBJECTIVES)}")
    return "train.objectives={" + ", ".join(f"{name}: {weights.get(name, 0.0)}" for name in OBJECTIVES) + "}"
