"""Step 1, prepare: read corpus sources, clean, cap and split train / held-out by document.

Output: ``<paths.prepared>/corpus.parquet`` (columns ``text, doc_id, source, label, title, split``),
``queries.parquet`` (query-shaped training data from training documents: titles, inverse-cloze
sentences, user queries; see :func:`build_queries`) and ``summary.json``. Held-out documents feed
fidelity, headline retrieval and, where they carry labels, the classification / clustering
evaluations; no held-out text or title is trained on.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from distill.atomic import atomic_dir, write_json
from distill.config.corpus import (
    CorpusConfig,
    FileQueries,
    HubQueries,
    InverseClozeQueries,
    TitleQueries,
)
from distill.config.schema import Params
from distill.errors import DataError
from distill.evaluation.registry import file_evaluators
from distill.longdocs import build_long_documents
from distill.readers import (
    CORPUS_FILE,
    LONG_DOCUMENTS_FILE,
    QUERIES_FILE,
    SUMMARY_FILE,
    column_values,
    corpus_sha256,
    load_table,
    read_utf8,
)
from distill.sampling import seeded_fraction
from distill.sources import Record, hub_column, read_source
from distill.student import base_student
from distill.text import collapse_whitespace, match_key, split_sentences

log = logging.getLogger(__name__)


# -- cleaning and splitting --------------------------------------------------------------------
def clean(records: list[Record], config: CorpusConfig) -> list[Record]:
    """Normalise whitespace, drop short and duplicate texts, cap long ones."""
    seen: set[str] = set()
    out = []
    for record in records:
        text = collapse_whitespace(record.text)
        if len(text) < config.min_chars:
            continue
        text = text[: config.max_chars]
        if text in seen:
            continue
        seen.add(text)
        out.append(dataclasses.replace(record, text=text))
    return out



def decontaminate(records: list[Record], excluded: set[str]) -> tuple[list[Record], int]:
    """Drop every record whose text matches an evaluation text; returns the kept records and the count."""
    kept = [r for r in records if match_key(r.text) not in excluded]
    return kept, len(records) - len(kept)


def build_corpus(config: CorpusConfig, seed: int,
                 excluded: set[str] = frozenset()) -> tuple[pd.DataFrame, int, list[int]]:
    """The cleaned, decontaminated, capped corpus split by document; how many texts were dropped
    because they occur in an evaluation set (``excluded``: their :func:`match_key` forms); and how
    many texts each ``corpus.sources`` entry gave the corpus."""
    records: list[Record] = []
    # Sources that only add training text come last, so a text they share with another source stays
    # that source's (clean keeps the first of duplicates).
    for origin, source in sorted(enumerate(config.sources), key=lambda pair: pair[1].train_only):
        records.extend(dataclasses.replace(r, train_only=source.train_only, origin=origin)
                       for r in read_source(source, config.passage_chars))
    records, dropped = decontaminate(clean(records, config), excluded)
    if not records:
        raise DataError(
            "corpus is empty after cleaning and decontamination: no text of at least "
            f"corpus.min_chars={config.min_chars} characters outside the evaluation sets in corpus.sources"
        )
    kept = {r.origin for r in records}
    if empty := [i for i in range(len(config.sources)) if i not in kept]:
        raise DataError(
            "; ".join(f"corpus.sources[{i}] ({config.sources[i].type}"
                      + (f" {config.sources[i].path}" if getattr(config.sources[i], "path", None) else "") + ")"
                      for i in empty)
            + f" yields no text: none of at least corpus.min_chars={config.min_chars} characters that is not a "
            "duplicate of an earlier source's or an evaluation text. Fix or remove it"
        )
    frame = pd.DataFrame([r.__dict__ for r in records])
    held_out = pd.Series([seeded_fraction(seed, "heldout", d) < config.heldout_fraction for d in frame["doc_id"]],
                         index=frame.index)
    extra = frame[frame["train_only"] & ~held_out]
    frame = frame[~frame["train_only"]]
    frame = frame.assign(order=[seeded_fraction(seed, "cap", d) for d in frame["doc_id"]])
    if config.max_texts and len(frame) > config.max_texts:
        # Keep whole documents, in a seeded order, until the cap is reached.
        frame = frame.sort_values(["order", "doc_id"], kind="stable").head(config.max_texts)
    frame = pd.concat([frame.drop(columns="order"), extra])
    frame["split"] = ["heldout" if out else "train" for out in held_out[frame.index]]
    if not (frame["split"] == "train").any():
        raise DataError("corpus has no training text after the held-out split: lower corpus.heldout_fraction")
    if not (frame["split"] == "heldout").any():
        # Evaluation always needs held-out text: throughput, fidelity and the held-out sets are measured on it.
        raise DataError(
            f"corpus.heldout_fraction {config.heldout_fraction:g} held out none of the corpus's "
            f"{frame['doc_id'].nunique()} documents; evaluation needs held-out text: raise corpus.heldout_fraction"
        )
    per_source = frame["origin"].value_counts()
    source_texts = [int(per_source.get(i, 0)) for i in range(len(config.sources))]
    return frame.drop(columns=["train_only", "origin"]).sort_index().reset_index(drop=True), dropped, source_texts


# -- query-shaped training data ----------------------------------------------------------------
QUERY_COLUMNS = ["query", "kind", "doc_id", "positive"]


def _title_queries(train: pd.DataFrame) -> list[dict]:
    titled = train[train["title"].notna()].drop_duplicates("doc_id")
    return [{"query": t, "kind": "title", "doc_id": d, "positive": None} for t, d in zip(titled["title"], titled["doc_id"])]


def _cloze_queries(train: pd.DataFrame, source: InverseClozeQueries, seed: int) -> list[dict]:
    """One sentence out of a seeded choice of each document's passages; the rest is its positive."""
    out = []
    for doc_id, passages in train.groupby("doc_id", sort=True)["text"]:
        ranked = sorted(passages, key=lambda t: seeded_fraction(seed, "cloze/passage", t))
        chosen = [t for t in ranked if len(split_sentences(t)) >= source.min_sentences][: source.per_document]
        for passage in chosen:
            sentences = split_sentences(passage)
            pick = int(seeded_fraction(seed, "cloze/sentence", passage) * len(sentences))
            rest = " ".join(sentences[:pick] + sentences[pick + 1 :])
            out.append({"query": sentences[pick], "kind": "inverse_cloze", "doc_id": doc_id, "positive": rest})
    return out


