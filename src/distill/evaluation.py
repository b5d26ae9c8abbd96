"""Evaluators: one class per set type, in the shape of Sentence Transformers' ``evaluation/``.

Each evaluator loads and checks its data up front (:meth:`Evaluator.load`), names every text it
shows a model (:meth:`Evaluator.texts`, for decontamination), scores one model
(:meth:`Evaluator.__call__` → metrics keyed ``<set>/<metric>``, scale 0–100) and keeps the
per-item scores behind its ``primary_metric`` (per pair, per query, per text), so that
:meth:`Evaluator.primary_on` can recompute it on a bootstrap resample.

:func:`score_model` runs every evaluator for one model; :func:`eval_spec` fingerprints what was
evaluated (set configs, data file hashes, held-out documents), so scores are only ever compared on
the same spec.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytrec_eval
from sklearn.feature_extraction.text import TfidfVectorizer

from distill import metrics
from distill.config import (
    ClassificationSet,
    EvalSet,
    FidelitySet,
    LabelledSet,
    LongSet,
    RetrievalSet,
    StsSet,
    is_quality_set,
)
from distill.encoding import Encoder
from distill.errors import DataError
from distill.longdocs import LongDocument, TokenCounter, documents_at_length, filler_sentences, needles, pass_keys
from distill.readers import bbc_articles, check_utf8, load_table, read_artifact, read_stsb_pairs
from distill.sampling import heldout_half, seeded_fraction, spread_sample

Items = dict[str, np.ndarray]
ToReferenceSpace = Callable[[np.ndarray], np.ndarray | None]


@dataclass(frozen=True)
class SetResult:
    scores: dict[str, float]  # metric name → value, 0–100 (cosine: −1..1)
    items: Items  # per-item arrays from which primary_on recomputes the primary metric


class Evaluator(ABC):
    """One evaluation set: its data, how a model is scored on it, and its primary metric."""

    uses_heldout: ClassVar[bool] = False  # data comes from the held-out corpus, not a file

    def __init__(self, spec: EvalSet) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def primary_metric(self) -> str:
        return self.spec.primary_metric

    @classmethod
    @abstractmethod
    def load(cls, spec: EvalSet, heldout: pd.DataFrame | None, seed: int, text_type: str) -> "Evaluator":
        """Read and check the set's data; a missing or malformed file is an error, never a skip."""

    @abstractmethod
    def texts(self) -> list[str]:
        """Every text this set shows a model."""

    def data_files(self) -> list[Path]:
        """Files whose content the scores depend on (hashed into the evaluation spec)."""
        return []

    @abstractmethod
    def __call__(
        self, encoder: Encoder, reference: Encoder | None = None, to_reference_space: ToReferenceSpace | None = None
    ) -> SetResult: ...

    @staticmethod
    @abstractmethod
    def primary_on(items: Items, index: np.ndarray) -> float:
        """The primary metric on the items at ``index`` (a bootstrap resample)."""


class StsEvaluator(Evaluator):
    """Spearman ×100 between the cosine of each sentence pair and its human score."""

    def __init__(self, spec: StsSet, first: list[str], second: list[str], scores: list[float]) -> None:
        super().__init__(spec)
        self.first, self.second, self.scores = first, second, np.asarray(scores, dtype=np.float64)

    @classmethod
    def load(cls, spec, heldout, seed, text_type):
        pairs = read_stsb_pairs(Path(spec.path))
        return cls(spec, [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs])

    def texts(self):
        return self.first + self.second

    def data_files(self):
        return [Path(self.spec.path)]

    def __call__(self, encoder, reference=None, to_reference_space=None):
        first = encoder.encode(self.first, "sentence", desc=f"{encoder.name} {self.name}")
        second = encoder.encode(self.second, "sentence", desc=f"{encoder.name} {self.name}")
        cosines = metrics.row_cosines(first, second)
        items = {"cosine": cosines, "gold": self.scores}
        return SetResult({"spearman": self.primary_on(items, np.arange(len(cosines)))}, items)

    @staticmethod
    def primary_on(items, index):
        return metrics.spearman(items["cosine"][index], items["gold"][index])


