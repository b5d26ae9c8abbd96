import contextlib

import numpy as np
import pandas as pd
import pytest
import torch
from sentence_transformers.base.losses.merged_forward import column_merging_disabled
from sentence_transformers.sentence_transformer import losses

from distill.config.schema import TrainConfig
from distill.errors import DataError
from distill.models import prune_layers
from distill.training.candidates import candidate_dataset
from distill.training.losses import (
    InBatchKLDivLoss,
    InBatchSimilarityLoss,
    QueryDocumentSimilarityLoss,
    RelativeSimilarityLoss,
    weighted_loss,
)
from distill.training.objectives import OBJECTIVES


def features(model, texts):
    return [model.tokenize(texts)]


def test_losses_are_zero_on_own_embeddings_and_train(minilm):
    student = prune_layers(minilm, [0, 1])
    texts = ["the cat sat on the mat", "stocks fell sharply today", "a new phone was released"]
    with torch.no_grad():
        own = student(student.tokenize(texts))["sentence_embedding"]
    for loss_class in (losses.MSELoss, losses.EmbedDistillLoss, InBatchSimilarityLoss):
        loss = loss_class(student)
        assert loss(features(student, texts), own).item() < 1e-5
    teacher = torch.nn.functional.normalize(torch.randn(3, 768), dim=-1)  # another dimension entirely
    value = InBatchSimilarityLoss(student)(features(student, texts), teacher)
    value.backward()
    assert value.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_relative_similarity_loss_follows_the_teachers_order(minilm):
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=-1)
    close, far = torch.tensor([[0.9, 0.1, 0.0]]), torch.tensor([[0.1, 0.9, 0.0]])
    loss = RelativeSimilarityLoss(minilm, margin=0.05)
    agree = loss.compute_loss_from_embeddings([query, close, far], torch.tensor([[0.8, 0.2]]))
    disagree = loss.compute_loss_from_embeddings([query, close, far], torch.tensor([[0.2, 0.8]]))
    assert agree.item() == 0.0 and disagree.item() > 0.5
    tie = loss.compute_loss_from_embeddings([query, close, far], torch.tensor([[0.5, 0.5]]))
    assert tie.item() == 0.0, "no pair is ordered when the teacher ties"


def test_query_bank_adds_fixed_queries_the_student_encodes_in_eval_mode(minilm):
    """With a bank, the query × document term covers the batch's queries and the bank's, the bank
    encoded by the current weights, without dropout and without gradient."""
    normalize = torch.nn.functional.normalize
    student = prune_layers(minilm, [0, 1])
    queries, documents = ["markets rally", "team wins final"], ["shares rose on monday. " * 8, "the club won. " * 8]
    bank_texts = ["phone sales slump", "election called early", "storm hits coast"]
    teacher_queries, teacher_documents = normalize(torch.randn(5, 8), dim=-1), normalize(torch.randn(2, 8), dim=-1)
    labels = torch.cat([teacher_queries[:2], teacher_documents], dim=1)
    loss = QueryDocumentSimilarityLoss(student, query_bank=(bank_texts, teacher_queries[2:]))
    student.eval()
    value = loss([student.tokenize(queries), student.tokenize(documents)], labels)
    with torch.no_grad():
        q, d = (normalize(student(student.tokenize(t))["sentence_embedding"], dim=-1)
                for t in (queries + bank_texts, documents))
    expected = (torch.nn.functional.mse_loss(q @ d.T, teacher_queries @ teacher_documents.T)
                + torch.nn.functional.mse_loss(d @ d.T, teacher_documents @ teacher_documents.T))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    without = QueryDocumentSimilarityLoss(student)([student.tokenize(queries), student.tokenize(documents)], labels)
    assert without.item() != pytest.approx(value.item(), rel=1e-3)
    student.train()
    value = loss([student.tokenize(queries), student.tokenize(documents)], labels)
    assert student.training, "the bank's eval-mode pass restores training mode"
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_own_weight_pulls_documents_toward_the_students_pooled_embedding(minilm):
    """The own term is zero when the document already sits on its pooled target and adds
    ``own_weight * (1 - cos)`` otherwise; the teacher's columns come first in the labels."""
    normalize = torch.nn.functional.normalize
    student = prune_layers(minilm, [0, 1]).eval()
    queries, documents = ["markets rally", "team wins final"], ["shares rose on monday. " * 8, "the club won. " * 8]
    teacher = normalize(torch.randn(4, 8), dim=-1)
    with torch.no_grad():
        own = student(student.tokenize(documents))["sentence_embedding"]
    features = [student.tokenize(queries), student.tokenize(documents)]
    relations = QueryDocumentSimilarityLoss(student)(features, teacher.reshape(2, 16))
    on_target = QueryDocumentSimilarityLoss(student, own_weight=2.0)(features, torch.cat([teacher.reshape(2, 16), own], 1))
    assert on_target.item() == pytest.approx(relations.item(), abs=1e-6)
    elsewhere = normalize(torch.randn_like(own), dim=-1)
    off_target = QueryDocumentSimilarityLoss(student, own_weight=2.0)(features, torch.cat([teacher.reshape(2, 16), elsewhere], 1))
    gap = 2.0 * (1 - torch.nn.functional.cosine_similarity(own, elsewhere)).mean()
    assert off_target.item() == pytest.approx(relations.item() + gap.item(), rel=1e-5)


