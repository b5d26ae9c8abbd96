"""Distillation does something: on the tiny config, a 2-layer copy of the teacher trained on the
teacher's labels follows the teacher more closely than the same copy untrained (the undistilled
baseline of the same run), and its training loss falls. A trainer that changes no weight fails."""

import json
from pathlib import Path

import pandas as pd
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses import merged_forward

from distill.config.loader import load_params
from distill.models import fingerprint
from distill.steps import evaluate, train
from distill.student import base_student
from tests.conftest import labelled_tiny_project


def test_trained_student_follows_the_teacher_more_closely_than_untrained(tmp_path):
    params = load_params(labelled_tiny_project(
        tmp_path,
        student={"init": "pruned", "keep_layers": [0, 5], "prompts": {}},
        train={"objectives": {"cosine": 1.0, "margin_mse": 1.0}, "matryoshka_dims": [], "epochs": 2,
               "learning_rate": 1e-4, "warmup_ratio": 0.0, "eval_steps": 5},
        eval={"throughput_texts": 16, "throughput_warmup": 4, "throughput_repeats": 1,
              "sets": [{"name": "fid", "type": "fidelity", "max_texts": 60}, {"name": "headlines", "type": "title_retrieval"}]},
    ))
    train.run(params)
    assert fingerprint(SentenceTransformer(params.paths.student)) != fingerprint(base_student(params))
    flat = evaluate.run(params)
    # Closer to the teacher than the untrained copy, on held-out texts: in its coordinates (the pruned
    # copy shares the teacher's space) and in how it orders pairs of texts.
    assert flat["student/fid/cosine"] > flat["baseline/fid/cosine"] + 0.01
    assert flat["student/fid/sim_spearman"] > flat["baseline/fid/sim_spearman"] + 1.0
    # The held-out loss (the text objective on held-out texts, logged every 5 steps and at the end) falls.
    curve = pd.read_csv(f"{params.paths.plots}/training/eval_loss.csv")
    assert len(curve) >= 3 and curve["eval_loss"].iloc[-1] < 0.9 * curve["eval_loss"].iloc[0], curve.to_string()


def test_training_seed_repeats_a_run_and_another_seed_varies_it(tmp_path):
    """``train.seed`` alone decides the training run: the same seed gives the same weights, another
    seed other weights, from the same prepared split and labels (which the top-level seed drew)."""
    params = load_params(labelled_tiny_project(tmp_path, train={"max_steps": 3}))
    students = {}
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_params = params.model_copy(update={
            "train": params.train.model_copy(update={"seed": seed}),
            "paths": params.paths.model_copy(update={"student": str(tmp_path / f"student-{run}")}),
        })
        train.run(run_params)
        students[run] = fingerprint(SentenceTransformer(run_params.paths.student))
    assert students["a"] == students["b"]
    assert students["a"] != students["c"]


def test_in_batch_kl_trains_beside_margin_mse_from_the_teachers_label_caches(tmp_path, monkeypatch):
    """The objective that takes the teacher's embeddings gets them from the label step's caches, through
    the trainer's collator and MatryoshkaLoss, beside a score objective: the weights move. Without CUDA
    the trainer runs one student pass per column: every merge of candidate columns is refused."""
    params = load_params(labelled_tiny_project(
        tmp_path, train={"max_steps": 2, "objectives": {"in_batch_kl": 1.0, "margin_mse": 1.0}}))
    merges, merge = [], merged_forward.merge_feature_batches

    def recorded_merge(features):
        merges.append(merge(features))
        return merges[-1]

    monkeypatch.setattr(merged_forward, "merge_feature_batches", recorded_merge)
    train.run(params)
    assert merges and (torch.cuda.is_available() or all(m is None for m in merges))
    info = json.loads((Path(params.paths.student) / "distillation.json").read_text())
    assert info["objectives"] == {"in_batch_kl": 1.0, "margin_mse": 1.0} and info["train_steps"] == 2
    assert fingerprint(SentenceTransformer(params.paths.student)) != fingerprint(base_student(params))
