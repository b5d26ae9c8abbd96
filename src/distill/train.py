"""Step 3, train: distil the teacher into the student with ``SentenceTransformerTrainer``.

The student is a pretrained small model or a layer-pruned copy of the teacher. ``train.objectives``
weighs two kinds of objective, each on its own dataset (the trainer alternates their batches):

- on corpus texts labelled with teacher embeddings: ``similarity`` (in-batch similarity matrices, the
  student keeps its own space), ``mse`` and ``cosine`` (the teacher's coordinates);
- on training queries with teacher-mined candidates and teacher scores (the label step):
  ``margin_mse``, ``kl``, ``mnrl`` and ``relative``, optionally inside ``MatryoshkaLoss``.

When an objective needs the teacher's coordinates and dimensions differ, ``student.target_space``
picks where the student learns: ``teacher`` adds a trainable Dense projection (least-squares
initialised by default) so student vectors live in the teacher's space; ``student`` reduces the
teacher labels with PCA fitted on them, as Sentence Transformers' distillation example does. In
``asymmetric`` mode the student also learns the teacher's embeddings of the training queries, since
it will encode queries against teacher-encoded documents. The student's prompts are applied in
training exactly as at evaluation and serving.

Outputs: the student in Sentence Transformers format (prompts, a model card, the corpus hash and
training document ids included) under ``paths.student``, and training curves under
``<paths.plots>/training``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd
import torch
import yaml
from datasets import Dataset, DatasetDict, Features, Sequence, Value
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer import losses
from sentence_transformers.base.sampler import DefaultBatchSampler
from sentence_transformers.util import pairwise_cos_sim
from sklearn.decomposition import PCA
from torch.utils.data import RandomSampler
from transformers import set_seed

from distill.config import CANDIDATE_OBJECTIVES, TEXT_OBJECTIVES, ChunkingConfig, Params, TrainConfig
from distill.encoding import Encoder, pack_by_tokens, teacher_encoder
from distill.errors import DataError
from distill.io import atomic_dir, write_json
from distill.lock import holder_env
from distill.losses import InBatchSimilarityLoss, QueryDocumentSimilarityLoss, RelativeSimilarityLoss, WeightedSumLoss
from distill.positions import check_extension, extend_positions, train_everything, train_only_new_positions
from distill.readers import corpus_sha256, load_candidates, load_corpus, load_long_documents, load_queries
from distill.sampling import spread_sample
from distill.student import DISTILLATION_FILE, PCA_FILE, add_projection, base_student, describe

log = logging.getLogger(__name__)

TRAIN_DOCUMENTS_FILE = "train_documents.txt"
# Labels go from the cache into the training dataset this many rows at a time.
LABEL_CHUNK = 4096
LABEL_FEATURES = Features({"text": Value("string"), "label": Sequence(Value("float32"))})


def distributed() -> bool:
    """Whether this process is one rank of several (torchrun sets WORLD_SIZE for every rank)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_ranks(params: Params) -> Path:
    """Run this step as ``torchrun --nproc_per_node train.processes -m distill train`` on the same
    params. This process keeps the pipeline lock and hands it to the ranks, its descendants."""
    with tempfile.TemporaryDirectory(prefix="distill-ddp-") as scratch:
        resolved = Path(scratch) / "params.yaml"
        resolved.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)), encoding="utf-8")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={params.train.processes}", "-m", "distill", "train", "--params", str(resolved)]
        log.info("training on %d processes: %s", params.train.processes, " ".join(command))
        env = {**os.environ, **holder_env(params.paths.lock)}
        code = subprocess.run(command, env=env).returncode
    if code != 0:
        raise DataError(f"DDP training on {params.train.processes} processes (train.processes) failed with exit code "
                        f"{code}; the ranks' errors are above")
    return Path(params.paths.student)


