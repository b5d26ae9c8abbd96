"""Step 3, train: distil the teacher's labels into the student with ``SentenceTransformerTrainer``.

The student is a pretrained small model or a layer-pruned copy of the teacher. When dimensions
differ, ``student.target_space`` picks where the student learns: ``teacher`` adds a trainable Dense
projection (least-squares initialised by default) so student vectors live in the teacher's space;
``student`` reduces the teacher labels with PCA fitted on them, as Sentence Transformers'
distillation example does. The ``similarity`` loss needs neither: it matches in-batch similarity
matrices, so the student keeps its own space.

Outputs: the student in Sentence Transformers format (prompts and a model card included) under
``paths.student``, and training curves under ``<paths.plots>/training``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
    losses,
)
from sentence_transformers.models import Dense, Normalize
from sklearn.decomposition import PCA
from transformers import set_seed

from distill.cache import EmbeddingCache
from distill.config import Params
from distill.encoding import Encoder
from distill.io import atomic_dir, write_json
from distill.label import teacher_encoder
from distill.losses import CosineDistillationLoss, InBatchSimilarityLoss
from distill.models import load_model, prune_layers
from distill.prepare import DataError, load_corpus
from distill.prompts import set_student_prompts

log = logging.getLogger(__name__)

DISTILLATION_FILE = "distillation.json"
PCA_FILE = "target_pca.npz"
LOSSES = {"mse": losses.MSELoss, "cosine": CosineDistillationLoss, "similarity": InBatchSimilarityLoss}


def base_student(params: Params, teacher: SentenceTransformer | None = None) -> SentenceTransformer:
    """The undistilled student: the pretrained model, or the pruned teacher copy."""
    student = params.student
    if student.init == "pruned":
        if teacher is None:
            teacher = teacher_encoder(params, params.paths.teacher_cache).model
        model = prune_layers(teacher, student.keep_layers or [])
    else:
        model = load_model(
            student.model or "",
            field="student.model",
            revision=student.revision,
            trust_remote_code=student.trust_remote_code,
        )
    if student.max_seq_length is not None:
        model.max_seq_length = student.max_seq_length
    set_student_prompts(model, student.prompts)
    return model


def least_squares_projection(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weight ``(out, in)`` and bias ``(out,)`` minimising ``||inputs @ W.T + b - targets||²``."""
    augmented = np.hstack([inputs, np.ones((len(inputs), 1), dtype=inputs.dtype)])
    solution, *_ = np.linalg.lstsq(augmented, targets, rcond=None)
    return solution[:-1].T.astype(np.float32), solution[-1].astype(np.float32)


def add_projection(
    model: SentenceTransformer, texts: list[str], targets: np.ndarray, params: Params
) -> SentenceTransformer:
    """Append Dense(student_dim → teacher_dim) (+ Normalize when the teacher normalises)."""
    in_dim = model.get_embedding_dimension()
    dense = Dense(in_features=in_dim, out_features=targets.shape[1], activation_function=torch.nn.Identity())
    if params.student.projection_init == "least_squares":
        fit_count = min(len(texts), 4096)
        inputs = model.encode(texts[:fit_count], batch_size=params.train.batch_size, convert_to_numpy=True)
        weight, bias = least_squares_projection(inputs, targets[:fit_count])
        with torch.no_grad():
            dense.linear.weight.copy_(torch.from_numpy(weight))
            dense.linear.bias.copy_(torch.from_numpy(bias))
    model.append(dense)
    if params.teacher.normalize:
        model.append(Normalize())
    return model


