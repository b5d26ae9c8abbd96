"""Seconds per training step of the shipped candidate objective: one student pass per text column
(what ``distill.training.losses`` runs) against the query column alone plus one merged pass over the
candidate columns (the library's ``embed_columns``, which pads every candidate to the widest), on the
same fixed batch with the same threads.

    python bench/train_step.py [--repeats 5] [--set key=value ...]

The batch is what the default recipe trains on: ``train.candidate_batch_size`` BBC headlines, each
with its article's first passage as the positive and the first passages of ``mining.negatives``
other articles as negatives, tokenised column by column at ``student.max_seq_length`` as the
trainer's collator does; the labels are fixed seeded scores (and, for an objective that reads the
teacher's embeddings, seeded vectors of the teacher's dimension in their place). Loss values are compared without dropout.
One step is forward and backward of
``train.objectives`` (params.yaml's: MarginMSE and the in-batch KL inside MatryoshkaLoss). The two ways alternate, after a
warm-up each; the median and range of ``--repeats`` steps are printed with the loss values (equal
within fp32 tolerance) and the texts per second of training. Where the time goes: each way's
floating-point operations per step (``torch.utils.flop_counter``), the GFLOP/s that makes, and the
share of this process's fp32 matrix-multiply peak (the best of square matmuls, same threads), with
the share of the tokens it computes that are padding. At the peak a step cannot be faster than
its FLOPs divided by it: that bounds what any rewrite of the forward pass can gain here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from sentence_transformers.base.losses.merged_forward import column_merging_disabled
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig

from distill.config.loader import load_params
from distill.models import resolve_model
from distill.readers import bbc_articles
from distill.services.dvc_experiments import provenance
from distill.student import base_student
from distill.text import split_passages
from distill.training.candidates import labels_with_embeddings
from distill.training.losses import weighted_loss
from distill.training.objectives import objectives

ROOT = Path(__file__).resolve().parents[1]


def fixed_batch(params) -> tuple[list[list[str]], torch.Tensor]:
    queries, negatives = params.train.candidate_batch_size, params.mining.negatives
    articles = [a for a in bbc_articles(max_documents=4 * queries * (negatives + 1)) if a.title][: queries * (negatives + 1)]
    first = [split_passages(a.body, params.corpus.passage_chars)[0] for a in articles]
    prompts = params.student.prompts
    columns = [[prompts.get("query", "") + a.title for a in articles[:queries]],
               [prompts.get("passage", "") + p for p in first[:queries]]]
    for n in range(1, negatives + 1):
        columns.append([prompts.get("passage", "") + p for p in first[n * queries : (n + 1) * queries]])
    generator = torch.Generator().manual_seed(params.seed)
    scores = torch.rand(queries, negatives + 1, generator=generator)
    if not params.train.uses(objectives(teacher_embeddings=True)):
        return columns, scores
    # The labels an objective that reads the teacher's embeddings takes, with seeded vectors of the
    # teacher's dimension standing in for them: the step costs the same.
    dim = AutoConfig.from_pretrained(resolve_model(params.teacher.model)).hidden_size
    embeddings = torch.randn(queries, negatives + 2, dim, generator=generator).numpy()
    return columns, torch.from_numpy(labels_with_embeddings(scores.numpy(), embeddings[:, 0], embeddings[:, 1:]))


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """The best fp32 GFLOP/s of a square matmul in this process: the ceiling a training step is measured against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def padding_share(features: list[dict], merged: bool) -> float:
    """Share of the token positions a way computes that are padding: per column, or the query column
    plus every candidate padded to the widest candidate."""
    masks = [f["attention_mask"] for f in features]
    real = sum(int(m.sum()) for m in masks)
    if merged:
        widest = max(m.shape[1] for m in masks[1:])
        computed = masks[0].numel() + sum(m.shape[0] for m in masks[1:]) * widest
    else:
        computed = sum(m.numel() for m in masks)
    return 1 - real / computed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    os.chdir(ROOT)
    params = load_params(ROOT / "params.yaml", args.set)
    command = f"python bench/train_step.py --repeats {args.repeats}" + "".join(f" --set {s}" for s in args.set)
    started = provenance(command, ROOT)
    student = base_student(params)
    loss = weighted_loss(student, params.train, "candidates")
    columns, labels = fixed_batch(params)
    features = [student.tokenize(column) for column in columns]
    texts = sum(len(c) for c in columns)

    def step() -> tuple[float, float]:
        student.zero_grad(set_to_none=True)
        start = time.perf_counter()
        value = loss([dict(f) for f in features], labels)
        value.backward()
        return time.perf_counter() - start, value.item()

    ways = {"one pass per column": column_merging_disabled, "query pass + merged candidates": contextlib.nullcontext}
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    values: dict[str, float] = {}
    student.eval()  # the loss values without dropout, whose masks differ between the ways
    for way, context in ways.items():
        with context(), torch.no_grad():
            values[way] = loss([dict(f) for f in features], labels).item()
    student.train()  # timed as the trainer runs it
    for repeat in range(args.repeats + 1):  # the first round is the warm-up
        for way, context in ways.items():
            with context():
                elapsed, _ = step()
            if repeat:
                seconds[way].append(elapsed)
    print(f"{started}\n\nbatch: {len(columns[0])} queries x {len(columns)} columns = {texts} texts, "
          f"{torch.get_num_threads()} threads\n")
    print("| forward | s per step, median (min–max) | training texts/s | loss |\n|---|---|---|---|")
    for way in ways:
        median = statistics.median(seconds[way])
        print(f"| {way} | {median:.2f} ({min(seconds[way]):.2f}–{max(seconds[way]):.2f}) | {texts / median:.1f} | "
              f"{values[way]:.6f} |")
    base, merged = (statistics.median(seconds[w]) for w in ways)
    print(f"\nspeed-up of the merged pass: {base / merged:.2f}x; loss difference "
          f"{abs(values['one pass per column'] - values['query pass + merged candidates']):.2e}")

    peak = matmul_peak()
    print(f"\nfp32 matmul peak of this process: {peak:.0f} GFLOP/s ({torch.get_num_threads()} threads)\n")
    print("| forward | GFLOP per step | GFLOP/s | share of the matmul peak | padding share of tokens | "
          "fastest step at the peak (s) |\n|---|---|---|---|---|---|")
    padding = {way: padding_share(features, merged=context is not column_merging_disabled) for way, context in ways.items()}
    for way, context in ways.items():
        counter = FlopCounterMode(display=False)
        with context(), counter:
            step()
        gflop = counter.get_total_flops() / 1e9
        median = statistics.median(seconds[way])
        print(f"| {way} | {gflop:.0f} | {gflop / median:.0f} | {gflop / median / peak:.0%} | "
              f"{padding[way]:.0%} | {gflop / peak:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