def judged_ranking(queries: np.ndarray, documents: np.ndarray, qrels: dict[str, dict[str, int]],
                   measures: dict[str, str], depth: int) -> tuple[dict[str, dict[str, float]], Items]:
    """Each query's ``depth`` most similar documents by cosine (a trec_eval run keyed by row numbers) and,
    per query in row order, the trec_eval ``measures`` (``{our name: trec_eval name}``) on ``qrels``."""
    ranked, scores = metrics.top_k(queries, documents, k=depth)
    run = {str(q): {str(d): float(s) for d, s in zip(ranked[q], scores[q])} for q in range(len(queries))}
    return run, run_measures(run, qrels, measures)


def run_measures(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], measures: dict[str, str]) -> Items:
    """Per query, in row order, the trec_eval ``measures`` (``{our name: trec_eval name}``) of ``run`` on ``qrels``."""
    per_query = pytrec_eval.RelevanceEvaluator(qrels, set(measures.values())).evaluate(run)
    return {name: np.array([per_query[str(q)][m] for q in range(len(run))]) for name, m in measures.items()}


class RetrievalEvaluator(Evaluator):
    """nDCG@10, Recall@100 and MRR@10 ×100 as trec_eval computes them (``pytrec_eval``, linear
    gain, as BEIR and MTEB report), averaged over the queries with at least one relevant document.
    Documents are ``title + " " + text``."""

    measures: ClassVar[dict[str, str]] = {"ndcg@10": "ndcg_cut_10", "recall@100": "recall_100"}

    def __init__(self, spec: RetrievalSet, queries: list[str], documents: list[str], qrels: dict[str, dict[str, int]],
                 files: list[Path]) -> None:
        super().__init__(spec)
        self.queries, self.documents, self.qrels, self.files = queries, documents, qrels, files

    @classmethod
    def load(cls, spec, heldout, seed, text_type):
        folder = Path(spec.path)
        if not folder.is_dir():
            raise DataError(f"eval set {spec.name}: retrieval folder {folder} does not exist")
        corpus = _read_jsonl(folder / "corpus.jsonl", ("_id", "text"))
        queries = _read_jsonl(folder / "queries.jsonl", ("_id", "text"))
        doc_row = {str(d["_id"]): i for i, d in enumerate(corpus)}
        query_row = {str(q["_id"]): i for i, q in enumerate(queries)}
        qrels_path = folder / "qrels" / f"{spec.split}.tsv"
        judged = _read_qrels(qrels_path, query_row, doc_row)
        # Queries with no relevant document cannot be ranked well or badly: trec_eval's nDCG is 0 for
        # them whatever the model does, so they are left out (43 of MS MARCO's, 40 of DBpedia's 50).
        query_rows = sorted(q for q, docs in judged.items() if any(r > 0 for r in docs.values()))
        if not query_rows:
            raise DataError(f"{qrels_path}: no query has a relevant document (score > 0)")
        return cls(
            spec,
            queries=[queries[q]["text"] for q in query_rows],
            documents=[" ".join(d[k] for k in ("title", "text") if d.get(k)).strip() for d in corpus],
            qrels={str(i): {str(d): r for d, r in judged[q].items()} for i, q in enumerate(query_rows)},
            files=[folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path],
        )

    def texts(self):
        return self.queries + self.documents

    def data_files(self):
        return self.files

    def __call__(self, encoder, reference=None, to_reference_space=None, document_encoder=None):
        """``document_encoder`` (default: ``encoder``) encodes the documents: asymmetric use, where a
        student encodes the queries against documents the teacher encoded once."""
        document_encoder = document_encoder or encoder
        queries = encoder.encode(self.queries, "query", desc=f"{encoder.name} {self.name} queries")
        documents = document_encoder.encode(self.documents, "passage",
                                            desc=f"{document_encoder.name} {self.name} documents")
        run, items = judged_ranking(queries, documents, self.qrels, self.measures, depth=100)
        return self._result(run, items)

    def bm25(self) -> SetResult:
        """The same measures for BM25 (``bm25s``, Lucene's variant, English stopwords) over the same
        queries and documents: the no-neural reference a retrieval score is read against."""
        import bm25s

        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(self.documents, stopwords="en", show_progress=False), show_progress=False)
        # allow_empty: a query of stopwords only still gets its (empty) ranking.
        ranked, scores = retriever.retrieve(bm25s.tokenize(self.queries, stopwords="en", show_progress=False),
                                            k=min(100, len(self.documents)), show_progress=False)
        run = {str(q): {str(int(d)): float(v) for d, v in zip(ranked[q], scores[q])} for q in range(len(self.queries))}
        return self._result(run, run_measures(run, self.qrels, self.measures))

    def _result(self, run: dict[str, dict[str, float]], items: Items) -> SetResult:
        """``items`` (per query, in row order) with MRR@10 of ``run`` added, and their means ×100."""
        top10 = {q: dict(sorted(docs.items(), key=lambda x: -x[1])[:10]) for q, docs in run.items()}
        reciprocal = pytrec_eval.RelevanceEvaluator(self.qrels, {"recip_rank"}).evaluate(top10)
        items["mrr@10"] = np.array([reciprocal[str(q)]["recip_rank"] for q in range(len(self.queries))])
        return SetResult({name: float(values.mean() * 100) for name, values in items.items()}, items)

    @staticmethod
    def primary_on(items, index):
        return float(items["ndcg@10"][index].mean() * 100)


