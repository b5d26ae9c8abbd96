import math

import numpy as np
import pandas as pd
import pytest

from distill import metrics
from distill.config import LabelledSet, StsSet
from distill.evaluation import ClassificationEvaluator, ClusteringEvaluator, RetrievalEvaluator, StsEvaluator
from tests.test_evaluation import beir


class FixedEncoder:
    """Stands in for an Encoder: fixed vectors per text, so the metric arithmetic can be checked by hand."""

    name = "fixed"

    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts, text_type, desc=None):
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_ndcg_uses_trec_eval_linear_gain(tmp_path):
    # One query; document d1 (relevance 1) ranks above d0 (relevance 2).
    evaluator = RetrievalEvaluator.load(beir(tmp_path, ["q0\td0\t2", "q0\td1\t1"]), None, 0, "passage")
    vectors = {"query 0": [0.0, 1.0], "T0 doc 0": [0.6, 0.8], "T1 doc 1": [0.0, 1.0], "T2 doc 2": [1.0, 0.0]}
    result = evaluator(FixedEncoder(vectors))
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert result.scores["ndcg@10"] == pytest.approx(100 * dcg / ideal)
    assert result.scores["mrr@10"] == pytest.approx(100.0)
    assert result.scores["recall@100"] == pytest.approx(100.0)
    assert evaluator.primary_on(result.items, np.array([0, 0])) == pytest.approx(result.scores["ndcg@10"])


def test_queries_without_relevant_documents_are_left_out(tmp_path):
    evaluator = RetrievalEvaluator.load(beir(tmp_path, ["q0\td1\t1", "q1\td0\t0"]), None, 0, "passage")
    assert evaluator.queries == ["query 0"]


def test_sts_spearman_perfect_and_reversed(tmp_path):
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    cos = metrics.row_cosines(first, second)
    vectors = {**{f"a{i}": first[i] for i in range(20)}, **{f"b{i}": second[i] for i in range(20)}}
    spec = StsSet(name="s", type="sts", path="unused.csv")
    for sign, expected in ((1, 100.0), (-1, -100.0)):
        evaluator = StsEvaluator(spec, [f"a{i}" for i in range(20)], [f"b{i}" for i in range(20)], list(sign * cos))
        assert evaluator(FixedEncoder(vectors)).scores["spearman"] == pytest.approx(expected)


def test_similarity_spearman_ignores_rotation_and_dimension():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 6))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    padded = np.hstack([x @ rotation, np.zeros((30, 4))])
    assert metrics.similarity_spearman(padded, x) == pytest.approx(100.0)
    assert metrics.similarity_spearman(rng.normal(size=(30, 6)), x) < 50


def test_probe_and_clustering_on_separable_data():
    rng = np.random.default_rng(2)
    labels = [str(i % 3) for i in range(60)]
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(60)], "label": labels, "doc_id": [f"d{i}" for i in range(60)]})
    vectors = {f"t{i}": np.eye(3)[int(labels[i])] * 10 + rng.normal(size=3) for i in range(60)}
    probe = ClassificationEvaluator.load(LabelledSet(name="c", type="classification"), frame, 0, "passage")
    clusters = ClusteringEvaluator.load(LabelledSet(name="k", type="clustering"), frame, 0, "passage")
    assert probe(FixedEncoder(vectors)).scores["accuracy"] == 100.0
    assert clusters(FixedEncoder(vectors)).scores["v_measure"] == pytest.approx(100.0)
