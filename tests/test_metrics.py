import math

import numpy as np
import pytest

from distill import metrics


def test_ndcg_and_recall_by_hand():
    # Two documents, one query that prefers document 1; document 0 has relevance 2, document 1 relevance 1.
    queries = np.array([[0.0, 1.0]])
    documents = np.array([[1.0, 0.0], [0.0, 1.0]])
    qrels = [{0: 2, 1: 1}]
    scores = metrics.retrieval_scores(queries, documents, qrels, k=10, recall_k=1)
    dcg = (2**1 - 1) / math.log2(2) + (2**2 - 1) / math.log2(3)
    ideal = (2**2 - 1) / math.log2(2) + (2**1 - 1) / math.log2(3)
    assert scores["ndcg@10"] == pytest.approx(100 * dcg / ideal)
    assert scores["recall@1"] == pytest.approx(50.0)


def test_queries_without_relevant_documents_are_skipped():
    queries = np.eye(2)
    documents = np.eye(2)
    scores = metrics.retrieval_scores(queries, documents, [{0: 1}, {1: 0}], k=10, recall_k=10)
    assert scores["ndcg@10"] == pytest.approx(100.0)


def test_sts_spearman_perfect_and_reversed():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(20, 8))
    second = first + rng.normal(scale=np.linspace(0.01, 3, 20)[:, None], size=(20, 8))
    cos = np.sum(metrics.normalize_rows(first) * metrics.normalize_rows(second), axis=1)
    assert metrics.sts_spearman(first, second, cos) == pytest.approx(100.0)
    assert metrics.sts_spearman(first, second, -cos) == pytest.approx(-100.0)


def test_similarity_spearman_ignores_rotation_and_dimension():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 6))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    padded = np.hstack([x @ rotation, np.zeros((30, 4))])
    assert metrics.similarity_spearman(padded, x) == pytest.approx(100.0)
    assert metrics.similarity_spearman(rng.normal(size=(30, 6)), x) < 50


def test_probe_and_clustering_on_separable_data():
    rng = np.random.default_rng(2)
    centers = np.eye(3) * 10
    labels = [str(i % 3) for i in range(60)]
    x = np.array([centers[int(label)] for label in labels]) + rng.normal(size=(60, 3))
    assert metrics.classification_accuracy(x[:30], labels[:30], x[30:], labels[30:], seed=0) == 100.0
    assert metrics.clustering_v_measure(x, labels, seed=0) == pytest.approx(100.0)
