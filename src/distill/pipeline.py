"""The pipeline's steps by name: what ``python -m distill <step>``, DVC and Prefect all call."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch

from distill import evaluate, label, prepare, register, train
from distill.config import Params
from distill.lock import pipeline_lock

STEPS: dict[str, Callable[[Params], Any]] = {
    "prepare": prepare.run,
    "label": label.run,
    "train": train.run,
    "evaluate": evaluate.run,
    "register": register.run,
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
    with pipeline_lock(params.paths.lock):
        return STEPS[name](params)