def test_weighted_candidate_objectives_share_the_students_passes_merged_or_per_column(minilm):
    """Every objective reads the same student passes: the query column's and one merged pass over the
    candidate columns (the library's ``embed_columns``), or one pass per column inside
    ``column_merging_disabled`` (what CPU training runs). Both give the same loss without dropout."""
    student = prune_layers(minilm, [0, 1])
    student.eval()
    texts = [["what rose today", "why fell stocks"], ["shares rose sharply", "stocks fell on news"],
             ["the cat sat", "a new phone"], ["rain is due", "the match ended"]]
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.4]])
    config = TrainConfig(objectives={"margin_mse": 1.0, "kl": 0.5, "mnrl": 0.25, "relative": 2.0}, matryoshka_dims=[])
    combined = weighted_loss(student, config, "candidates")
    with torch.no_grad():
        embeddings = [student(student.tokenize(column))["sentence_embedding"] for column in texts]
    expected = sum(config.weight(name) * part.compute_loss_from_embeddings(embeddings, scores)
                   for name, part in combined.parts.items())
    for context, passes in [(contextlib.nullcontext, 2), (column_merging_disabled, len(texts))]:
        calls = []
        hook = student.register_forward_hook(lambda *args, calls=calls: calls.append(1))
        with context():
            value = combined([student.tokenize(column) for column in texts], scores)
        hook.remove()
        assert len(calls) == passes
        assert value.item() == pytest.approx(expected.item(), rel=1e-4)
    student.zero_grad()
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_teacher_scores_enter_margin_mse_in_the_students_cosine_units(minilm):
    config = TrainConfig(objectives={"margin_mse": 1.0}, student_temperature=0.05, teacher_temperature=1.0,
                         matryoshka_dims=[])
    combined = weighted_loss(minilm, config, "candidates")
    logits = torch.tensor([[8.0, 2.0]])
    assert torch.allclose(combined.label_maps["margin_mse"](logits), logits * 0.05)


def test_matryoshka_wraps_the_candidate_objectives(minilm):
    student = prune_layers(minilm, [0])
    config = TrainConfig(objectives={"margin_mse": 1.0}, matryoshka_dims=[32, 128])
    wrapped = weighted_loss(student, config, "candidates")
    assert isinstance(wrapped, losses.MatryoshkaLoss) and list(wrapped.matryoshka_dims) == [384, 128, 32]
    texts = [["q one", "q two"], ["p one", "p two"], ["n one", "n two"]]
    assert torch.isfinite(wrapped([student.tokenize(c) for c in texts], torch.tensor([[0.5, 0.1], [0.4, 0.3]])))
    with pytest.raises(DataError, match="exceed the student's dimension 384"):
        weighted_loss(student, TrainConfig(objectives={"margin_mse": 1.0}, matryoshka_dims=[512]), "candidates")


class _Labels:
    """A label cache stand-in: the given model's own embeddings of any texts."""

    def __init__(self, model):
        self.model = model

    def get(self, texts):
        return self.model.encode(texts, convert_to_numpy=True)


def test_in_batch_kl_reads_the_teachers_embeddings_of_every_passage_in_the_batch(minilm):
    """With the student's own embeddings as the teacher's, the in-batch distributions agree (loss 0)
    only if the teacher's passage rows are laid out as the student's passages are (column by column);
    a margin_mse beside it still gets the scores alone, and another teacher gives a loss and gradients."""
    student = prune_layers(minilm, [0, 1])
    student.eval()  # no dropout: the loss compares two encodings of the same texts
    candidates = pd.DataFrame({"query": ["what rose today", "why fell stocks", "who won the match"],
                               "candidates": [["shares rose sharply", "rain is due", "the cat sat"],
                                              ["stocks fell on news", "a new phone", "the match ended"],
                                              ["the final score", "prices climbed", "storms ahead"]],
                               "scores": [[0.7, 0.2, 0.1], [0.6, 0.3, 0.4], [0.8, 0.1, 0.2]]})
    own = _Labels(student)
    dataset = candidate_dataset(candidates, (own, own))
    labels = torch.tensor(np.asarray(dataset["label"]))
    assert labels.shape == (3, 4, 1 + student.get_embedding_dimension())
    columns = [student.tokenize(dataset[column]) for column in ("query", "positive", "negative_1", "negative_2")]
    config = TrainConfig(objectives={"in_batch_kl": 1.0, "margin_mse": 1.0}, matryoshka_dims=[])
    combined = weighted_loss(student, config, "candidates")
    assert torch.equal(combined.label_maps["margin_mse"](labels), torch.tensor(candidates["scores"].tolist()))
    with torch.no_grad():
        embeddings = [student(c)["sentence_embedding"] for c in columns]
    assert combined.parts["in_batch_kl"].compute_loss_from_embeddings(embeddings, labels).item() < 1e-5
    shuffled = labels.clone()
    shuffled[:, 1:] = labels[:, 1:].flip(0)  # the right passages, in another order
    assert InBatchKLDivLoss(student).compute_loss_from_embeddings(embeddings, shuffled).item() > 0.1
    other = candidate_dataset(candidates, (_Labels(minilm), _Labels(minilm)))
    value = combined(columns, torch.tensor(np.asarray(other["label"])))
    value.backward()
    assert value.item() > 0 and any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_builds_its_loss(minilm, name):
    """An objective is one entry of ``training.objectives.OBJECTIVES``: its loss path must import and
    take its options, or the entry fails here rather than at the first training step."""
    combined = weighted_loss(minilm, TrainConfig(objectives={name: 1.0}, matryoshka_dims=[]), OBJECTIVES[name].data)
    assert list(combined.parts) == [name]