def text_loss(model: SentenceTransformer, config: TrainConfig) -> WeightedSumLoss:
    """The weighted text objectives on texts labelled with teacher embeddings ``(batch, teacher_dim)``."""
    parts = {
        "similarity": InBatchSimilarityLoss(model, gather_across_devices=distributed()),
        "mse": losses.EmbedDistillLoss(model, distance_metric="mse"),
        "cosine": losses.EmbedDistillLoss(model, distance_metric="cosine"),
    }
    as_columns = {"mse": lambda x: [x], "cosine": lambda x: [x]}  # one teacher embedding per text column
    return WeightedSumLoss(model, {n: (config.weight(n), parts[n]) for n in TEXT_OBJECTIVES if config.weight(n) > 0},
                           as_columns)


def candidate_loss(model: SentenceTransformer, config: TrainConfig) -> torch.nn.Module:
    """The weighted candidate objectives on ``(query, positive, negative_1…)`` with teacher scores
    ``(batch, 1 + negatives)``; student scores are cosines. Scores enter as score / temperature: KL
    takes both temperatures, MarginMSE and the rank term get the teacher's scores rescaled into the
    student's cosine units (identity for the bi-encoder teacher, whose scores are cosines too)."""
    student_t, teacher_t = config.student_temperature, config.teacher_temperature
    parts = {
        "margin_mse": losses.MarginMSELoss(model, similarity_fct=pairwise_cos_sim),
        "kl": losses.DistillKLDivLoss(model, similarity_fct=pairwise_cos_sim, student_temperature=student_t,
                                      teacher_temperature=teacher_t),
        "mnrl": losses.MultipleNegativesRankingLoss(model, scale=1 / student_t, gather_across_devices=distributed()),
        "relative": RelativeSimilarityLoss(model),
    }
    in_cosine_units = lambda scores: scores * (student_t / teacher_t)  # noqa: E731
    loss = WeightedSumLoss(
        model, {n: (config.weight(n), parts[n]) for n in CANDIDATE_OBJECTIVES if config.weight(n) > 0},
        {"margin_mse": in_cosine_units, "relative": in_cosine_units},
    )
    if config.matryoshka_dims:
        full = model.get_embedding_dimension()
        too_big = [d for d in config.matryoshka_dims if d > full]
        if too_big:
            raise DataError(f"train.matryoshka_dims {too_big} exceed the student's dimension {full}")
        dims = sorted({full, *config.matryoshka_dims}, reverse=True)
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
    return loss


def candidate_dataset(candidates: pd.DataFrame) -> Dataset:
    """Columns ``query, positive, negative_1…`` and ``label`` (teacher scores, positive first)."""
    width = len(candidates["candidates"].iloc[0])
    columns = {"query": candidates["query"].tolist(), "positive": [c[0] for c in candidates["candidates"]]}
    for i in range(1, width):
        columns[f"negative_{i}"] = [c[i] for c in candidates["candidates"]]
    columns["label"] = [np.asarray(s, dtype=np.float32).tolist() for s in candidates["scores"]]
    return Dataset.from_dict(columns)


def candidate_objective(student: SentenceTransformer, params: Params,
                        candidates: pd.DataFrame) -> tuple[Dataset, torch.nn.Module, dict[str, str]]:
    """The candidate objectives as the trainer takes them: the dataset, its loss and each column's prompt
    (the query prompt on queries, the passage prompt on candidates)."""
    dataset = candidate_dataset(candidates)
    prompts = params.student.prompts
    column_prompts = {column: prompts.get("query" if column == "query" else "passage", "")
                      for column in dataset.column_names if column != "label"}
    return dataset, candidate_loss(student, params.train), column_prompts


