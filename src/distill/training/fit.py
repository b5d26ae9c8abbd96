"""One trainer run (``SentenceTransformerTrainer`` over the weighted objectives), and the DDP relaunch:
with ``train.processes`` > 1 the train step starts itself again under ``torchrun``; the ranks hand
the pipeline lock down through the environment (:func:`distill.services.lock.holder_env`)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
import yaml
from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.losses.merged_forward import column_merging_disabled

from distill.config.schema import Params
from distill.errors import DataError
from distill.prompts import non_empty_prompts
from distill.services.lock import holder_env
from distill.training.objectives import objectives
from distill.training.samplers import batch_sampler

log = logging.getLogger(__name__)


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


def _loss_curves(log_history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = [{"step": h["step"], "loss": h["loss"]} for h in log_history if "loss" in h]
    # One eval dataset (held-out texts) named "texts": the trainer logs its loss as eval_texts_loss.
    evals = [{"step": h["step"], "eval_loss": h["eval_texts_loss"]} for h in log_history if "eval_texts_loss" in h]
    return pd.DataFrame(train, columns=["step", "loss"]), pd.DataFrame(evals, columns=["step", "eval_loss"])


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
        seed=params.train_seed,
        data_seed=params.train_seed,
        bf16=use_bf16,
        eval_strategy="steps" if eval_dataset is not None else "no",
        eval_steps=config.eval_steps,
        logging_steps=config.log_steps,
        save_strategy="no",
        report_to="none",
        # In-batch objectives need whole batches: a last batch of one text compares nothing.
        dataloader_drop_last=config.uses(objectives(in_batch=True)),
        prompts=non_empty_prompts(dataset_prompts) or None,
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
    # The merged candidate pass is the library's choice for accelerators, where per-pass overhead
    # dominates; on a CPU, padding every candidate to the widest costs more than one larger matmul saves
    # (bench/train_step.py), so CPU training runs one pass per column. The loss is the same either way.
    with nullcontext() if torch.cuda.is_available() else column_merging_disabled():
        trainer.train()
    if eval_dataset is not None:
        trainer.evaluate()  # the held-out loss of the final weights, whatever eval_steps was
    return trainer