class TitleRetrievalEvaluator(RetrievalEvaluator):
    """One query per held-out document (its title, or its top TF-IDF keywords); relevant: the passages
    of that document; candidates: every held-out passage. Scored exactly as :class:`RetrievalEvaluator`.
    Queries are ``query`` texts, passages ``passage`` texts, as in any retrieval set."""

    uses_heldout = True

    @classmethod
    def load(cls, spec, heldout, seed, text_type):
        if spec.queries == "titles" and (heldout is None or "title" not in heldout or heldout["title"].isna().all()):
            raise DataError(
                f"eval set {spec.name}: the held-out corpus has no document titles; title_retrieval needs a "
                "source with titles (the bbc source) or remove the set (re-run prepare if the corpus predates titles)"
            )
        if heldout is None or not len(heldout):
            raise DataError(f"eval set {spec.name}: the held-out corpus has no documents"
                            + (f" in the {spec.heldout_half} half" if spec.heldout_half else "")
                            + ": raise corpus.heldout_fraction or corpus.max_texts")
        documents = heldout["text"].tolist()
        if spec.queries == "titles":
            sources = heldout[heldout["title"].notna()].drop_duplicates("doc_id")
            sources = sources.assign(query=sources["title"].astype(str))
        else:
            sources = keyword_queries(heldout, spec.keywords)
        if spec.max_queries:
            sources = spread_sample(sources, spec.max_queries, seed, f"eval/{spec.name}")
        doc_rows: dict[str, list[int]] = {}
        for row, doc_id in enumerate(heldout["doc_id"]):
            doc_rows.setdefault(str(doc_id), []).append(row)
        queries = sources["query"].tolist()
        qrels = {str(q): {str(row): 1 for row in doc_rows[str(doc)]} for q, doc in enumerate(sources["doc_id"])}
        if len(queries) < 2:
            raise DataError(f"eval set {spec.name}: needs at least 2 held-out documents with a query, found {len(queries)}")
        return cls(spec, queries=queries, documents=documents, qrels=qrels, files=[])


def keyword_queries(heldout: pd.DataFrame, keywords: int) -> pd.DataFrame:
    """Per held-out document (its passages joined), its ``keywords`` words of highest TF-IDF among these
    documents, best first (ties by the word), as one query; columns ``doc_id, query`` (and ``label``
    where the corpus has one, so a ``max_queries`` sample spreads over topics)."""
    columns = {"text": ("text", " ".join), **({"label": ("label", "first")} if "label" in heldout else {})}
    documents = heldout.groupby("doc_id", sort=True).agg(**columns).reset_index()
    vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{3,}\b", sublinear_tf=True)
    weights = vectorizer.fit_transform(documents["text"])
    vocabulary = vectorizer.get_feature_names_out()
    queries = []
    for row in range(weights.shape[0]):
        vector = weights.getrow(row)
        ranked = sorted(zip(-vector.data, vocabulary[vector.indices]))[:keywords]
        queries.append(" ".join(word for _, word in ranked))
    return documents.assign(query=queries).drop(columns="text")


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