def _loss_curves(log_history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = [{"step": h["step"], "loss": h["loss"]} for h in log_history if "loss" in h]
    evals = [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in log_history if "eval_loss" in h]
    return pd.DataFrame(train, columns=["step", "loss"]), pd.DataFrame(evals, columns=["step", "eval_loss"])


def model_card(params: Params, summary: dict) -> str:
    prompts = params.student.prompts
    prompt_lines = "\n".join(f"- `{k}`: `{v!r}`" for k, v in prompts.items()) or "- (none)"
    example_prompt = f', prompt_name="{next(iter(prompts))}"' if prompts else ""
    return f"""# Distilled student

A Sentence Transformers model distilled from **{params.teacher.model}** by the `distill` pipeline.

| | |
|---|---|
| teacher | `{params.teacher.model}` (prompts: {json.dumps(params.teacher.prompts)}) |
| student init | {params.student.init}: `{params.student.model if params.student.init == "pretrained" else params.student.keep_layers}` |
| target space | {summary["target_space"]} (dim {summary["output_dim"]}) |
| loss | {params.train.loss}, {params.train.epochs} epoch(s), lr {params.train.learning_rate}, batch {params.train.batch_size} |
| training texts | {summary["train_texts"]} from {", ".join(s.type for s in params.corpus.sources)} |
| final held-out loss | {summary["final_eval_loss"]} |

Evaluation against the teacher and the undistilled student is in the pipeline's
`metrics/eval.json` and `reports/report.md`.

## Prompts
{prompt_lines}

## Usage
```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("path/to/this/folder")
embeddings = model.encode(["some text"]{example_prompt})
```
"""


def run(params: Params) -> Path:
    """Train the student on cached teacher labels and save it atomically to ``paths.student``."""
    set_seed(params.seed)
    corpus = load_corpus(params)
    train_frame = corpus[corpus["split"] == "train"]
    eval_frame = corpus[corpus["split"] == "heldout"].head(params.train.eval_texts)
    teacher = teacher_encoder(params, params.paths.teacher_cache)
    cache: EmbeddingCache = teacher.cache(params.corpus.text_type)
    missing = cache.missing(corpus["text"].tolist())
    if missing:
        raise DataError(
            f"{len(missing)} corpus texts have no teacher label in {cache.directory}: run the label step first "
            "(python -m distill label)"
        )
    train_texts, eval_texts = train_frame["text"].tolist(), eval_frame["text"].tolist()
    train_labels, eval_labels = cache.get(train_texts), cache.get(eval_texts)

    student = base_student(params, teacher.model)
    student_dim = student.get_embedding_dimension()
    teacher_dim = train_labels.shape[1]
    pca = None
    if params.train.loss == "similarity":
        target_space = "student"  # similarity matrices compare across dimensions
    elif student_dim == teacher_dim or params.student.target_space == "teacher":
        target_space = "teacher"
        if student_dim != teacher_dim:
            student = add_projection(student, train_texts, train_labels, params)
    else:
        target_space = "student"
        pca = PCA(n_components=student_dim, random_state=params.seed).fit(train_labels)
        train_labels, eval_labels = pca.transform(train_labels), pca.transform(eval_labels)
    del teacher  # free the teacher's memory before training

    def dataset(texts: list[str], labels: np.ndarray) -> Dataset:
        return Dataset.from_dict({"text": texts, "label": labels.astype(np.float32).tolist()})

    checkpoints = Path(params.paths.checkpoints)
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=params.train.epochs,
        max_steps=params.train.max_steps,
        per_device_train_batch_size=params.train.batch_size,
        per_device_eval_batch_size=params.train.batch_size,
        learning_rate=params.train.learning_rate,
        warmup_steps=params.train.warmup_ratio,  # a float below 1 is a fraction of all steps
        weight_decay=params.train.weight_decay,
        seed=params.seed,
        data_seed=params.seed,
        bf16=use_bf16,
        eval_strategy="steps" if eval_texts else "no",
        eval_steps=params.train.eval_steps,
        logging_steps=params.train.log_steps,
        save_strategy="steps",
        save_steps=params.train.eval_steps,
        save_total_limit=params.train.save_total_limit,
        report_to="none",
        dataloader_drop_last=params.train.loss == "similarity",
        disable_tqdm=False,
    )
    trainer = SentenceTransformerTrainer(
        model=student,
        args=args,
        train_dataset=dataset(train_texts, train_labels),
        eval_dataset=dataset(eval_texts, eval_labels) if eval_texts else None,
        loss=LOSSES[params.train.loss](student),
    )
    trainer.train()
    if eval_texts:
        trainer.evaluate()  # the held-out loss of the final weights, whatever eval_steps was
    train_curve, eval_curve = _loss_curves(trainer.state.log_history)
    final_eval = float(eval_curve["eval_loss"].iloc[-1]) if len(eval_curve) else float("nan")
    summary = {
        "teacher": params.teacher.model,
        "target_space": target_space,
        "output_dim": student.get_embedding_dimension(),
        "train_texts": len(train_texts),
        "final_eval_loss": round(final_eval, 6),
        "pca": PCA_FILE if pca is not None else None,
    }

    target = Path(params.paths.student)
    with atomic_dir(target) as staging:
        student.save(str(staging))
        if pca is not None:
            np.savez(staging / PCA_FILE, mean=pca.mean_, components=pca.components_)
        write_json(staging / DISTILLATION_FILE, summary)
        (staging / "README.md").write_text(model_card(params, summary), encoding="utf-8")
    plots = Path(params.paths.plots) / "training"
    with atomic_dir(plots) as staging:
        train_curve.to_csv(staging / "train_loss.csv", index=False)
        eval_curve.to_csv(staging / "eval_loss.csv", index=False)
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("student saved to %s (%s space, final held-out loss %.5f)", target, target_space, final_eval)
    return target


def load_distillation_info(student_dir: str | Path) -> dict:
    path = Path(student_dir) / DISTILLATION_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def teacher_to_student_space(student_dir: str | Path, teacher_embeddings: np.ndarray) -> np.ndarray | None:
    """Map teacher embeddings into the student's target space, or None when there is none."""
    info = load_distillation_info(student_dir)
    if info.get("pca"):
        with np.load(Path(student_dir) / info["pca"]) as pca:
            return (teacher_embeddings - pca["mean"]) @ pca["components"].T
    if info.get("target_space") == "teacher":
        return teacher_embeddings
    return None

