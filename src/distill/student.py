"""The student: the undistilled starting point, its projection into the teacher's space, and what
the train step records beside a saved student (target space, PCA, provenance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Dense, Normalize

from distill.config.schema import Params
from distill.errors import ModelLoadError
from distill.models import load_model, prune_layers
from distill.prompts import set_student_prompts
from distill.static import load_static_student
from distill.training.positions import native_length

DISTILLATION_FILE = "distillation.json"
PCA_FILE = "target_pca.npz"


def describe(params: Params) -> str:
    """One phrase naming the student, for the model card and the report."""
    student = params.student
    if student.init == "pruned":
        return f"layers {student.keep_layers} of the teacher `{params.teacher.model}`"
    if student.init == "static":
        return f"a static (Model2Vec, {student.static.pca_dims} dims) distillation of `{params.teacher.model}`"
    return f"`{student.model}`"


def base_student(params: Params, teacher: SentenceTransformer | None = None) -> SentenceTransformer:
    """The undistilled student: the pretrained model, the pruned copy of ``teacher``, or the plain
    Model2Vec distillation of ``teacher`` that the label step made."""
    student = params.student
    if student.init in ("pruned", "static") and teacher is None:
        teacher = load_model(params.teacher.model, field="teacher.model", revision=params.teacher.revision,
                             trust_remote_code=params.teacher.trust_remote_code)
    if student.init == "static":
        # Reads texts of any length: no positions to check or truncate at.
        model = load_static_student(params.paths.teacher_cache, teacher, student.static)
        set_student_prompts(model, student.prompts)
        return model
    if student.init == "pruned":
        model = prune_layers(teacher, student.keep_layers or [])
    else:
        model = load_model(
            student.model or "",
            field="student.model",
            revision=student.revision,
            trust_remote_code=student.trust_remote_code,
        )
    if student.max_seq_length is not None:
        positions = native_length(model)
        if student.max_seq_length > positions and student.extend_positions is None:
            raise ModelLoadError(
                f"student.max_seq_length {student.max_seq_length} is above the {positions} token positions the "
                "student holds: lower it, or set student.extend_positions to grow them after training")
        # A student configured longer than its positions (extended only after training) reads what it
        # can and truncates the rest, as the undistilled model does.
        model.max_seq_length = min(student.max_seq_length, positions)
    set_student_prompts(model, student.prompts)
    return model


def shares_teacher_space(params: Params) -> bool:
    """Only a pruned teacher starts in the teacher's space; a pretrained student with the teacher's
    dimension is a different space all the same."""
    return params.student.init == "pruned"


def least_squares_projection(
    inputs: np.ndarray, targets: np.ndarray, ridge: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Weight ``(out, in)`` and bias ``(out,)`` minimising ``||inputs @ W.T + b - targets||² + ridge ||W||²``.

    The ridge term is not optional in practice: a student's normalised embeddings span fewer
    directions than their dimension, so the plain least-squares weight has a norm of ~1e30 that
    cancels on the fitting texts and turns any later change of the encoder (the first optimiser
    steps) into garbage. Measured on the default corpus: held-out cosine to the teacher 0.61 without
    it, 0.67 with ``ridge=1``.
    """
    mean_in, mean_out = inputs.mean(axis=0), targets.mean(axis=0)
    centred_in, centred_out = inputs - mean_in, targets - mean_out
    gram = centred_in.T @ centred_in + ridge * np.eye(inputs.shape[1], dtype=np.float64)
    weight = np.linalg.solve(gram, centred_in.T @ centred_out)  # (in, out); the bias is not penalised
    return weight.T.astype(np.float32), (mean_out - mean_in @ weight).astype(np.float32)


def add_projection(
    model: SentenceTransformer, texts: list[str], targets: np.ndarray, params: Params
) -> SentenceTransformer:
    """Append Dense(student_dim → teacher_dim) (+ Normalize when the teacher normalises)."""
    in_dim = model.get_embedding_dimension()
    dense = Dense(in_features=in_dim, out_features=targets.shape[1], activation_function=torch.nn.Identity())
    if params.student.projection_init == "least_squares":
        fit_count = min(len(texts), 4096)
        inputs = model.encode(texts[:fit_count], batch_size=params.train.batch_size, convert_to_numpy=True)
        weight, bias = least_squares_projection(inputs.astype(np.float64), targets[:fit_count].astype(np.float64),
                                                params.student.projection_ridge)
        with torch.no_grad():
            dense.linear.weight.copy_(torch.from_numpy(weight))
            dense.linear.bias.copy_(torch.from_numpy(bias))
    model.append(dense)
    if params.teacher.normalize:
        model.append(Normalize())
    return model


def load_distillation_info(student_dir: str | Path) -> dict:
    path = Path(student_dir) / DISTILLATION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def teacher_to_student_space(student_dir: str | Path, teacher_embeddings: np.ndarray) -> np.ndarray | None:
    """Map teacher embeddings into the student's target space, or None when there is none."""
    info = load_distillation_info(student_dir)
    if info.get("pca"):
        with np.load(Path(student_dir) / info["pca"]) as pca:
            return (teacher_embeddings - pca["mean"]) @ pca["components"].T
    if info.get("target_space") == "teacher":
        return teacher_embeddings
    return None
