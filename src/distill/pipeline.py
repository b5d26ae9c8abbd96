"""The pipeline's steps by name: what ``python -m distill <step>``, DVC and Prefect all call."""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import torch

from distill.config.schema import Params
from distill.services.lock import pipeline_lock

# Each step is the module distill.steps.<step> with a run(params), in pipeline order, with what it does and
# writes; a step imports only what it needs (the registry's MLflow loads only for register, so a
# machine without it can prepare, label, train, export, evaluate).
STEPS = {
    "prepare": "clean, decontaminate and split the corpus; build training queries (data/prepared)",
    "label": "teacher embeddings of every text, mined candidates; a static student's distillation (data/teacher, data/mined)",
    "train": "distil the student on the teacher's labels (models/student)",
    "export": "the student as ONNX / int8 ONNX Runtime / int8 OpenVINO Sentence Transformers folders (models/exports)",
    "evaluate": "teacher, undistilled student, student and its exports on every set; intervals, report, plots (metrics/)",
    "register": "log the run to MLflow and gate the model version's champion alias (metrics/registry.json)",
}


def configure(params: Params) -> None:
    """Process-wide settings every step shares: logging, thread count, no tokenizer fork warnings."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if params.threads:
        torch.set_num_threads(params.threads)


def run_step(name: str, params: Params) -> Any:
    if name not in STEPS:
        raise ValueError(f"unknown step {name!r}; expected one of {sorted(STEPS)}")
    configure(params)
    step = importlib.import_module(f"distill.steps.{name}")
    with pipeline_lock(params.paths.lock):
        return step.run(params)
