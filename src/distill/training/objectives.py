"""The weighted training objectives: losses on teacher-labelled texts and on mined query candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses
from sentence_transformers.util import pairwise_cos_sim

from distill.config.schema import CANDIDATE_OBJECTIVES, TEXT_OBJECTIVES, Params, TrainConfig
from distill.errors import DataError
from distill.training.fit import distributed
from distill.training.losses import (
    InBatchSimilarityLoss,
    RelativeSimilarityLoss,
    WeightedSumLoss,
)


def text_loss(model: SentenceTransformer, config: TrainConfig) -> WeightedSumLoss:
    """The weighted text objectives on texts labelled with teacher embeddings ``(batch, teacher_dim)``."""
    parts = {
        "similarity": InBatchSimilarityLoss(model, gather_across_devices=distributed()),
        "mse": losses.EmbedDistillLoss(model, distance_metric="mse"),
        "cosine": losses.EmbedDistillLoss(model, distance_metric="cosine"),
    }
    as_columns = {"mse": lambda x: [x], "cosine": lambda x: [x]}  # one teacher embedding per text column
    return WeightedSumLoss(model, {n: (config.weight(n), parts[n]) for n in TEXT_OBJECTIVES if config.weight(n) > 0},
                           as_columns)


def candidate_loss(model: SentenceTransformer, config: TrainConfig) -> torch.nn.Module:
    """The weighted candidate objectives on ``(query, positive, negative_1…)`` with teacher scores
    ``(batch, 1 + negatives)``; student scores are cosines. Scores enter as score / temperature: KL
    takes both temperatures, MarginMSE and the rank term get the teacher's scores rescaled into the
    student's cosine units (identity for the bi-encoder teacher, whose scores are cosines too)."""
    student_t, teacher_t = config.student_temperature, config.teacher_temperature
    parts = {
        "margin_mse": losses.MarginMSELoss(model, similarity_fct=pairwise_cos_sim),
        "kl": losses.DistillKLDivLoss(model, similarity_fct=pairwise_cos_sim, student_temperature=student_t,
                                      teacher_temperature=teacher_t),
        "mnrl": losses.MultipleNegativesRankingLoss(model, scale=1 / student_t, gather_across_devices=distributed()),
        "relative": RelativeSimilarityLoss(model),
    }
    in_cosine_units = lambda scores: scores * (student_t / teacher_t)  # noqa: E731
    loss = WeightedSumLoss(
        model, {n: (config.weight(n), parts[n]) for n in CANDIDATE_OBJECTIVES if config.weight(n) > 0},
        {"margin_mse": in_cosine_units, "relative": in_cosine_units},
    )
    if config.matryoshka_dims:
        full = model.get_embedding_dimension()
        too_big = [d for d in config.matryoshka_dims if d > full]
        if too_big:
            raise DataError(f"train.matryoshka_dims {too_big} exceed the student's dimension {full}")
        dims = sorted({full, *config.matryoshka_dims}, reverse=True)
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
    return loss


def candidate_dataset(candidates: pd.DataFrame) -> Dataset:
    """Columns ``query, positive, negative_1…`` and ``label`` (teacher scores, positive first)."""
    width = len(candidates["candidates"].iloc[0])
    columns = {"query": candidates["query"].tolist(), "positive": [c[0] for c in candidates["candidates"]]}
    for i in range(1, width):
        columns[f"negative_{i}"] = [c[i] for c in candidates["candidates"]]
    columns["label"] = [np.asarray(s, dtype=np.float32).tolist() for s in candidates["scores"]]
    return Dataset.from_dict(columns)


def candidate_objective(student: SentenceTransformer, params: Params,
                        candidates: pd.DataFrame) -> tuple[Dataset, torch.nn.Module, dict[str, str]]:
    """The candidate objectives as the trainer takes them: the dataset, its loss and each column's prompt
    (the query prompt on queries, the passage prompt on candidates)."""
    dataset = candidate_dataset(candidates)
    prompts = params.student.prompts
    column_prompts = {column: prompts.get("query" if column == "query" else "passage", "")
                      for column in dataset.column_names if column != "label"}
    return dataset, candidate_loss(student, params.train), column_prompts
