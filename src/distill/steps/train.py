"""Step 3, train: distil the teacher into the student with ``SentenceTransformerTrainer``.

The student is a pretrained small model or a layer-pruned copy of the teacher. ``train.objectives``
weighs two kinds of objective, each on its own dataset (the trainer alternates their batches):

- on corpus texts labelled with teacher embeddings: ``similarity`` (in-batch similarity matrices, the
  student keeps its own space), ``mse`` and ``cosine`` (the teacher's coordinates);
- on training queries with teacher-mined candidates and teacher scores (the label step):
  ``margin_mse``, ``kl``, ``mnrl``, ``relative`` and ``in_batch_kl`` (which also reads the teacher's
  cached embeddings of the queries and candidates), optionally inside ``MatryoshkaLoss``.

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
import tempfile
from importlib.resources import files
from pathlib import Path
from string import Template

import numpy as np
import torch
from datasets import Dataset, Features, Sequence, Value
from sklearn.decomposition import PCA
from transformers import set_seed

from distill.atomic import atomic_dir, write_json
from distill.config.schema import Params
from distill.encoding import teacher_encoder
from distill.errors import DataError
from distill.readers import corpus_sha256, load_candidates, load_corpus, load_queries
from distill.sampling import spread_sample
from distill.student import DISTILLATION_FILE, PCA_FILE, add_projection, base_student, describe
from distill.training.candidates import candidate_objective
from distill.training.fit import _loss_curves, distributed, fit, launch_ranks
from distill.training.long import long_training_targets, train_long
from distill.training.losses import weighted_loss
from distill.training.objectives import objectives
from distill.training.positions import check_extension, extend_positions
from distill.training.samplers import _check_whole_batches

log = logging.getLogger(__name__)

TRAIN_DOCUMENTS_FILE = "train_documents.txt"
# Labels go from the cache into the training dataset this many rows at a time.
LABEL_CHUNK = 4096
LABEL_FEATURES = Features({"text": Value("string"), "label": Sequence(Value("float32"))})



def model_card(params: Params, summary: dict) -> str:
    """The distillation section of the student's model card: teacher, data, objectives, prompts, usage."""
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
    set_seed(params.train_seed)
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
    candidates = load_candidates(params.paths.mined) if config.uses(objectives("candidates")) else None
    if candidates is not None and not len(candidates):
        raise DataError(
            f"train.objectives {[o for o in objectives('candidates') if config.weight(o)]} need mined candidates, but "
            f"{params.paths.mined} has none: add corpus.queries sources (or loosen mining.margin) and rerun "
            "prepare and label, or set those objectives to 0"
        )

    student = base_student(params, teacher.model)
    if params.student.extend_positions is not None:
        check_extension(student, params.student.extend_positions)  # before training, not after
    student_dim = student.get_embedding_dimension()
    teacher_dim = cache.dim
    pca = None
    if not config.uses(objectives(teacher_space=True)):
        target_space = "student"  # similarity and score objectives compare across dimensions
    elif student_dim == teacher_dim or params.student.target_space == "teacher":
        target_space = "teacher"
        if student_dim != teacher_dim:
            # The least-squares fit needs every label at once (the one place training holds them all).
            labels = np.vstack([cache.get(train_texts), *([query_cache.get(query_texts)] if query_texts else [])])
            student = add_projection(student, train_texts + query_texts, labels, params)
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
        pca = PCA(n_components=student_dim, random_state=params.train_seed).fit(cache.get(train_texts))
    long_targets = long_training_targets(params, teacher) if config.long is not None else None
    label_caches = (teacher.cache("query"), cache)  # the candidates' teacher embeddings, where an objective takes them
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
        if config.uses(objectives("texts")):
            train_sets["texts"] = text_dataset(train_texts, cache)
            train_losses["texts"] = weighted_loss(student, config, "texts")
            dataset_prompts["texts"] = prompts.get(params.corpus.text_type, "")
            if query_texts:
                train_sets["queries"] = text_dataset(query_texts, query_cache)
                train_losses["queries"] = train_losses["texts"]
                dataset_prompts["queries"] = prompts.get("query", "")
        if candidates is not None:
            (train_sets["candidates"], train_losses["candidates"],
             dataset_prompts["candidates"]) = candidate_objective(student, params, candidates, label_caches)
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
        "seed": params.train_seed,
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
        # The library's generated card (architecture, training logs, versions), with the distillation's section.
        card = staging / "README.md"
        library_card = card.read_text(encoding="utf-8") if card.is_file() else ""
        card.write_text(library_card.rstrip("\n") + "\n\n" + model_card(params, summary), encoding="utf-8")
    plots = Path(params.paths.plots) / "training"
    with atomic_dir(plots) as staging:
        train_curve.to_csv(staging / "train_loss.csv", index=False)
        eval_curve.to_csv(staging / "eval_loss.csv", index=False)
    log.info("student saved to %s (%s space, final held-out loss %s)", target, target_space,
             "none: no text objective" if final_eval is None else f"{final_eval:.5f}")
    return target
