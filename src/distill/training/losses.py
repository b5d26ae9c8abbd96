"""Distillation losses on teacher embeddings, in the Sentence Transformers loss style.

Every loss takes the student ``SentenceTransformer`` and is called by the trainer with the tokenised
texts and ``labels``: the teacher's embeddings of the same texts, shape ``(batch, teacher_dim)``, or
for a query with mined candidates the teacher's scores, shape ``(batch, candidates)``.
MSE and cosine distance on embeddings, MarginMSE, listwise KL and MultipleNegativesRanking are the
library's own losses; the classes here add what it does not have, and :func:`weighted_loss` sums the
objectives a config weights (:mod:`distill.training.objectives`) into the one loss the trainer gets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from sentence_transformers.util import all_gather, all_gather_with_grad, batch_to_device
from torch import Tensor, nn

from distill.errors import DataError
from distill.training.fit import distributed
from distill.training.objectives import OBJECTIVES, Objective, imported, objectives

if TYPE_CHECKING:
    from distill.config.schema import TrainConfig


class _EmbeddingsLoss(nn.Module):
    """Shared by the losses below: the student's embeddings of every text column (:func:`embed_columns`,
    as the library's losses take them), then ``compute_loss_from_embeddings`` (which
    :class:`WeightedSumLoss` also calls directly). Each loss cites its own paper."""

    def __init__(self, model: SentenceTransformer) -> None:
        super().__init__()
        self.model = model

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)


class InBatchSimilarityLoss(_EmbeddingsLoss):
    """MSE between the student's and the teacher's in-batch cosine-similarity matrices.

    The student matches how the teacher relates the texts of a batch to each other rather than
    the teacher's coordinates, so it keeps its own embedding space and dimension: no projection or
    PCA is needed and a strong pretrained student is not pulled out of the space it was trained in.
    This is the similarity loss of Jasper and Stella (Zhang et al., 2024, "Jasper and Stella:
    distillation of SOTA embedding models", https://arxiv.org/abs/2412.19048) and the pairwise
    relation of RKD (Park et al., 2019, https://arxiv.org/abs/1904.05068).

    Inputs: texts (one column) and labels ``(batch, teacher_dim)``; student output ``(batch, any_dim)``.
    The loss compares two ``(batch, batch)`` matrices. With ``gather_across_devices`` under DDP, both
    are gathered from every rank first (the student's with gradients), so the matrices span the global
    batch and N processes of batch B train like one process of batch N x B.
    """

    @property
    def citation(self) -> str:
        return "https://arxiv.org/abs/2412.19048"

    def __init__(self, model: SentenceTransformer, gather_across_devices: bool = False) -> None:
        super().__init__(model)
        self.gather_across_devices = gather_across_devices

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        embeddings = torch.cat(embeddings)
        teacher = labels.to(embeddings.dtype).repeat(len(embeddings) // len(labels), 1)
        if self.gather_across_devices:
            # Every rank computes the same global loss; all_gather's backward sums the ranks' gradients
            # into each local slice and DDP averages them, which gives the one-process gradient.
            embeddings, teacher = all_gather_with_grad(embeddings), all_gather(teacher)
        student = F.normalize(embeddings, dim=-1)
        teacher = F.normalize(teacher, dim=-1)
        return F.mse_loss(student @ student.T, teacher @ teacher.T)



class QueryDocumentSimilarityLoss(_EmbeddingsLoss):
    """MSE between the student's and the teacher's in-batch query × document and document × document
    cosine matrices: :class:`InBatchSimilarityLoss` across two columns, for long documents whose
    teacher embeddings are chunk-pooled. The student keeps its own space (no projection), and learns
    to place a long document where the teacher puts it relative to the queries that find it and to
    the batch's other documents. The relation-matching idea is RKD's (Park et al., 2019,
    https://arxiv.org/abs/1904.05068); long-document targets from the pooled teacher as in LongEmbed
    (https://arxiv.org/abs/2404.12096).

    ``query_bank`` (texts, teacher embeddings ``(bank, teacher_dim)``) adds fixed queries to the
    batch's own: a batch of 2k-token documents holds only a few, so the in-batch matrix alone says
    little about where a document should sit. The student encodes the bank without gradient (in eval
    mode, so dropout does not move the targets) at every step, so it follows the weights as they train.

    ``own_weight`` adds a dense term: ``own_weight * (1 - cos)`` between the document's embedding and
    the student's own chunk-pooled embedding of it (windows it reads natively, computed before long
    tuning), appended to the labels. The relation terms say where the teacher puts a document; this
    one says what the student already makes of it window by window, which reading it whole loses.

    Inputs: ``(query, document)`` columns; labels ``(batch, 2 * teacher_dim [+ student_dim])``: the
    teacher's query embedding, its document embedding, and with ``own_weight`` the student's pooled
    one. Student outputs ``(batch, student_dim)``; the loss compares ``(batch + bank, batch)`` and
    ``(batch, batch)`` matrices.
    """

    @property
    def citation(self) -> str:
        return "https://arxiv.org/abs/2404.12096"

    def __init__(self, model: SentenceTransformer, query_bank: tuple[list[str], Tensor] | None = None,
                 own_weight: float = 0.0) -> None:
        super().__init__(model)
        self.bank_texts, self.bank_teacher = query_bank if query_bank is not None else ([], None)
        self.own_weight = own_weight

    def _student_bank(self, like: Tensor) -> Tensor:
        training = self.model.training
        self.model.eval()
        with torch.no_grad():
            features = batch_to_device(self.model.tokenize(self.bank_texts), like.device)
            bank = self.model(features)["sentence_embedding"].to(like.dtype)
        self.model.train(training)
        return bank

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        query, document = embeddings
        labels = labels.to(query.dtype)
        own = None
        if self.own_weight:
            labels, own = labels[:, : -document.shape[1]], labels[:, -document.shape[1]:]
        teacher_query, teacher_document = labels.chunk(2, dim=1)
        if self.bank_texts:
            query = torch.cat([query, self._student_bank(query)])
            teacher_query = torch.cat([teacher_query, self.bank_teacher.to(query.device, query.dtype)])
        query, document, teacher_query, teacher_document = (
            F.normalize(e, dim=-1) for e in (query, document, teacher_query, teacher_document))
        loss = (F.mse_loss(query @ document.T, teacher_query @ teacher_document.T)
                + F.mse_loss(document @ document.T, teacher_document @ teacher_document.T))
        if own is not None:
            loss = loss + self.own_weight * (1 - F.cosine_similarity(document, own, dim=-1)).mean()
        return loss


class RelativeSimilarityLoss(_EmbeddingsLoss):
    """Pairwise rank term: wherever the teacher scores candidate ``i`` above ``j`` for a query, the
    student's cosine for ``i`` should beat ``j``'s by ``margin`` (hinge). The relative similarity
    distillation loss of Jasper and Stella (https://arxiv.org/abs/2412.19048), over mined candidates.

    Inputs: embeddings ``[query, candidate_1, …, candidate_n]`` each ``(batch, dim)``; labels the
    teacher scores ``(batch, n)``.
    """

    @property
    def citation(self) -> str:
        return "https://arxiv.org/abs/2412.19048"

    def __init__(self, model: SentenceTransformer, margin: float = 0.015) -> None:
        super().__init__(model)
        self.margin = margin

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        query = F.normalize(embeddings[0], dim=-1)
        candidates = F.normalize(torch.stack(embeddings[1:], dim=1), dim=-1)  # (batch, n, dim)
        student = torch.einsum("bd,bnd->bn", query, candidates)
        teacher_above = labels.unsqueeze(2) > labels.unsqueeze(1)  # [b, i, j]: teacher ranks i above j
        hinge = F.relu(self.margin - (student.unsqueeze(2) - student.unsqueeze(1)))
        return (hinge * teacher_above).sum() / teacher_above.sum().clamp(min=1)



class InBatchKLDivLoss(_EmbeddingsLoss):
    """Listwise KL from the teacher's to the student's distribution of each query over every passage of
    the batch: its own positive and negatives and every other query's. The teacher's in-batch scores
    are the cosines of its embeddings, which the label step has cached for the queries and passages
    already, so each query learns from ``batch x (1 + negatives)`` teacher scores instead of its own
    ``1 + negatives``, at no teacher cost. The in-batch supervision of TAS-B (Hofstätter et al., 2021,
    "Efficiently Teaching an Effective Dense Retriever with Balanced Topic Aware Sampling",
    https://arxiv.org/abs/2104.06967), with the bi-encoder teacher as its in-batch scorer; beside
    ``margin_mse`` on the mined candidates it is that paper's dual supervision.

    Inputs: embeddings ``[query, candidate_1, …, candidate_n]`` each ``(batch, dim)``; labels ``(batch,
    1 + n, 1 + teacher_dim)``, the teacher's embedding of the query (row 0) and of each candidate in
    columns ``1:``. Both sides are softmaxed over the ``(batch, batch x n)`` cosine matrix at their
    temperature. With ``gather_across_devices`` under DDP the passages (and their teacher embeddings)
    of every rank are gathered first, the student's with gradients.
    """

    @property
    def citation(self) -> str:
        return "https://arxiv.org/abs/2104.06967"

    def __init__(self, model: SentenceTransformer, student_temperature: float = 0.05, teacher_temperature: float = 0.05,
                 gather_across_devices: bool = False) -> None:
        super().__init__(model)
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature
        self.gather_across_devices = gather_across_devices

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        query, passages = embeddings[0], torch.cat(embeddings[1:])  # passages column by column
        teacher = labels[:, :, 1:].to(query.dtype)
        teacher_query = teacher[:, 0]
        teacher_passages = teacher[:, 1:].transpose(0, 1).reshape(-1, teacher.shape[-1])  # the same order
        if self.gather_across_devices:
            passages, teacher_passages = all_gather_with_grad(passages), all_gather(teacher_passages)
        student = F.normalize(query, dim=-1) @ F.normalize(passages, dim=-1).T / self.student_temperature
        target = F.normalize(teacher_query, dim=-1) @ F.normalize(teacher_passages, dim=-1).T / self.teacher_temperature
        return F.kl_div(F.log_softmax(student, dim=-1), F.log_softmax(target, dim=-1), log_target=True,
                        reduction="batchmean")


def candidate_scores(labels: Tensor) -> Tensor:
    """The teacher's scores ``(batch, n)`` out of candidate labels that carry the teacher's embeddings
    too (``(batch, 1 + n, 1 + teacher_dim)``, scores in column 0 of the candidate rows)."""
    return labels[:, 1:, 0]


class WeightedSumLoss(nn.Module):
    """A weighted sum of losses over the same inputs, whose student passes are shared: the library's
    :func:`embed_columns` (one pass for the first column, one merged pass for the others, or one per
    column inside ``column_merging_disabled``), then each part's ``compute_loss_from_embeddings`` gets
    the shared embeddings and its own view of the labels
    (``label_maps``, e.g. teacher scores rescaled to the student's cosine units).

    Inputs: whatever the parts take (texts with teacher embeddings, or a query with candidates and
    teacher scores ``(batch, n)``).
    """

    def __init__(
        self,
        model: SentenceTransformer,
        parts: dict[str, tuple[float, nn.Module]],
        label_maps: dict[str, Callable[[Tensor], Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.weights = {name: weight for name, (weight, _) in parts.items()}
        self.parts = nn.ModuleDict({name: loss for name, (_, loss) in parts.items()})
        self.label_maps = label_maps or {}

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = embed_columns(self.model, sentence_features)
        total = embeddings[0].new_zeros(())
        for name, loss in self.parts.items():
            part_labels = self.label_maps.get(name, lambda x: x)(labels)
            total = total + self.weights[name] * loss.compute_loss_from_embeddings(embeddings, part_labels)
        return total

    def get_config_dict(self) -> dict:
        return {"weights": self.weights}


def _part_labels(labels: Tensor, objective: Objective, config: TrainConfig, scores_only: bool) -> Tensor:
    """One objective's view of the batch's labels: the scores alone where the labels carry the teacher's
    embeddings for another objective, then the objective's own mapping."""
    if scores_only:
        labels = candidate_scores(labels)
    return objective.labels(labels, config) if objective.labels is not None else labels


def weighted_loss(model: SentenceTransformer, config: TrainConfig, data: Literal["texts", "candidates"]) -> nn.Module:
    """The weighted sum of ``config``'s objectives on ``data`` (texts with teacher embeddings, or mined
    candidates with teacher scores; see :data:`~distill.training.objectives.OBJECTIVES`), sharing the
    student's passes over the columns (:class:`WeightedSumLoss`). Student scores are cosines. The
    candidate objectives are wrapped in ``MatryoshkaLoss`` at ``train.matryoshka_dims`` (plus the full
    dimension)."""
    parts, label_maps = {}, {}
    with_embeddings = data == "candidates" and config.uses(objectives(teacher_embeddings=True))
    for name in objectives(data):
        if config.weight(name) <= 0:
            continue
        objective = OBJECTIVES[name]
        options = objective.options(config) | ({"gather_across_devices": distributed()} if objective.in_batch else {})
        parts[name] = (config.weight(name), imported(objective.loss)(model, **options))
        label_maps[name] = partial(_part_labels, objective=objective, config=config,
                                   scores_only=with_embeddings and not objective.teacher_embeddings)
    loss = WeightedSumLoss(model, parts, label_maps)
    if data == "candidates" and config.matryoshka_dims:
        full = model.get_embedding_dimension()
        too_big = [d for d in config.matryoshka_dims if d > full]
        if too_big:
            raise DataError(f"train.matryoshka_dims {too_big} exceed the student's dimension {full}")
        loss = MatryoshkaLoss(model, loss, matryoshka_dims=sorted({full, *config.matryoshka_dims}, reverse=True))
    return loss

