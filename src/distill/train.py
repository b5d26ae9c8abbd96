"""Step 3, train: distil the teacher's labels into the student with ``SentenceTransformerTrainer``.

The student is a pretrained small model or a layer-pruned copy of the teacher. When dimensions
differ, ``student.target_space`` picks where the student learns: ``teacher`` adds a trainable Dense
projection (least-squares initialised by default) so student vectors live in the teacher's space;
``student`` reduces the teacher labels with PCA fitted on them, as Sentence Transformers'
distillation example does. The ``similarity`` loss needs neither: it matches in-batch similarity
matrices, so the student keeps its own space. The student's prompt for ``corpus.text_type`` is
applied in training exactly as at evaluation and serving.

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
import pandas as pd
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses
from sklearn.decomposition import PCA
from transformers import set_seed

from distill.config import Params
from distill.encoding import teacher_encoder
from distill.errors import DataError
from distill.io import atomic_dir, write_json
from distill.losses import InBatchSimilarityLoss
from distill.readers import corpus_sha256, load_corpus
from distill.sampling import spread_sample
from distill.student import DISTILLATION_FILE, PCA_FILE, add_projection, base_student, describe

log = logging.getLogger(__name__)

LOSSES = {
    "mse": losses.MSELoss,
    "cosine": lambda model: losses.EmbedDistillLoss(model, distance_metric="cosine"),
    "similarity": InBatchSimilarityLoss,
}
TRAIN_DOCUMENTS_FILE = "train_documents.txt"


def _loss_curves(log_history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = [{"step": h["step"], "loss": h["loss"]} for h in log_history if "loss" in h]
    evals = [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in log_history if "eval_loss" in h]
    return pd.DataFrame(train, columns=["step", "loss"]), pd.DataFrame(evals, columns=["step", "eval_loss"])


def model_card(params: Params, summary: dict) -> str:
    prompts = params.student.prompts
    template = Template(files("distill").joinpath("templates/model_card.md").read_text(encoding="utf-8"))
    return template.substitute(
        summary,
        teacher=params.teacher.model,
        teacher_prompts=json.dumps(params.teacher.prompts),
        student=describe(params),
        loss=params.train.loss,
        epochs=params.train.epochs,
        learning_rate=params.train.learning_rate,
        batch_size=params.train.batch_size,
        sources=", ".join(s.type for s in params.corpus.sources),
        prompt_lines="\n".join(f"- `{k}`: `{v!r}`" for k, v in prompts.items()) or "- (none)",
        example_prompt=f', prompt_name="{next(iter(prompts))}"' if prompts else "",
    )


def run(params: Params) -> Path:
    """Train the student on cached teacher labels and save it atomically to ``paths.student``."""
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

    prompt = params.student.prompts.get(params.corpus.text_type)
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    # Nothing is checkpointed: the final weights are saved below, atomically, and the trainer's
    # scratch folder goes with the context.
    with tempfile.TemporaryDirectory(prefix="distill-train-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
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
            save_strategy="no",
            report_to="none",
            dataloader_drop_last=params.train.loss == "similarity",
            prompts=prompt or None,
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
    train_documents = sorted(train_frame["doc_id"].astype(str).unique())
    summary = {
        "teacher": params.teacher.model,
        "target_space": target_space,
        "output_dim": student.get_embedding_dimension(),
        "train_texts": len(train_texts),
        "train_documents": len(train_documents),
        "corpus_sha256": corpus_sha256(corpus),
        "final_eval_loss": round(final_eval, 6),
        "pca": PCA_FILE if pca is not None else None,
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
    log.info("student saved to %s (%s space, final held-out loss %.5f)", target, target_space, final_eval)
    return target
