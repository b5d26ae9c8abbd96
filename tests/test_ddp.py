"""DDP training: ``python -m distill train`` with ``train.processes: 2`` runs two gloo ranks on CPU
through torchrun. With the in-batch similarity objective gathered across ranks, two processes of
half the training set each follow the loss curve of one process whose batch is the whole training
set, and rank 0 saves a loadable student.

The global batch is the whole training set because that makes every step's batch the same texts
in both runs: the samplers of one process and of two ranks shuffle differently, and the in-batch
loss over a fixed set of texts does not depend on their order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sentence_transformers import SentenceTransformer

from distill.__main__ import main
from distill.config.loader import load_params
from distill.models import resolve_model
from distill.readers import load_corpus
from tests.conftest import labelled_tiny_project

pytestmark = pytest.mark.slow

# Two runs of the same global batches differ only by float summation order (a gathered matrix vs one,
# gradients all-reduced vs summed in one process).
LOSS_RTOL = 1e-4


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """A labelled tiny project whose student is all-MiniLM-L6-v2 without dropout: the two runs draw
    their dropout masks differently, which is noise, not what this test is after."""
    root = tmp_path_factory.mktemp("ddp")
    student = root / "minilm-no-dropout"
    shutil.copytree(resolve_model("all-MiniLM-L6-v2"), student)
    config = json.loads((student / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (student / "config.json").write_text(json.dumps(config))
    return labelled_tiny_project(root, student={"model": str(student)}).parent


def train(root: Path, name: str, processes: int, batch_size: int) -> pd.DataFrame:
    overrides = [
        "train.objectives={similarity: 1.0, margin_mse: 0.0}", "train.matryoshka_dims=[]",
        f"train.processes={processes}", f"train.batch_size={batch_size}", "train.max_steps=3", "train.log_steps=1",
        "train.warmup_ratio=0.0", f"paths.student={root / name / 'student'}", f"paths.plots={root / name / 'plots'}",
    ]
    argv = ["train", "--params", str(root / "params.yaml")]
    for override in overrides:
        argv += ["--set", override]
    assert main(argv) == 0
    return pd.read_csv(root / name / "plots/training/train_loss.csv")


def test_two_ranks_train_like_one_process_of_the_global_batch(labelled):
    corpus = load_corpus(load_params(labelled / "params.yaml").paths.prepared)
    texts = int((corpus["split"] == "train").sum())
    assert texts % 2 == 0, "two ranks need an even training set to split it whole"
    one = train(labelled, "one", processes=1, batch_size=texts)
    two = train(labelled, "two", processes=2, batch_size=texts // 2)
    assert list(one["step"]) == list(two["step"]) == [1, 2, 3]
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=LOSS_RTOL)
    assert len(set(np.round(one["loss"], 6))) > 1  # the weights moved between steps
    student = SentenceTransformer(str(labelled / "two/student"), device="cpu")
    assert student.encode(["a loadable student"]).shape == (1, 384)