def batch_sampler(candidate_batch_size: int, long_lengths: list[int] | None = None, token_budget: int | None = None):
    """The trainer's batch sampler with a batch size per dataset: candidate rows carry a query and all
    its passages, so they come ``candidate_batch_size`` at a time; texts come ``batch_size`` at a time;
    long documents (of ``long_lengths`` tokens) come ``token_budget`` padded tokens at a time."""

    def make(dataset: Dataset, batch_size: int, drop_last: bool, valid_label_columns=None, generator=None, seed=0):
        if "document" in dataset.column_names:
            return TokenBudgetBatchSampler(dataset, long_lengths, token_budget, valid_label_columns=valid_label_columns,
                                           generator=generator, seed=seed)
        if "positive" in dataset.column_names:
            batch_size = candidate_batch_size
        # What the trainer's default (BatchSamplers.BATCH_SAMPLER) builds, at this dataset's size.
        return DefaultBatchSampler(RandomSampler(dataset, generator=generator), batch_size=batch_size,
                                   drop_last=drop_last, valid_label_columns=valid_label_columns,
                                   generator=generator, seed=seed)

    return make


def _check_whole_batches(config: TrainConfig, train_sets: dict[str, Dataset]) -> None:
    """In-batch objectives drop the last partial batch: a dataset smaller than one batch would train
    for zero steps and save the untouched student as if distilled."""
    if not config.uses(("similarity", "mnrl")):
        return
    for name, dataset in train_sets.items():
        size, key = ((config.candidate_batch_size, "train.candidate_batch_size") if name == "candidates"
                     else (config.batch_size, "train.batch_size"))
        if len(dataset) < size:
            raise DataError(
                f"the {name} training set has {len(dataset)} rows, fewer than one batch ({key} = {size}); the in-batch "
                "objectives drop partial batches, so it would train for zero steps. Lower "
                f"{key} or add training data"
            )


def _non_empty(prompts: dict) -> dict:
    """Prompts per dataset (and per column) without the empty ones, in the trainer's format."""
    out = {}
    for name, prompt in prompts.items():
        prompt = _non_empty(prompt) if isinstance(prompt, dict) else prompt
        if prompt:
            out[name] = prompt
    return out


def _loss_curves(log_history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = [{"step": h["step"], "loss": h["loss"]} for h in log_history if "loss" in h]
    # One eval dataset (held-out texts) named "texts": the trainer logs its loss as eval_texts_loss.
    evals = [{"step": h["step"], "eval_loss": h["eval_texts_loss"]} for h in log_history if "eval_texts_loss" in h]
    return pd.DataFrame(train, columns=["step", "loss"]), pd.DataFrame(evals, columns=["step", "eval_loss"])


class TokenBudgetBatchSampler(DefaultBatchSampler):
    """Batches of up to ``token_budget`` padded tokens: rows sorted by length are packed greedily (so a
    batch pads little and the batch count is fixed), and the batches come in a new random order each
    epoch. Long documents go a few at a time, short ones many at a time."""

    def __init__(self, dataset: Dataset, lengths: list[int], token_budget: int, valid_label_columns=None,
                 generator=None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size=1, drop_last=False, valid_label_columns=valid_label_columns,
                         generator=generator, seed=seed)
        self.batches = pack_by_tokens(lengths, token_budget)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + getattr(self, "epoch", 0))
        for batch in torch.randperm(len(self.batches), generator=generator).tolist():
            yield self.batches[batch]

    def __len__(self) -> int:
        return len(self.batches)


def long_training_targets(params: Params, teacher) -> tuple[pd.DataFrame, np.ndarray]:
    """The long training documents and their labels ``(rows, 2 * teacher_dim)``: the teacher's query
    embedding, then its (chunk-pooled) document embedding, both from the label cache."""
    frame = load_long_documents(params.paths.prepared)
    before = teacher.misses
    queries = teacher.encode(frame["query"].tolist(), "query", desc="teacher long-document queries")
    documents = teacher.encode(frame["text"].tolist(), params.corpus.text_type, desc="teacher long documents")
    if teacher.misses > before:
        raise DataError(f"{teacher.misses - before} long-document texts had no teacher label in "
                        f"{params.paths.teacher_cache}: run the label step first (python -m distill label)")
    return frame, np.hstack([queries, documents]).astype(np.float32)


