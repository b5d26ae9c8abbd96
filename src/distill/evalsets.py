"""Loading evaluation sets, each checked up front: a missing or malformed file is an error, never a skip."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from distill.config import FidelitySet, LabelledSet, RetrievalSet, StsSet
from distill.prepare import DataError, check_utf8, load_table, read_stsb_pairs, seeded_fraction


@dataclass(frozen=True)
class StsData:
    first: list[str]
    second: list[str]
    scores: list[float]


@dataclass(frozen=True)
class RetrievalData:
    queries: list[str]
    documents: list[str]
    qrels: list[dict[int, int]]  # per query row: document row → relevance


@dataclass(frozen=True)
class LabelledData:
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]


def load_sts(spec: StsSet) -> StsData:
    pairs = read_stsb_pairs(Path(spec.path))
    return StsData([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs])


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise DataError(f"retrieval file {path} does not exist")
    check_utf8(path)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: not valid JSON: {err}") from err
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path}:{line_no}: missing field(s) {missing}")
            rows.append(row)
    return rows


def load_retrieval(spec: RetrievalSet) -> RetrievalData:
    """A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (header query-id, corpus-id, score)."""
    folder = Path(spec.path)
    if not folder.is_dir():
        raise DataError(f"eval set {spec.name}: retrieval folder {folder} does not exist")
    corpus = _read_jsonl(folder / "corpus.jsonl", ("_id", "text"))
    queries = _read_jsonl(folder / "queries.jsonl", ("_id", "text"))
    doc_row = {str(d["_id"]): i for i, d in enumerate(corpus)}
    query_row = {str(q["_id"]): i for i, q in enumerate(queries)}
    qrels_path = folder / "qrels" / f"{spec.split}.tsv"
    if not qrels_path.is_file():
        raise DataError(f"eval set {spec.name}: qrels file {qrels_path} does not exist")
    judged: dict[int, dict[int, int]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise DataError(f"{qrels_path}: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header}")
        for line_no, row in enumerate(reader, start=2):
            if len(row) < 3:
                raise DataError(f"{qrels_path}:{line_no}: expected 3 tab-separated fields, got {len(row)}")
            query_id, doc_id, score = row[0], row[1], row[2]
            if query_id not in query_row:
                raise DataError(f"{qrels_path}:{line_no}: query-id {query_id!r} is not in queries.jsonl")
            if doc_id not in doc_row:
                raise DataError(f"{qrels_path}:{line_no}: corpus-id {doc_id!r} is not in corpus.jsonl")
            try:
                relevance = int(score)
            except ValueError as err:
                raise DataError(f"{qrels_path}:{line_no}: score {score!r} is not an integer") from err
            judged.setdefault(query_row[query_id], {})[doc_row[doc_id]] = relevance
    query_rows = sorted(judged)
    documents = [f"{d.get('title', '')} {d['text']}".strip() for d in corpus]
    return RetrievalData(
        queries=[str(queries[q]["text"]) for q in query_rows],
        documents=documents,
        qrels=[judged[q] for q in query_rows],
    )


def _split_by_document(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    in_train = frame["doc_id"].map(lambda doc: seeded_fraction(seed, "probe", doc) < 0.5).astype(bool)
    return frame[in_train], frame[~in_train]


def load_labelled(spec: LabelledSet, heldout: pd.DataFrame, seed: int) -> LabelledData:
    """Labelled texts, split into probe-train / test halves by document (never by text)."""
    if spec.path is None:
        frame = heldout[heldout["label"].notna()].drop_duplicates("doc_id")[["text", "label", "doc_id"]]
        if frame.empty:
            raise DataError(
                f"eval set {spec.name}: no path given and the held-out corpus has no labelled documents; "
                "set eval.sets[].path to a file with text and label columns"
            )
    else:
        path = Path(spec.path)
        if not path.is_file():
            raise DataError(f"eval set {spec.name}: file {path} does not exist")
        texts = load_table(path, spec.text_column)
        labels = load_table(path, spec.label_column)
        frame = pd.DataFrame({"text": texts, "label": [str(x) for x in labels]})
        frame["doc_id"] = [str(i) for i in range(len(frame))]
    if spec.max_texts:
        frame = frame.head(spec.max_texts)
    if frame["label"].nunique() < 2:
        raise DataError(f"eval set {spec.name}: needs at least 2 distinct labels, found {frame['label'].nunique()}")
    train, test = _split_by_document(frame, seed)
    if train["label"].nunique() < 2 or test.empty:
        raise DataError(
            f"eval set {spec.name}: too few documents ({len(frame)}) to split into a probe-train half with "
            "at least 2 labels and a test half; use more held-out documents or a labelled file"
        )
    return LabelledData(
        train["text"].tolist(), train["label"].tolist(), test["text"].tolist(), test["label"].tolist()
    )


def fidelity_texts(spec: FidelitySet, heldout: pd.DataFrame) -> list[str]:
    texts = heldout["text"].head(spec.max_texts).tolist()
    if len(texts) < 2:
        raise DataError(f"eval set {spec.name}: needs at least 2 held-out texts, the corpus has {len(texts)}")
    return texts