def _user_queries(source: FileQueries | HubQueries) -> list[dict]:
    if isinstance(source, FileQueries):
        path = Path(source.path)
        if not path.is_file():
            raise DataError(f"corpus.queries file {path} does not exist")
        if path.suffix.lower() == ".txt":
            values = [(row, line) for row, line in enumerate(read_utf8(path).splitlines())]
        else:
            values = list(column_values(load_table(path, source.column), source.column, str(path)))
        origin = str(path)
    else:
        values = list(column_values(hub_column(source, source.max_queries), source.column, f"hub dataset {source.name}"))
        origin = source.name
    queries = [{"query": text, "kind": "user", "doc_id": None, "positive": None} for _, text in values]
    if not any(q["query"].strip() for q in queries):
        raise DataError(f"corpus.queries source {origin} has no query text")
    return queries


def build_queries(corpus: pd.DataFrame, config: CorpusConfig, seed: int,
                  excluded: set[str] = frozenset()) -> tuple[pd.DataFrame, int]:
    """Training queries from ``config.queries``, from training documents only (held-out titles are
    evaluation queries); whitespace-normalised, deduplicated, and dropped (with their count) when the
    query or its positive matches an evaluation text. Columns: ``query, kind, doc_id, positive``."""
    train = corpus[corpus["split"] == "train"]
    rows: list[dict] = []
    for source in config.queries:
        if isinstance(source, TitleQueries):
            rows.extend(_title_queries(train))
        elif isinstance(source, InverseClozeQueries):
            rows.extend(_cloze_queries(train, source, seed))
        else:
            rows.extend(_user_queries(source))
    seen: set[str] = set()
    kept, dropped = [], 0
    for row in rows:
        row["query"] = collapse_whitespace(str(row["query"]))
        if len(row["query"].split()) < 2 or row["query"] in seen:
            continue  # a one-word "query" ranks nothing; duplicates would weigh twice
        if match_key(row["query"]) in excluded or (row["positive"] and match_key(row["positive"]) in excluded):
            dropped += 1
            continue
        seen.add(row["query"])
        kept.append(row)
    return pd.DataFrame(kept, columns=QUERY_COLUMNS), dropped


def run(params: Params) -> Path:
    """Build the prepared corpus and write it atomically to ``paths.prepared``.

    Every text that also occurs in a configured evaluation set read from a file (``eval.sets``) or in a
    set used to choose recipes (``corpus.exclude_sets``) is dropped first; held-out-corpus sets are
    kept apart by the document split.
    """
    specs = [*params.eval.sets, *params.corpus.exclude_sets]
    evaluators = file_evaluators(specs, params.seed, params.corpus.text_type)
    excluded = {match_key(text) for evaluator in evaluators for text in evaluator.texts()}
    frame, dropped, source_texts = build_corpus(params.corpus, params.seed, excluded)
    queries, dropped_queries = build_queries(frame, params.corpus, params.seed, excluded)
    long_documents = None
    if params.corpus.long_documents is not None:
        # Lengths are counted in the tokens the student will read.
        long_documents = build_long_documents(frame, params.corpus.long_documents, base_student(params).tokenizer,
                                              params.seed, excluded)
    target = Path(params.paths.prepared)
    with atomic_dir(target) as staging:
        frame.to_parquet(staging / CORPUS_FILE, index=False)
        queries.to_parquet(staging / QUERIES_FILE, index=False)
        if long_documents is not None:
            long_documents.to_parquet(staging / LONG_DOCUMENTS_FILE, index=False)
        counts = frame.groupby("split").agg(texts=("text", "size"), documents=("doc_id", "nunique"))
        summary = {split: {k: int(v) for k, v in row.items()} for split, row in counts.to_dict("index").items()}
        summary["sources"] = [{"type": source.type, "texts": n} for source, n in zip(params.corpus.sources, source_texts)]
        summary["queries"] = {kind: int(n) for kind, n in queries["kind"].value_counts().sort_index().items()}
        summary["decontamination"] = {
            "dropped_texts": dropped,
            "dropped_queries": dropped_queries,
            "evaluation_texts": len(excluded),
            "sets": [e.name for e in evaluators],
        }
        if long_documents is not None:
            summary["long_documents"] = {"documents": len(long_documents),
                                         "mean_tokens": round(float(long_documents["tokens"].mean()), 1)}
        summary["corpus_sha256"] = corpus_sha256(frame)
        write_json(staging / SUMMARY_FILE, summary)
    log.info(
        "prepared %d texts (%s) and %d training queries %s in %s; dropped %d texts and %d queries that occur in "
        "the evaluation sets %s",
        len(frame), frame["split"].value_counts().to_dict(), len(queries), summary["queries"], target, dropped,
        dropped_queries, [e.name for e in evaluators],
    )
    return target