class LongDocumentEvaluator(Evaluator):
    """LongEmbed-style sets (``passkey``, ``needle``, ``long_retrieval``; see :class:`LongSet`) at each
    configured length: every query against the documents of its length, one relevant each. Scores per
    length (``len<L>/ndcg@1``, ``len<L>/ndcg@10``) and over all lengths (``ndcg@1``, ``ndcg@10``) by
    trec_eval; the per-item scores are one per query and length. Documents are built to a length in
    the *student's* tokens (``tokenizer``), so a truncating student sees exactly that many."""

    uses_heldout = True
    measures: ClassVar[dict[str, str]] = {"ndcg@1": "ndcg_cut_1", "ndcg@10": "ndcg_cut_10"}

    def __init__(self, spec: LongSet, by_length: dict[int, list[LongDocument]]) -> None:
        super().__init__(spec)
        self.by_length = by_length

    @classmethod
    def load(cls, spec, heldout, seed, text_type, tokenizer=None):
        if tokenizer is None:
            raise ValueError("long-document sets are built in a student's tokens: pass its tokenizer")
        if heldout is None or not len(heldout):
            raise DataError(f"eval set {spec.name}: needs a held-out corpus (filler text)")
        rng = random.Random(f"{seed}/{spec.name}")
        if spec.type == "long_retrieval":
            held = set(heldout.loc[heldout["source"] == "bbc", "doc_id"].astype(str))
            articles = [a for a in bbc_articles() if a.doc_id in held and a.title]
            if len(articles) < spec.documents + 10:
                where = f" in the {spec.heldout_half} half" if spec.heldout_half else ""
                raise DataError(
                    f"eval set {spec.name}: {spec.documents} documents need at least {spec.documents + 10} held-out "
                    f"BBC articles (targets plus distractor text), found {len(articles)}{where}: lower documents or "
                    "add bbc articles (corpus.max_texts, corpus.heldout_fraction)")
            rng.shuffle(articles)
            targets = [(" ".join(a.body.split()), a.title) for a in articles[: spec.documents]]
            filler = filler_sentences([a.body for a in articles[spec.documents:]])
        else:
            make = pass_keys if spec.type == "passkey" else needles
            targets = make(spec.documents, rng)
            filler = filler_sentences(heldout["text"].tolist())
        count = TokenCounter(tokenizer)
        return cls(spec, {n: documents_at_length(targets, filler, n, count, seed) for n in spec.lengths})

    def texts(self):
        return [t for docs in self.by_length.values() for d in docs for t in (d.query, d.text)]

    def __call__(self, encoder, reference=None, to_reference_space=None):
        scores: dict[str, float] = {}
        per_item: dict[str, list[np.ndarray]] = {name: [] for name in self.measures}
        for length, docs in self.by_length.items():
            queries = encoder.encode([d.query for d in docs], "query", desc=f"{encoder.name} {self.name}@{length} queries")
            documents = encoder.encode([d.text for d in docs], "passage",
                                       desc=f"{encoder.name} {self.name}@{length} documents")
            qrels = {str(q): {str(q): 1} for q in range(len(docs))}
            _, judged = judged_ranking(queries, documents, qrels, self.measures, depth=10)
            for name, values in judged.items():
                per_item[name].append(values)
                scores[f"len{length}/{name}"] = float(values.mean() * 100)
        items = {name: np.concatenate(values) for name, values in per_item.items()}
        items["primary"] = items[self.primary_metric]
        scores.update({name: float(values.mean() * 100) for name, values in items.items() if name in self.measures})
        return SetResult(scores, items)

    @staticmethod
    def primary_on(items, index):
        return float(items["primary"][index].mean() * 100)


