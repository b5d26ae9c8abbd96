"""Evaluation metrics on embeddings. Scores are on a 0-100 scale unless named otherwise."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import v_measure_score


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.clip(norms, 1e-12, None)


def sts_spearman(first: np.ndarray, second: np.ndarray, scores: np.ndarray) -> float:
    """Spearman correlation ×100 between pair cosine similarities and human scores."""
    cosines = np.sum(normalize_rows(first) * normalize_rows(second), axis=1)
    return float(spearmanr(cosines, scores).statistic * 100)


def retrieval_scores(
    queries: np.ndarray, documents: np.ndarray, qrels: list[dict[int, int]], k: int = 10, recall_k: int = 100
) -> dict[str, float]:
    """nDCG@k (gain 2^rel − 1, log2 discount) and Recall@recall_k ×100, over queries with a relevant doc.

    ``qrels[i]`` maps document row → graded relevance for query row ``i``.
    """
    similarity = normalize_rows(queries) @ normalize_rows(documents).T
    depth = min(max(k, recall_k), similarity.shape[1])
    top = np.argpartition(-similarity, depth - 1, axis=1)[:, :depth]
    order = np.take_along_axis(similarity, top, axis=1).argsort(axis=1)[:, ::-1]
    ranked = np.take_along_axis(top, order, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcgs, recalls = [], []
    for row, judged in enumerate(qrels):
        relevant = {doc for doc, rel in judged.items() if rel > 0}
        if not relevant:
            continue
        gains = np.array([2.0 ** judged.get(doc, 0) - 1 for doc in ranked[row, :k]])
        ideal = np.sort(np.array([2.0**rel - 1 for rel in judged.values() if rel > 0]))[::-1][:k]
        ndcgs.append(float(gains @ discounts[: len(gains)]) / float(ideal @ discounts[: len(ideal)]))
        recalls.append(len(relevant & set(ranked[row, :recall_k].tolist())) / len(relevant))
    return {f"ndcg@{k}": float(np.mean(ndcgs) * 100), f"recall@{recall_k}": float(np.mean(recalls) * 100)}


def classification_accuracy(
    train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, test_y: list[str], seed: int
) -> float:
    """Accuracy ×100 of a logistic-regression probe trained on embeddings (as MTEB does)."""
    probe = LogisticRegression(max_iter=2000, random_state=seed)
    probe.fit(normalize_rows(train_x), train_y)
    return float((probe.predict(normalize_rows(test_x)) == np.asarray(test_y)).mean() * 100)


def clustering_v_measure(x: np.ndarray, labels: list[str], seed: int) -> float:
    """V-measure ×100 of k-means (k = number of labels) against the true labels."""
    k = len(set(labels))
    assignment = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(normalize_rows(x))
    return float(v_measure_score(labels, assignment) * 100)


def pairwise_cosines(x: np.ndarray) -> np.ndarray:
    """Upper-triangle cosine similarities of all pairs of rows."""
    unit = normalize_rows(x)
    return (unit @ unit.T)[np.triu_indices(len(x), k=1)]


def similarity_spearman(model_x: np.ndarray, teacher_x: np.ndarray) -> float:
    """Spearman ×100 between the model's and the teacher's pairwise similarities (any dimensions)."""
    return float(spearmanr(pairwise_cosines(model_x), pairwise_cosines(teacher_x)).statistic * 100)


def mean_cosine(model_x: np.ndarray, teacher_x: np.ndarray) -> float:
    """Mean teacher-student cosine of the same texts, for models in the teacher's space."""
    return float(np.mean(np.sum(normalize_rows(model_x) * normalize_rows(teacher_x), axis=1)))
