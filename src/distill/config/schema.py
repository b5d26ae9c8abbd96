"""The root :class:`Params` and its sections (paths, teacher, student, mining, training, export,
cluster, tracking, registry); ``corpus`` and ``eval`` live in their own modules.

Every step, the DVC stages and the Prefect flow read their settings through
:func:`distill.config.loader.load_params`. One file because the sections validate against each other
in :class:`Params` (prompts, dimensions, metric names); it runs a little past 400 lines for that reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from distill.config.base import TEXT_TYPES, Float, _Section
from distill.config.corpus import CorpusConfig
from distill.config.eval_sets import EvalConfig
from distill.training.objectives import objectives


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
    def _check_overlap(self) -> ChunkingConfig:
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
    def _check_init(self) -> StudentConfig:
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


Scorer = Annotated[BiEncoderScorer | CrossEncoderScorer | CausalLMScorer, Field(discriminator="type")]


class MiningConfig(_Section):
    """Candidates for each training query from the teacher's ranking of the training passages."""

    # The positive is the teacher's best passage among the query's known positives (its document's
    # passages, its cloze context), or its top-ranked passage for a user query.
    # One: beside the in-batch KL, which reads every passage of the batch, more mined negatives took no
    # more of the teacher's lead on dev and cost 40% more student compute (bench/RESULTS.md).
    negatives: int = Field(default=1, gt=0)
    # Hard negatives are drawn from teacher ranks [rank_start, rank_end) (0 = the best)...
    rank_start: int = Field(default=2, ge=0)
    rank_end: int = Field(default=40, gt=1)
    # ...skipping passages of the query's own document and any scored within margin of the positive
    # by the bi-encoder teacher (likely unlabelled positives).
    margin: Float = Field(default=0.05, ge=0)
    scorer: Scorer = Field(default_factory=lambda: BiEncoderScorer(type="bi_encoder"))

    @model_validator(mode="after")
    def _check_window(self) -> MiningConfig:
        if self.rank_end - self.rank_start < self.negatives:
            raise ValueError(
                f"mining.rank_end - mining.rank_start ({self.rank_end} - {self.rank_start}) must be at least "
                f"mining.negatives ({self.negatives})"
            )
        return self


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
    def _check_epochs(self) -> LongTrainConfig:
        if not self.positions_epochs and not self.full_epochs:
            raise ValueError("train.long: positions_epochs or full_epochs must be above 0")
        return self


