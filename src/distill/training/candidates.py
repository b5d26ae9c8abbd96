"""Mined query candidates (a query, its positive and negatives, the teacher's scores) as the trainer takes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer

from distill.config.schema import Params
from distill.labelling.cache import EmbeddingCache
from distill.training.losses import weighted_loss
from distill.training.objectives import objectives

TeacherLabels = tuple[EmbeddingCache, EmbeddingCache]  # the teacher's label caches of queries and of passages


def candidate_dataset(candidates: pd.DataFrame, teacher: TeacherLabels | None = None) -> Dataset:
    """Columns ``query, positive, negative_1…`` and ``label``: the teacher's scores ``(1 + negatives,)``,
    positive first; with ``teacher``'s label caches (queries, passages: what an objective that takes the
    teacher's embeddings needs), ``(1 + candidates, 1 + teacher_dim)``: row 0 the query's embedding
    after a 0, each next row a candidate's score and embedding."""
    width = len(candidates["candidates"].iloc[0])
    columns = {"query": candidates["query"].tolist(), "positive": [c[0] for c in candidates["candidates"]]}
    for i in range(1, width):
        columns[f"negative_{i}"] = [c[i] for c in candidates["candidates"]]
    scores = np.asarray(candidates["scores"].tolist(), dtype=np.float32)
    if teacher is None:
        columns["label"] = scores.tolist()
        return Dataset.from_dict(columns)
    query_cache, passage_cache = teacher
    queries = query_cache.get(candidates["query"].tolist())
    passages = passage_cache.get([text for row in candidates["candidates"] for text in row]).reshape(len(candidates), width, -1)
    columns["label"] = list(labels_with_embeddings(scores, queries, passages))
    return Dataset.from_dict(columns)


def labels_with_embeddings(scores: np.ndarray, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Scores ``(n, width)``, the teacher's query embeddings ``(n, dim)`` and candidate embeddings ``(n,
    width, dim)`` in the label layout ``(n, 1 + width, 1 + dim)`` an objective with ``teacher_embeddings``
    reads: row 0 a 0 and the query's embedding, each next row a candidate's score and embedding."""
    embeddings = np.concatenate([queries[:, None], candidates], axis=1)
    score_column = np.concatenate([np.zeros((len(scores), 1)), scores], axis=1)[..., None]
    return np.concatenate([score_column, embeddings], axis=2).astype(np.float32)


def candidate_objective(student: SentenceTransformer, params: Params, candidates: pd.DataFrame,
                        teacher: TeacherLabels) -> tuple[Dataset, torch.nn.Module, dict[str, str]]:
    """The candidate objectives as the trainer takes them: the dataset (with the teacher's embeddings
    in its labels where an objective takes them), its loss and each column's prompt (the query prompt
    on queries, the passage prompt on candidates)."""
    with_embeddings = params.train.uses(objectives(teacher_embeddings=True))
    dataset = candidate_dataset(candidates, teacher if with_embeddings else None)
    prompts = params.student.prompts
    column_prompts = {column: prompts.get("query" if column == "query" else "passage", "")
                      for column in dataset.column_names if column != "label"}
    return dataset, weighted_loss(student, params.train, "candidates"), column_prompts
