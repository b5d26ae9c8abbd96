"""Batch samplers for the trainer: candidate batches kept whole, long documents batched by token budget."""

from __future__ import annotations

import torch
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler
from torch.utils.data import RandomSampler

from distill.config.schema import TrainConfig
from distill.encoding import pack_by_tokens
from distill.errors import DataError
from distill.training.objectives import objectives


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
    if not config.uses(objectives(in_batch=True)):
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