class TrainConfig(_Section):
    # Weighted objectives, by name: OBJECTIVES in distill.training.objectives lists each with what it
    # learns from (texts with teacher embeddings, or mined query candidates with teacher scores). Weight 0 = off.
    # The default is the best bench/scaling.py measured on the dev half of the held-out articles (RESULTS.md).
    objectives: dict[str, Float] = Field(default_factory=lambda: {"margin_mse": 1.0, "in_batch_kl": 1.0})
    # asymmetric: only queries are encoded by the student, documents stay teacher-encoded ("LEAF:
    # Knowledge Distillation of Text Embedding Models with Teacher-Aligned Representations", MongoDB,
    # 2025): the student learns the teacher's space on query and
    # passage texts (cosine/mse objectives), and evaluation adds a student-queries × teacher-documents row.
    mode: Literal["symmetric", "asymmetric"] = "symmetric"
    # Scores are compared as similarity / temperature: the student's cosine and the scorer's scores.
    student_temperature: Float = Field(default=0.05, gt=0)
    teacher_temperature: Float = Field(default=0.05, gt=0)
    # MatryoshkaLoss around the candidate objectives at these dims (plus full); evaluated at each.
    matryoshka_dims: list[int] = Field(default_factory=lambda: [64, 128, 256])
    epochs: Float = Field(default=1.0, gt=0)
    max_steps: int = -1
    # Training's own seed (new layers' init, dropout, batch order); null = the top-level seed, which also
    # draws the held-out split and the evaluation. Vary this one to see one recipe's run-to-run spread.
    seed: int | None = None
    # DDP processes on this machine (torchrun --nproc_per_node): gloo on CPU, nccl with one GPU each;
    # batch sizes are per process, in-batch objectives see the global batch.
    processes: int = Field(default=1, gt=0)
    batch_size: int = Field(default=64, gt=0)
    # Queries per batch of the candidate objectives: each brings 1 + mining.negatives passages.
    # 32 with one negative: the same 64 in-batch passages per query as 16 with three.
    candidate_batch_size: int = Field(default=32, gt=0)
    learning_rate: Float = Field(default=2e-5, gt=0)
    warmup_ratio: Float = Field(default=0.1, ge=0, lt=1)
    weight_decay: Float = Field(default=0.01, ge=0)
    eval_texts: int = Field(default=256, gt=0)
    eval_steps: int = Field(default=10, gt=0)
    log_steps: int = Field(default=5, gt=0)
    long: LongTrainConfig | None = None

    @model_validator(mode="after")
    def _check_objectives(self) -> TrainConfig:
        known = objectives()
        unknown = sorted(set(self.objectives) - set(known))
        if unknown:
            raise ValueError(f"train.objectives: unknown {unknown}; expected names from {list(known)}")
        if any(w < 0 for w in self.objectives.values()):
            raise ValueError("train.objectives: weights must be >= 0")
        if not any(w > 0 for w in self.objectives.values()):
            raise ValueError("train.objectives: at least one objective needs a weight above 0")
        if self.mode == "asymmetric" and not self.uses(objectives(teacher_space=True)):
            raise ValueError(f"train.mode asymmetric needs a teacher-space objective: give one of "
                             f"{list(objectives(teacher_space=True))} a weight")
        if any(d <= 0 for d in self.matryoshka_dims):
            raise ValueError("train.matryoshka_dims must be positive")
        if self.matryoshka_dims and not self.uses(objectives("candidates")):
            raise ValueError(
                f"train.matryoshka_dims wraps the candidate objectives {list(objectives('candidates'))}: give one "
                "a weight (MatryoshkaLoss L2-normalises truncated dims, which suits score losses, not embedding MSE)"
            )
        return self

    def weight(self, objective: str) -> float:
        return float(self.objectives.get(objective, 0.0))

    def uses(self, objectives: tuple[str, ...]) -> bool:
        return any(self.weight(o) > 0 for o in objectives)


class ClusterConfig(_Section):
    """Where the label step encodes: in this process (the default), on a running Dask scheduler
    (``address``), or on a ``LocalCluster`` of ``n_workers`` started for the step."""

    address: str | None = None  # e.g. tcp://scheduler:8786
    n_workers: int = Field(default=0, ge=0)
    threads_per_worker: int = Field(default=1, gt=0)
    connect_timeout: Float = Field(default=30.0, gt=0)  # seconds to wait for the scheduler at address

    @model_validator(mode="after")
    def _one_way(self) -> ClusterConfig:
        if self.address is not None and self.n_workers:
            raise ValueError(
                "cluster: set address (join a running scheduler) or n_workers (start a LocalCluster), not both"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.address is not None or self.n_workers > 0

    @property
    def local_cluster_kwargs(self) -> dict[str, Any]:
        """``distributed.LocalCluster`` arguments for ``n_workers`` (worker processes, no dashboard): the
        label step's own cluster and prefect-dask's ``cluster_kwargs`` start the same one."""
        return {"n_workers": self.n_workers, "threads_per_worker": self.threads_per_worker, "processes": True,
                "dashboard_address": None}


ExportFormat = Literal["onnx", "onnx_int8", "openvino_int8"]


class ExportConfig(_Section):
    """Faster ways to serve the distilled student, each evaluated beside it (:mod:`distill.runtimes`):
    ``onnx`` (fp32 ONNX Runtime), ``onnx_int8`` (dynamic int8 ONNX Runtime) and ``openvino_int8``
    (static int8 OpenVINO, activation ranges calibrated on ``calibration_texts`` training texts)."""

    formats: list[ExportFormat] = Field(default_factory=lambda: ["onnx", "onnx_int8", "openvino_int8"])
    calibration_texts: int = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _unique_formats(self) -> ExportConfig:
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

    @property
    def train_seed(self) -> int:
        return self.seed if self.train.seed is None else self.train.seed

    @model_validator(mode="after")
    def _check_prompts(self) -> Params:
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
    def _check_long(self) -> Params:
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
    def _check_primary_metric(self) -> Params:
        choices = ["mean_score"] + [f"{s.name}/{s.primary_metric}" for s in self.eval.sets if s.in_mean_score]
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
