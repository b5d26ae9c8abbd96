import torch
from sentence_transformers import losses

from distill.losses import InBatchSimilarityLoss
from distill.models import prune_layers


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
