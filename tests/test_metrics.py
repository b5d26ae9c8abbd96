import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import v_measure_score

from distill.errors import DataError
from distill.evaluation import metrics
from distill.evaluation.labelled import ClassificationEvaluator, ClassificationSet, ClusteringEvaluator, ClusteringSet
from distill.evaluation.retrieval import RetrievalEvaluator
from distill.evaluation.sts import StsEvaluator, StsSet
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
    probe = ClassificationEvaluator.load(ClassificationSet(name="c", type="classification"), frame, 0, "passage")
    clusters = ClusteringEvaluator.load(ClusteringSet(name="k", type="clustering"), frame, 0, "passage")
    assert probe(FixedEncoder(vectors)).scores["accuracy"] == 100.0
    assert clusters(FixedEncoder(vectors)).scores["v_measure"] == pytest.approx(100.0)


def labelled_frame(n: int, labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"t{i}" for i in range(n)], "label": labels, "doc_id": [f"d{i}" for i in range(n)]})


def test_probe_predicts_each_text_from_folds_without_its_document():
    # Each text has its own one-hot feature and a random label: a probe that saw the text would
    # recall its label; one that never saw it can only guess.
    rng = np.random.default_rng(3)
    labels = [str(x) for x in rng.integers(0, 3, size=90)]
    vectors = {f"t{i}": np.eye(90)[i] for i in range(90)}
    for folds, repeats in ((2, 1), (3, 4)):
        spec = ClassificationSet(name="c", type="classification", folds=folds, repeats=repeats)
        result = ClassificationEvaluator.load(spec, labelled_frame(90, labels), 0, "passage")(FixedEncoder(vectors))
        correct = result.items["correct"]
        assert len(correct) == 90  # every text is a test item
        assert np.allclose(correct * repeats, np.round(correct * repeats))  # the fraction of repeats right
        assert result.scores["accuracy"] == pytest.approx(100 * correct.mean()) and result.scores["accuracy"] < 60


def test_probe_folds_must_each_leave_two_labels_to_train_on():
    # Two documents: whichever fold holds one leaves a single label to train on.
    spec = ClassificationSet(name="c", type="classification", folds=2)
    with pytest.raises(DataError, match=r"eval set c: 2 documents are too few for 2 folds: outside fold"):
        ClassificationEvaluator.load(spec, labelled_frame(2, ["a", "b"]), 0, "passage")


def test_clustering_averages_seeded_kmeans_fits():
    rng = np.random.default_rng(4)
    labels = [str(i % 4) for i in range(80)]
    x = np.eye(4)[[int(label) for label in labels]] * 1.5 + rng.normal(size=(80, 4))  # overlapping topics
    vectors = {f"t{i}": x[i] for i in range(80)}
    label_ids = np.array([int(label) for label in labels])
    spec = ClusteringSet(name="k", type="clustering", kmeans_runs=5)
    result = ClusteringEvaluator.load(spec, labelled_frame(80, labels), 7, "passage")(FixedEncoder(vectors))
    fits = [100 * v_measure_score(label_ids, metrics.kmeans_assignment(x.astype(np.float32), 4, 7 + run))
            for run in range(5)]
    assert len(set(np.round(fits, 6))) > 1  # the seeds disagree: one fit alone would be luck
    assert result.items["cluster"].shape == (80, 5)
    assert result.scores["v_measure"] == pytest.approx(np.mean(fits))
    resample = rng.integers(0, 80, 80)
    assert ClusteringEvaluator.primary_on(result.items, resample) == pytest.approx(np.mean(
        [100 * v_measure_score(label_ids[resample], result.items["cluster"][resample, run]) for run in range(5)]))


@pytest.mark.parametrize("classes,clusters", [(5, 5), (3, 7), (1, 4), (4, 1), (1, 1)])
def test_v_measures_equal_sklearn(classes, clusters):
    rng = np.random.default_rng(classes * 10 + clusters)
    labels = rng.integers(0, classes, 60)
    fits = np.stack([rng.integers(0, clusters, 60), labels % clusters, np.zeros(60, dtype=int)], axis=1)
    expected = [100 * v_measure_score(labels, fits[:, run]) for run in range(fits.shape[1])]
    assert metrics.v_measures(labels, fits) == pytest.approx(expected, abs=1e-9)