class FidelityEvaluator(Evaluator):
    """How closely a model's pairwise similarities of held-out texts follow the teacher's (Spearman
    ×100, any dimensions), and the mean cosine to the teacher where the model shares its space."""

    uses_heldout = True

    def __init__(self, spec: FidelitySet, texts: list[str], text_type: str) -> None:
        super().__init__(spec)
        self._texts, self.text_type = texts, text_type

    @classmethod
    def load(cls, spec, heldout, seed, text_type):
        frame = spread_sample(heldout, spec.max_texts, seed, f"eval/{spec.name}") if heldout is not None else heldout
        if frame is None or len(frame) < 2:
            raise DataError(
                f"eval set {spec.name}: needs at least 2 held-out texts, the corpus has "
                f"{0 if frame is None else len(frame)}; raise corpus.heldout_fraction or remove the fidelity set"
            )
        return cls(spec, frame["text"].tolist(), text_type)

    def texts(self):
        return self._texts

    def __call__(self, encoder, reference=None, to_reference_space=None):
        if reference is None or reference is encoder:
            return SetResult({}, {})
        model_x = encoder.encode(self._texts, self.text_type, desc=f"{encoder.name} {self.name}")
        teacher_x = reference.encode(self._texts, self.text_type, desc=f"{reference.name} {self.name}")
        scores = {"sim_spearman": metrics.similarity_spearman(model_x, teacher_x)}
        mapped = to_reference_space(teacher_x) if to_reference_space else None
        if mapped is not None and mapped.shape[1] == model_x.shape[1]:
            scores["cosine"] = float(metrics.row_cosines(model_x, mapped).mean())
        return SetResult(scores, {})

    @staticmethod
    def primary_on(items, index):
        raise ValueError("fidelity is reported beside the mean score, never bootstrapped as a primary metric")


EVALUATORS: dict[str, type[Evaluator]] = {
    "sts": StsEvaluator,
    "retrieval": RetrievalEvaluator,
    "title_retrieval": TitleRetrievalEvaluator,
    "classification": ClassificationEvaluator,
    "clustering": ClusteringEvaluator,
    "fidelity": FidelityEvaluator,
    "passkey": LongDocumentEvaluator,
    "needle": LongDocumentEvaluator,
    "long_retrieval": LongDocumentEvaluator,
}


def heldout_documents(spec: EvalSet, heldout: pd.DataFrame | None, seed: int) -> pd.DataFrame | None:
    """The held-out corpus rows a set may read: those of its ``heldout_half``, or all of them."""
    half = getattr(spec, "heldout_half", None)
    if heldout is None or half is None:
        return heldout
    return heldout[heldout["doc_id"].astype(str).map(lambda d: heldout_half(seed, d)) == half]


def load_evaluators(specs: list[EvalSet], heldout: pd.DataFrame, seed: int, text_type: str,
                    tokenizer=None) -> list[Evaluator]:
    """Load every configured set before any model runs, so bad input fails fast. ``tokenizer`` (the
    student's) measures the long-document sets' lengths."""
    return [EVALUATORS[spec.type].load(spec, heldout_documents(spec, heldout, seed), seed, text_type,
                                       **({"tokenizer": tokenizer} if isinstance(spec, LongSet) else {}))
            for spec in specs]


def file_evaluators(specs: list[EvalSet], seed: int, text_type: str) -> list[Evaluator]:
    """The sets read from files (not from the held-out corpus): what decontamination must remove."""
    loaded = []
    for spec in specs:
        evaluator = EVALUATORS[spec.type]
        if evaluator.uses_heldout and getattr(spec, "path", None) is None:
            continue
        loaded.append(evaluator.load(spec, None, seed, text_type))
    return loaded


def score_model(
    encoder: Encoder,
    evaluators: list[Evaluator],
    reference: Encoder | None = None,
    to_reference_space: ToReferenceSpace | None = None,
) -> tuple[dict[str, float], Items]:
    """Scores ``<set>/<metric>`` plus ``mean_score`` (mean of the quality sets' primary metrics,
    the same metrics for every model), and per-item arrays keyed ``<set>/<field>``."""
    scores: dict[str, float] = {}
    items: Items = {}
    for evaluator in evaluators:
        result = evaluator(encoder, reference, to_reference_space)
        scores.update({f"{evaluator.name}/{k}": v for k, v in result.scores.items()})
        items.update({f"{evaluator.name}/{k}": v for k, v in result.items.items()})
    primaries = [scores[f"{e.name}/{e.primary_metric}"] for e in evaluators if is_quality_set(e.spec)]
    if primaries:
        scores["mean_score"] = float(np.mean(primaries))
    return scores, items


