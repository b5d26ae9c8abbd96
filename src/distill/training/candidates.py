"""Mined query candidates (a query, its positive and negatives, the teacher's scores) as the trainer takes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer

from distill.config.schema import Params
from distill.training.losses import weighted_loss


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
    return dataset, weighted_loss(student, params.train, "candidates"), column_prompts
