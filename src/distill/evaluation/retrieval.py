"""Retrieval sets: BEIR folders (corpus, queries, qrels) and held-out article retrieval (each
article's headline or top TF-IDF keywords as the query for its passages); nDCG@10, MRR@10 and recall@100
by ``pytrec_eval``, per query, and BM25 as the lexical reference."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import pytrec_eval
from pydantic import Field

from distill.errors import DataError
from distill.evaluation import metrics
from distill.evaluation.base import Evaluator, HeldoutSet, Items, SetResult, SetSpec
from distill.readers import (
    _read_jsonl,
    _read_qrels,
)
from distill.sampling import spread_sample


class RetrievalSet(SetSpec):
    """A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv; trec_eval nDCG@10."""

    primary_metric: ClassVar[str] = "ndcg@10"
    type: Literal["retrieval"]
    path: str
    split: str = "test"


class TitleRetrievalSet(HeldoutSet):
    """Retrieval on held-out documents: each document gives one query, its passages are the relevant
    ones, every held-out passage of the set's half is a candidate. ``queries``: ``titles`` (the BBC
    headline) or ``keywords`` (the document's ``keywords`` highest TF-IDF words among the set's
    documents: a query kind no training query mirrors, so a gain that is only headline-shaped shows).
    Hundreds of queries from text no model trained on, so intervals are tight enough to tell a gain
    from noise."""

    primary_metric: ClassVar[str] = "ndcg@10"
    type: Literal["title_retrieval"]
    queries: Literal["titles", "keywords"] = "titles"
    keywords: int = Field(default=4, ge=1)
    max_queries: int | None = Field(default=None, gt=1)


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

    spec_class = RetrievalSet
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

    spec_class = TitleRetrievalSet
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
    from sklearn.feature_extraction.text import (
        TfidfVectorizer,  # scikit-learn loads when a set is built, not when configs validate
    )

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
