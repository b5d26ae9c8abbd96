"""Distillation losses on teacher embeddings, in the Sentence Transformers loss style.

Every loss takes the student ``SentenceTransformer`` and is called by the trainer with the tokenised
texts and ``labels``: the teacher's embeddings of the same texts, shape ``(batch, teacher_dim)``.
Plain MSE and cosine distance are the library's own :class:`~sentence_transformers.losses.MSELoss`
and :class:`~sentence_transformers.losses.EmbedDistillLoss`; the classes here add what it does not have.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn


class InBatchSimilarityLoss(nn.Module):
    """MSE between the student's and the teacher's in-batch cosine-similarity matrices.

    The student matches how the teacher relates the texts of a batch to each other rather than
    the teacher's coordinates, so it keeps its own embedding space and dimension: no projection or
    PCA is needed and a strong pretrained student is not pulled out of the space it was trained in.
    This is the similarity loss of Jasper and Stella (Zhang et al., 2024, "Jasper and Stella:
    distillation of SOTA embedding models", https://arxiv.org/abs/2412.19048) and the pairwise
    relation of RKD (Park et al., 2019, https://arxiv.org/abs/1904.05068).

    Inputs: texts (one column) and labels ``(batch, teacher_dim)``; student output ``(batch, any_dim)``.
    The loss compares two ``(batch, batch)`` matrices.
    """

    def __init__(self, model: SentenceTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = torch.cat([self.model(f)["sentence_embedding"] for f in sentence_features])
        student = F.normalize(embeddings, dim=-1)
        teacher = F.normalize(labels.to(embeddings.dtype), dim=-1)
        teacher = teacher.repeat(len(student) // len(teacher), 1)
        return F.mse_loss(student @ student.T, teacher @ teacher.T)

    @property
    def citation(self) -> str:
        return "https://arxiv.org/abs/2412.19048"
