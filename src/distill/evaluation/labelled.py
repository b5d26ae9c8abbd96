"""Labelled held-out articles: a cross-fitted logistic-regression probe (classification) and k-means clustering."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from distill.errors import DataError
from distill.evaluation import metrics
from distill.evaluation.base import Evaluator, HeldoutSet, SetResult
from distill.readers import load_table
from distill.sampling import seeded_fraction, spread_sample

if TYPE_CHECKING:
    from distill.encoding import Encoder


class LabelledSet(HeldoutSet):
    """Texts with labels: a file with ``text_column``/``label_column``, or (no path) the held-out
    corpus documents that carry a label (BBC topics in the offline default); ``heldout_half`` applies
    to the latter only."""

    path: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    max_texts: int | None = Field(default=None, gt=1)

    @model_validator(mode="after")
    def _half_of_the_corpus(self) -> LabelledSet:
        if self.path is not None and self.heldout_half is not None:
            raise ValueError(f"eval set {self.name}: heldout_half chooses held-out corpus documents; a set read from "
                             "path has none. Remove heldout_half or path")
        return self


class ClassificationSet(LabelledSet):
    """Accuracy of a logistic-regression probe, cross-fitted: the texts fall into ``folds`` seeded
    groups by document and each group is predicted by a probe trained on the others, so every text is
    a test item; ``repeats`` draws of the folds are averaged, because which documents share a fold
    moves the accuracy by about as much as its bootstrap interval is wide."""

    primary_metric: ClassVar[str] = "accuracy"
    type: Literal["classification"]
    folds: int = Field(default=5, ge=2)
    repeats: int = Field(default=5, ge=1)


class ClusteringSet(LabelledSet):
    """V-measure of k-means (k = number of labels), averaged over ``kmeans_runs`` seeded fits as MTEB
    averages its clustering runs: on a few hundred texts one fit's score moves by several points with
    its seed, noise that a bootstrap over texts does not see."""

    primary_metric: ClassVar[str] = "v_measure"
    type: Literal["clustering"]
    kmeans_runs: int = Field(default=30, ge=1)


class LabelledEvaluator(Evaluator):
    """Labelled texts, one per held-out document or one per row of a file."""

    uses_heldout = True

    def __init__(self, spec: LabelledSet, frame: pd.DataFrame, seed: int, text_type: str) -> None:
        super().__init__(spec)
        self.frame, self.seed, self.text_type = frame.reset_index(drop=True), seed, text_type

    @classmethod
    def load(cls, spec, heldout, seed, text_type):
        if spec.path is None:
            frame = pd.DataFrame(columns=["text", "label", "doc_id"]) if heldout is None else heldout
            # One text per document: its first passage, so long articles do not outweigh short ones.
            frame = frame[frame["label"].notna()].drop_duplicates("doc_id")[["text", "label", "doc_id"]]
            if frame.empty:
                raise DataError(
                    f"eval set {spec.name}: no path given and the held-out corpus has no labelled documents; "
                    "set eval.sets[].path to a file with text and label columns"
                )
        else:
            path = Path(spec.path)
            if not path.is_file():
                raise DataError(f"eval set {spec.name}: file {path} does not exist")
            texts, labels = load_table(path, spec.text_column), load_table(path, spec.label_column)
            for column, values in ((spec.text_column, texts), (spec.label_column, labels)):
                empty = next((row for row, value in enumerate(values) if value is None or value == ""), None)
                if empty is not None:
                    raise DataError(f"eval set {spec.name}: {path} column {column!r} row {empty} is empty; every row "
                                    "needs a text and a label")
            if any(not isinstance(t, str) for t in texts):
                row = next(i for i, t in enumerate(texts) if not isinstance(t, str))
                raise DataError(f"eval set {spec.name}: {path} column {spec.text_column!r} row {row} is "
                                f"{texts[row]!r}, expected a string")
            frame = pd.DataFrame({"text": texts, "label": [str(x) for x in labels]})
            frame["doc_id"] = [str(i) for i in range(len(frame))]
        if spec.max_texts:
            frame = spread_sample(frame, spec.max_texts, seed, f"eval/{spec.name}")
        if frame["label"].nunique() < 2:
            raise DataError(f"eval set {spec.name}: needs at least 2 distinct labels, found {frame['label'].nunique()}")
        return cls(spec, frame, seed, text_type)

    def texts(self):
        return self.frame["text"].tolist()

    def data_files(self):
        return [Path(self.spec.path)] if self.spec.path else []

    def _encode(self, encoder: Encoder) -> np.ndarray:
        return encoder.encode(self.texts(), self.text_type, desc=f"{encoder.name} {self.name}")


class ClassificationEvaluator(LabelledEvaluator):
    """Accuracy ×100 of a logistic-regression probe on the embeddings (as MTEB does), cross-fitted over
    seeded folds of documents, ``repeats`` times with fresh folds: every text is predicted by probes
    that never saw its document, and its item is the fraction of repeats that got it right."""

    spec_class = ClassificationSet

    def __init__(self, spec: ClassificationSet, frame: pd.DataFrame, seed: int, text_type: str) -> None:
        super().__init__(spec, frame, seed, text_type)
        # folds[r, i]: the fold of text i in repeat r
        self.folds = np.array([[int(seeded_fraction(seed, f"probe/{repeat}", str(doc)) * spec.folds)
                                for doc in self.frame["doc_id"]] for repeat in range(spec.repeats)])
        for repeat, fold in np.ndindex(spec.repeats, spec.folds):  # an empty fold predicts nothing: no check
            test = self.folds[repeat] == fold
            if test.any() and self.frame["label"][~test].nunique() < 2:
                raise DataError(
                    f"eval set {spec.name}: {len(frame)} documents are too few for {spec.folds} folds: outside "
                    f"fold {fold} of repeat {repeat} fewer than 2 labels are left to train a probe on; use more "
                    "held-out documents, a labelled file, or fewer folds"
                )

    def __call__(self, encoder, reference=None, to_reference_space=None):
        embeddings, labels = self._encode(encoder), self.frame["label"].to_numpy()
        correct = np.zeros(len(labels))
        for repeat, fold in np.ndindex(self.spec.repeats, self.spec.folds):
            test = self.folds[repeat] == fold
            if not test.any():
                continue
            predicted = metrics.probe_predictions(embeddings[~test], labels[~test].tolist(), embeddings[test], self.seed)
            correct[test] += predicted == labels[test]
        items = {"correct": correct / self.spec.repeats}
        return SetResult({"accuracy": self.primary_on(items, np.arange(len(labels)))}, items)

    @staticmethod
    def primary_on(items, index):
        return float(items["correct"][index].mean() * 100)


class ClusteringEvaluator(LabelledEvaluator):
    """V-measure ×100 of k-means (k = number of labels) on all the set's texts, averaged over
    ``kmeans_runs`` fits with seeds ``seed``, ``seed + 1``, …; the items keep every fit's assignment,
    so a bootstrap resample re-scores all of them."""

    spec_class = ClusteringSet

    def __call__(self, encoder, reference=None, to_reference_space=None):
        embeddings = self._encode(encoder)
        label_ids = np.unique(self.frame["label"].astype(str), return_inverse=True)[1]
        k = int(label_ids.max()) + 1
        runs = [metrics.kmeans_assignment(embeddings, k, self.seed + run) for run in range(self.spec.kmeans_runs)]
        items = {"cluster": np.stack(runs, axis=1), "label": label_ids}  # cluster: (texts, runs)
        return SetResult({"v_measure": self.primary_on(items, np.arange(len(label_ids)))}, items)

    @staticmethod
    def primary_on(items, index):
        clusters = items["cluster"].reshape(len(items["cluster"]), -1)[index]  # 1-D: items of one fit
        return float(metrics.v_measures(items["label"][index], clusters).mean())