def own_pooled_embeddings(student: SentenceTransformer, texts: list[str], native: int, params: Params,
                          scratch: str) -> np.ndarray:
    """The extended student's chunk-pooled embeddings of ``texts``: windows of its ``native`` length (which,
    with a table that keeps the native rows, it encodes exactly as before extension), pooled as the
    teacher's are (``teacher.chunking``'s overlap)."""
    extended = student.max_seq_length
    student.max_seq_length = native
    try:
        overlap = params.teacher.chunking.overlap if params.teacher.chunking else ChunkingConfig().overlap
        encoder = Encoder(model=student, name="student windows", cache_root=Path(scratch) / "own-pooled",
                          prompts=params.student.prompts, token_budget=params.train.long.token_budget,
                          chunking=ChunkingConfig(tokens=native, overlap=overlap))
        return encoder.encode(texts, params.corpus.text_type, desc="student's own chunk-pooled long documents")
    finally:
        student.max_seq_length = extended


def train_long(student: SentenceTransformer, params: Params, scratch: str, native: int,
               targets: tuple[pd.DataFrame, np.ndarray], short_sets: dict[str, Dataset],
               short_losses: dict[str, torch.nn.Module], short_prompts: dict, offset: int) -> list[dict]:
    """Long-context tuning (train.long) of the extended student: the new position vectors alone, then
    optionally everything on long pairs mixed with the short candidate objectives. Returns the log
    history with steps continuing from ``offset``."""
    config = params.train.long
    frame, labels = targets
    prompts = params.student.prompts
    long_prompts = {"long": {"query": prompts.get("query", ""), "document": prompts.get(params.corpus.text_type, "")}}
    bank = None
    if config.query_bank:
        # Every training document's query, prompted as the trainer prompts the query column.
        bank = ([long_prompts["long"]["query"] + q for q in frame["query"]],
                torch.from_numpy(labels[:, : labels.shape[1] // 2]))
    if config.own_weight:
        labels = np.hstack([labels, own_pooled_embeddings(student, frame["text"].tolist(), native, params, scratch)])
    dataset = Dataset.from_dict({"query": frame["query"].tolist(), "document": frame["text"].tolist(),
                                 "label": labels.tolist()})
    long_sets = {"long": dataset}
    long_losses = {"long": QueryDocumentSimilarityLoss(student, query_bank=bank, own_weight=config.own_weight)}
    # Padded width: the document plus the tokenizer's special tokens.
    lengths = [int(n) + 2 for n in frame["tokens"]]
    history: list[dict] = []
    stages = [("positions", config.positions_epochs, config.positions_learning_rate, 0.0, {}),
              ("full", config.full_epochs, params.train.learning_rate, params.train.weight_decay,
               {k: v for k, v in short_sets.items() if k == "candidates"})]
    for stage, epochs, learning_rate, weight_decay, mixed in stages:
        if not epochs:
            continue
        hook = train_only_new_positions(student, native, params.student.extend_positions.method) \
            if stage == "positions" else None
        log.info("long-context tuning (%s): %d documents, %g epochs, learning rate %g", stage, len(frame), epochs,
                 learning_rate)
        trainer = fit(student, params, scratch, {**long_sets, **mixed},
                      {**long_losses, **{k: short_losses[k] for k in mixed}},
                      {**long_prompts, **{k: short_prompts[k] for k in mixed if k in short_prompts}},
                      epochs=epochs, learning_rate=learning_rate, weight_decay=weight_decay, long_lengths=lengths)
        if hook is not None:
            hook.remove()
        train_everything(student)
        history += [{**h, "step": h["step"] + offset} for h in trainer.state.log_history if "step" in h]
        offset += trainer.state.global_step
    return history


def fit(student: SentenceTransformer, params: Params, scratch: str, train_sets: dict[str, Dataset],
        train_losses: dict[str, torch.nn.Module], dataset_prompts: dict, *, epochs: float, learning_rate: float,
        weight_decay: float, eval_dataset: Dataset | None = None, long_lengths: list[int] | None = None):
    """One ``SentenceTransformerTrainer`` run over ``train_sets`` (the trainer alternates their batches)."""
    config = params.train
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    args = SentenceTransformerTrainingArguments(
        output_dir=scratch,
        num_train_epochs=epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=learning_rate,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a fraction of all steps
        weight_decay=weight_decay,
        seed=params.seed,
        data_seed=params.seed,
        bf16=use_bf16,
        eval_strategy="steps" if eval_dataset is not None else "no",
        eval_steps=config.eval_steps,
        logging_steps=config.log_steps,
        save_strategy="no",
        report_to="none",
        # In-batch objectives need whole batches: a last batch of one text compares nothing.
        dataloader_drop_last=config.uses(("similarity", "mnrl")),
        prompts=_non_empty(dataset_prompts) or None,
        batch_sampler=batch_sampler(config.candidate_batch_size, long_lengths,
                                    config.long.token_budget if config.long else None),
        disable_tqdm=False,
        ddp_backend=("nccl" if torch.cuda.is_available() else "gloo") if distributed() else None,
        use_cpu=not torch.cuda.is_available(),  # accelerate's multi-CPU (gloo) DDP needs it said
    )
    trainer = SentenceTransformerTrainer(
        model=student,
        args=args,
        train_dataset=DatasetDict(train_sets),
        eval_dataset=DatasetDict({"texts": eval_dataset}) if eval_dataset is not None else None,
        loss=train_losses,
    )
    trainer.train()
    if eval_dataset is not None:
        trainer.evaluate()  # the held-out loss of the final weights, whatever eval_steps was
    return trainer


def model_card(params: Params, summary: dict) -> str:
    prompts = params.student.prompts
    template = Template(files("distill").joinpath("templates/model_card.md").read_text(encoding="utf-8"))
    return template.substitute(
        {**summary, "final_eval_loss": "none (no text objective)" if summary["final_eval_loss"] is None
         else summary["final_eval_loss"]},
        teacher=params.teacher.model,
        teacher_prompts=json.dumps(params.teacher.prompts),
        student=describe(params),
        objectives=", ".join(f"{k} {v:g}" for k, v in params.train.objectives.items() if v > 0),
        mode=params.train.mode,
        epochs=params.train.epochs,
        learning_rate=params.train.learning_rate,
        batch_size=params.train.batch_size,
        sources=", ".join(s.type for s in params.corpus.sources),
        prompt_lines="\n".join(f"- `{k}`: `{v!r}`" for k, v in prompts.items()) or "- (none)",
        example_prompt=f', prompt_name="{next(iter(prompts))}"' if prompts else "",
        long_context_line=_long_context_line(summary["long_context"]),
    )


def _long_context_line(long_context: dict | None) -> str:
    if not long_context:
        return ""
    tuned = (f", then tuned on {long_context['documents']} long documents against the chunk-pooled teacher"
             if "documents" in long_context else "")
    return (f" (positions extended from {long_context['native_positions']} to {long_context['length']} by "
            f"{long_context['method']}{tuned})")


def run(params: Params) -> Path:
    """Train the student on cached teacher labels and save it atomically to ``paths.student``; with
    ``train.processes`` above 1, on that many DDP ranks, of which rank 0 saves."""
    if params.train.processes > 1 and not distributed():
        return launch_ranks(params)
    set_seed(params.seed)
    corpus = load_corpus(params.paths.prepared)
    train_frame = corpus[corpus["split"] == "train"]
    eval_frame = spread_sample(corpus[corpus["split"] == "heldout"], params.train.eval_texts, params.seed, "train/eval")
    teacher = teacher_encoder(params, params.paths.teacher_cache)
    cache = teacher.cache(params.corpus.text_type)
    missing = cache.missing(corpus["text"].tolist())
    if missing:
        raise DataError(
            f"{len(missing)} corpus texts have no teacher label in {cache.directory}: run the label step first "
            "(python -m distill label)"
        )
    config = params.train
    train_texts, eval_texts = train_frame["text"].tolist(), eval_frame["text"].tolist()
    query_texts: list[str] = []
    query_cache = None
    if config.mode == "asymmetric":
        # The student will encode queries against teacher-encoded documents: it learns the teacher's
        # space on the queries themselves as well as on the passages.
        query_texts = load_queries(params.paths.prepared)["query"].tolist()
        teacher.encode(query_texts, "query", desc="teacher queries")
        query_cache = teacher.cache("query")
    candidates = load_candidates(params.paths.mined) if config.uses(CANDIDATE_OBJECTIVES) else None
    if candidates is not None and not len(candidates):
        raise DataError(
            f"train.objectives {[o for o in CANDIDATE_OBJECTIVES if config.weight(o)]} need mined candidates, but "
            f"{params.paths.mined} has none: add corpus.queries sources (or loosen mining.margin) and rerun "
            "prepare and label, or set those objectives to 0"
        )

    student = base_student(params, teacher.model)
    if params.student.extend_positions is not None:
        check_extension(student, params.student.extend_positions)  # before training, not after
    student_dim = student.get_embedding_dimension()
    teacher_dim = cache.dim
    pca = None
    if not config.uses(("mse", "cosine")):
        target_space = "student"  # similarity and score objectives compare across dimensions
    elif student_dim == teacher_dim or params.student.target_space == "teacher":
        target_space = "teacher"
        if student_dim != teacher_dim:
            # The least-squares fit needs every label at once (the one place training holds them all).
            student = add_projection(student, train_texts + query_texts,
                                     np.vstack([cache.get(train_texts), *([query_cache.get(query_texts)] if query_texts else [])]),
                                     params)
    else:
        if config.mode == "asymmetric":
            raise DataError("train.mode asymmetric needs student.target_space teacher (documents stay teacher-encoded)")
        target_space = "student"
        if student_dim > teacher_dim:
            raise DataError(
                f"student.target_space student reduces the {teacher_dim}-dimensional teacher labels by PCA, which cannot "
                f"give the student's {student_dim} dimensions; set student.target_space: teacher"
            )
        if len(train_texts) < student_dim:
            raise DataError(
                f"student.target_space student fits a {student_dim}-component PCA on the teacher labels, which needs "
                f"at least {student_dim} training texts; the corpus has {len(train_texts)}. Add text "
                "(corpus.sources, corpus.max_texts) or set student.target_space: teacher"
            )
        pca = PCA(n_components=student_dim, random_state=params.seed).fit(cache.get(train_texts))
    long_targets = long_training_targets(params, teacher) if config.long is not None else None
    del teacher  # free the teacher's memory before training
    # Nothing is checkpointed: the final weights are saved below, atomically, and the trainer's
    # scratch folder (with the label datasets) goes with the context.
    with tempfile.TemporaryDirectory(prefix="distill-train-") as scratch:

        def text_dataset(texts: list[str], labels_cache) -> Dataset:
            """Texts with their teacher labels as an Arrow dataset on disk, memory-mapped, written a chunk
            at a time from the cache: the labels of a large corpus are never one array in memory."""

            def rows(texts: list[str]):
                for begin in range(0, len(texts), LABEL_CHUNK):
                    chunk = texts[begin : begin + LABEL_CHUNK]
                    labels = labels_cache.get(chunk)
                    labels = pca.transform(labels) if pca is not None else labels
                    yield from ({"text": t, "label": row} for t, row in zip(chunk, labels.astype(np.float32)))

            return Dataset.from_generator(rows, gen_kwargs={"texts": texts}, features=LABEL_FEATURES,
                                          cache_dir=str(Path(scratch) / "datasets"), keep_in_memory=False)

        train_sets: dict[str, Dataset] = {}
        train_losses: dict[str, torch.nn.Module] = {}
        prompts = params.student.prompts
        dataset_prompts: dict[str, dict[str, str] | str] = {}
        if config.uses(TEXT_OBJECTIVES):
            train_sets["texts"] = text_dataset(train_texts, cache)
            train_losses["texts"] = text_loss(student, config)
            dataset_prompts["texts"] = prompts.get(params.corpus.text_type, "")
            if query_texts:
                train_sets["queries"] = text_dataset(query_texts, query_cache)
                train_losses["queries"] = train_losses["texts"]
                dataset_prompts["queries"] = prompts.get("query", "")
        if candidates is not None:
            (train_sets["candidates"], train_losses["candidates"],
             dataset_prompts["candidates"]) = candidate_objective(student, params, candidates)
        _check_whole_batches(config, train_sets)
        evaluated = "texts" in train_sets and bool(eval_texts)
        trainer = fit(student, params, scratch, train_sets, train_losses, dataset_prompts,
                      epochs=config.epochs, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                      eval_dataset=text_dataset(eval_texts, cache) if evaluated else None)
        history = list(trainer.state.log_history)
        if params.student.drop_projection and target_space == "teacher" and student_dim != teacher_dim:
            # tokenlearn's recipe: the projection was a training head. For a static student only the
            # rows of tokens the corpus holds moved; through the head they moved consistently with the
            # rest, which keep their distilled vectors. Kept, the head would map every text into the
            # teacher's space, which a mean of 256-dimensional token vectors represents worse than its own.
            del student[-2 if params.teacher.normalize else -1:]  # Dense (and its Normalize)
            target_space = "student"
        long_summary = None
        if params.student.extend_positions is not None:
            native = extend_positions(student, params.student.extend_positions)
            long_summary = {"native_positions": native, **params.student.extend_positions.model_dump()}
            if config.long is not None:
                history += train_long(student, params, scratch, native, long_targets, train_sets, train_losses,
                                      dataset_prompts, offset=trainer.state.global_step)
                long_summary["documents"] = len(long_targets[0])
    if not trainer.is_world_process_zero():
        return Path(params.paths.student)  # rank 0 writes the student and the curves
    train_curve, eval_curve = _loss_curves(history)
    # A held-out loss needs a text objective (held-out texts have labels; held-out queries have no mined
    # candidates): without one there is none, and the record says so rather than NaN.
    final_eval = round(float(eval_curve["eval_loss"].iloc[-1]), 6) if len(eval_curve) else None
    train_documents = sorted(train_frame["doc_id"].astype(str).unique())
    summary = {
        "teacher": params.teacher.model,
        "target_space": target_space,
        "output_dim": student.get_embedding_dimension(),
        "train_texts": len(train_texts),
        "train_queries": len(candidates) if candidates is not None else 0,
        "train_steps": max((int(h["step"]) for h in history if "step" in h), default=0),
        "objectives": {k: v for k, v in config.objectives.items() if v > 0},
        "mode": config.mode,
        "matryoshka_dims": config.matryoshka_dims,
        "train_documents": len(train_documents),
        "corpus_sha256": corpus_sha256(corpus),
        "final_eval_loss": final_eval,
        "pca": PCA_FILE if pca is not None else None,
        "max_seq_length": student.max_seq_length,
        "long_context": long_summary,
    }

    target = Path(params.paths.student)
    with atomic_dir(target) as staging:
        student.save(str(staging))
        if pca is not None:
            np.savez(staging / PCA_FILE, mean=pca.mean_, components=pca.components_)
        write_json(staging / DISTILLATION_FILE, summary)
        (staging / TRAIN_DOCUMENTS_FILE).write_text("\n".join(train_documents) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(model_card(params, summary), encoding="utf-8")
    plots = Path(params.paths.plots) / "training"
    with atomic_dir(plots) as staging:
        train_curve.to_csv(staging / "train_loss.csv", index=False)
        eval_curve.to_csv(staging / "eval_loss.csv", index=False)
    log.info("student saved to %s (%s space, final held-out loss %s)", target, target_space,
             "none: no text objective" if final_eval is None else f"{final_eval:.5f}")
    return target