def set_items(items: Items, name: str) -> Items:
    """The per-item arrays of one set, keyed by field."""
    prefix = f"{name}/"
    return {k[len(prefix):]: v for k, v in items.items() if k.startswith(prefix)}


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def eval_spec(evaluators: list[Evaluator], heldout_doc_ids: list[str], seed: int) -> str:
    """A hash of what an evaluation measured: set configs, data file contents, held-out documents."""
    spec = {
        "sets": [e.spec.model_dump(mode="json") for e in evaluators],
        "files": {str(p): file_sha256(p) for e in evaluators for p in e.data_files()},
        "heldout_documents": sorted(map(str, heldout_doc_ids)),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    """BEIR ``corpus.jsonl`` / ``queries.jsonl`` rows: a unique ``_id``, string ``text``, and a string
    ``title`` where there is one (``""`` for none)."""
    if not path.is_file():
        raise DataError(f"retrieval file {path} does not exist")
    check_utf8(path)
    rows = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: not valid JSON: {err}") from err
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path}:{line_no}: missing field(s) {missing}")
            for key, expected in (("text", "a string"), ("title", 'a string ("" for no title)')):
                if key in row and not isinstance(row[key], str):
                    raise DataError(f"{path}:{line_no}: field {key!r} is {row[key]!r}, expected {expected}")
            doc_id = row["_id"]
            if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
                raise DataError(f"{path}:{line_no}: field '_id' is {doc_id!r}, expected a string")
            if str(doc_id) in first_line:
                raise DataError(f"{path}:{line_no}: _id {str(doc_id)!r} repeats line {first_line[str(doc_id)]}; "
                                "ids must be unique")
            first_line[str(doc_id)] = line_no
            rows.append(row)
    return rows


def _read_qrels(path: Path, query_row: dict[str, int], doc_row: dict[str, int]) -> dict[int, dict[int, int]]:
    """qrels/<split>.tsv (header query-id, corpus-id, score) → query row → document row → relevance."""
    if not path.is_file():
        raise DataError(f"qrels file {path} does not exist")
    check_utf8(path)
    judged: dict[int, dict[int, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise DataError(f"{path}: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header}")
        for line_no, row in enumerate(reader, start=2):
            if len(row) < 3:
                raise DataError(f"{path}:{line_no}: expected 3 tab-separated fields, got {len(row)}")
            query_id, doc_id, score = row[0], row[1], row[2]
            if query_id not in query_row:
                raise DataError(f"{path}:{line_no}: query-id {query_id!r} is not in queries.jsonl")
            if doc_id not in doc_row:
                raise DataError(f"{path}:{line_no}: corpus-id {doc_id!r} is not in corpus.jsonl")
            try:
                relevance = int(score)
            except ValueError as err:
                raise DataError(f"{path}:{line_no}: score {score!r} is not an integer") from err
            if relevance < 0:
                raise DataError(f"{path}:{line_no}: score {relevance} is negative; expected a relevance grade >= 0")
            judged.setdefault(query_row[query_id], {})[doc_row[doc_id]] = relevance
    return judged


def primary_sets(specs: list[EvalSet], primary_metric: str):
    """The sets behind ``primary_metric`` with their resample functions, for :mod:`distill.gate`:
    every quality set for ``mean_score``, else the one named set."""
    chosen = [s for s in specs if is_quality_set(s) and primary_metric in ("mean_score", f"{s.name}/{s.primary_metric}")]
    return [(spec.name, EVALUATORS[spec.type].primary_on) for spec in chosen]


def role_items(items: Items, role: str, specs: list[EvalSet]) -> dict[str, Items]:
    """Per-item arrays of one model (flat keys ``<role>/<set>/<field>``), grouped by set."""
    flat = {k[len(role) + 1:]: v for k, v in items.items() if k.startswith(f"{role}/")}
    return {spec.name: set_items(flat, spec.name) for spec in specs}


PER_ITEM_FILE = "per_item.npz"


def load_per_item(path: str | Path) -> Items:
    """Per-item scores written by the evaluate step (flat keys ``<role>/<set>/<field>``)."""
    def read(path: Path) -> Items:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}

    return read_artifact(path, read, "evaluate")
