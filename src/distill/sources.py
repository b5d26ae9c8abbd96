"""Corpus sources read into records: BBC articles, text files, folders, hub datasets, STS-B sentences."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distill.config.corpus import (
    BbcSource,
    FileSource,
    FolderSource,
    HubQueries,
    HubSource,
    StsbSource,
)
from distill.errors import DataError
from distill.readers import (
    bbc_articles,
    column_values,
    load_table,
    read_stsb_pairs,
    read_utf8,
)
from distill.text import split_passages, split_sentences


@dataclass(frozen=True)
class Record:
    text: str
    doc_id: str
    source: str
    label: str | None = None
    title: str | None = None  # the document's title (BBC headline), never a training text itself
    train_only: bool = False  # from a corpus.sources entry with train_only
    origin: int = 0  # the index of its corpus.sources entry


def _units(text: str, unit: str, passage_chars: int) -> list[str]:
    if unit == "sentence":
        return split_sentences(text)
    if unit == "passage":
        return split_passages(text, passage_chars)
    return [text]


# -- reading sources ---------------------------------------------------------------------------
def read_bbc(source: BbcSource, passage_chars: int) -> Iterator[Record]:
    for article in bbc_articles(source.max_documents):
        for text in _units(article.body, source.unit, passage_chars)[: source.max_units_per_document]:
            yield Record(text, article.doc_id, "bbc", article.topic, article.title or None)


def read_file(source: FileSource, passage_chars: int) -> Iterator[Record]:
    path = Path(source.path)
    if not path.is_file():
        raise DataError(f"corpus source file {path} does not exist")
    if path.suffix.lower() == ".txt":
        for row, line in enumerate(read_utf8(path).splitlines()):
            for text in _units(line, source.unit, passage_chars):
                yield Record(text, f"{path}#{row}", str(path))
        return
    values = load_table(path, source.column)
    for row, value in column_values(values, source.column, str(path)):
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
        for text in _units(read_utf8(path), source.unit, passage_chars):
            yield Record(text, str(path.relative_to(folder)), str(folder))


def hub_column(source: HubSource | HubQueries, limit: int | None = None) -> list:
    """The values of ``source.column`` (the first ``limit``) of a Hub dataset split."""
    import datasets

    try:
        table = datasets.load_dataset(source.name, source.config, split=source.split, revision=source.revision)
    except Exception as err:  # noqa: BLE001 - datasets raises many types (hub, network, offline, format)
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise DataError(
            f"hub dataset {source.name!r} (config {source.config!r}, split {source.split!r}, revision "
            f"{source.revision!r}) cannot be loaded: {err.__class__.__name__}: {first_line}. Check the name, config and "
            "split on the hub; with HF_HUB_OFFLINE=1 (the Makefile's default) only datasets already in the local "
            "Hugging Face cache load"
        ) from err
    if source.column not in table.column_names:
        raise DataError(f"hub dataset {source.name}: missing column {source.column!r}; it has {table.column_names}")
    return table[source.column][:limit] if limit else table[source.column]


def read_hub(source: HubSource, passage_chars: int) -> Iterator[Record]:
    for row, value in column_values(hub_column(source), source.column, f"hub dataset {source.name}"):
        for text in _units(value, source.unit, passage_chars):
            yield Record(text, f"{source.name}#{row}", source.name)


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
