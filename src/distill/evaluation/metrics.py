"""Metric building blocks on embeddings and per-item scores. Scores are ×100 unless named otherwise.

Retrieval metrics come from ``pytrec_eval`` (trec_eval) in :mod:`distill.evaluation`; this module
holds what no maintained library computes on embeddings directly. SciPy and scikit-learn load inside
the functions that use them: the set-type modules import this one and are imported whenever a config
is validated, which should not take seconds.
"""

from __future__ import annotations

import numpy as np


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.clip(norms, 1e-12, None)


def row_cosines(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``first`` with the same row of ``second``."""
    return np.sum(normalize_rows(first) * normalize_rows(second), axis=1)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation ×100."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic * 100)


def top_k(queries: np.ndarray, documents: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and cosine scores of each query's ``k`` most similar documents, best first."""
    similarity = normalize_rows(queries) @ normalize_rows(documents).T
    depth = min(k, similarity.shape[1])
    top = np.argpartition(-similarity, depth - 1, axis=1)[:, :depth]
    order = np.take_along_axis(similarity, top, axis=1).argsort(axis=1)[:, ::-1]
    ranked = np.take_along_axis(top, order, axis=1)
    return ranked, np.take_along_axis(similarity, ranked, axis=1)


def probe_predictions(train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, seed: int) -> np.ndarray:
    """Labels predicted by a logistic-regression probe trained on embeddings (as MTEB does)."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(max_iter=2000, random_state=seed)
    probe.fit(normalize_rows(train_x), train_y)
    return probe.predict(normalize_rows(test_x))


def kmeans_assignment(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(normalize_rows(x))


def v_measures(labels: np.ndarray, clusterings: np.ndarray) -> np.ndarray:
    """V-measure ×100 (Rosenberg & Hirschberg, 2007; sklearn's ``v_measure_score``) of each column of
    ``clusterings`` (texts × fits, ids ``0..k-1``) against integer ``labels``, from one contingency
    table per fit: a bootstrap scores thousands of resamples × fits, and sklearn's per-call
    validation would dominate the evaluate step."""
    n, fits = clusterings.shape
    classes, clusters = int(labels.max()) + 1, int(clusterings.max()) + 1
    flat = (np.arange(fits)[None, :] * classes + labels[:, None]) * clusters + clusterings
    joint = np.bincount(flat.ravel(), minlength=fits * classes * clusters).reshape(fits, classes, clusters) / n

    def entropy(p: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)

    h_joint = entropy(joint, (1, 2))
    h_class, h_cluster = entropy(joint.sum(axis=2), (1,)), entropy(joint.sum(axis=1), (1,))
    # homogeneity = 1 - H(class | cluster) / H(class); completeness = 1 - H(cluster | class) / H(cluster);
    # either is 1 where its entropy is 0, as in sklearn.
    homogeneity = np.where(h_class > 0, 1 - (h_joint - h_cluster) / np.where(h_class > 0, h_class, 1.0), 1.0)
    completeness = np.where(h_cluster > 0, 1 - (h_joint - h_class) / np.where(h_cluster > 0, h_cluster, 1.0), 1.0)
    total = homogeneity + completeness
    return np.where(total > 0, 2 * homogeneity * completeness / np.where(total > 0, total, 1.0), 0.0) * 100


def pairwise_cosines(x: np.ndarray) -> np.ndarray:
    """Upper-triangle cosine similarities of all pairs of rows."""
    unit = normalize_rows(x)
    return (unit @ unit.T)[np.triu_indices(len(x), k=1)]


def similarity_spearman(model_x: np.ndarray, teacher_x: np.ndarray) -> float:
    """Spearman ×100 between the model's and the teacher's pairwise similarities (any dimensions)."""
    return spearman(pairwise_cosines(model_x), pairwise_cosines(teacher_x))
