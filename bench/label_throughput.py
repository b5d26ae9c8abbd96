"""Label-step throughput vs plain ``SentenceTransformer.encode``: same texts, model and threads.

    python bench/label_throughput.py [--texts 2000] [--rounds 2] [--params FILE ...]

Takes a seeded sample of N prepared corpus texts (run the prepare step first), then alternates:
the label step's cache fill into an empty temporary cache, and ``model.encode`` with the same batch
size and normalisation. Prints texts/s per run and the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from distill.config.loader import load_params
from distill.encoding import teacher_encoder
from distill.pipeline import configure
from distill.readers import load_corpus
from distill.services.dvc_experiments import provenance

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--params", action="append", default=None)
    args = parser.parse_args()
    os.chdir(ROOT)  # params paths (outputs, ../shared/data) are relative to the project root
    command = "python bench/label_throughput.py" + "".join(
        f" --{k} {v}" for k, v in vars(args).items() if v != parser.get_default(k))
    started = provenance(command, ROOT)
    params = load_params(args.params or [ROOT / "params.yaml", ROOT / "params/benchmark.yaml"])
    configure(params)
    corpus = load_corpus(params.paths.prepared)
    texts = corpus.sample(n=min(args.texts, len(corpus)), random_state=params.seed)["text"].tolist()
    text_type = params.corpus.text_type
    with tempfile.TemporaryDirectory() as tmp:
        encoder = teacher_encoder(params, tmp)
        encoder.show_progress = False
        encoder.raw_encode(texts[:64], text_type)  # warm-up
        rates: dict[str, list[float]] = {"label step": [], "encode": []}
        for round_number in range(args.rounds):
            for name in ("label step", "encode"):
                start = time.perf_counter()
                if name == "label step":
                    encoder.cache_root = Path(tmp) / f"round-{round_number}"
                    encoder.encode(texts, text_type)
                else:
                    encoder.raw_encode(texts, text_type)
                rates[name].append(len(texts) / (time.perf_counter() - start))
                print(f"round {round_number + 1}  {name:<10}  {rates[name][-1]:8.2f} texts/s", flush=True)
    label_rate, encode_rate = (statistics.median(rates[k]) for k in ("label step", "encode"))
    print(f"\n{started}")
    print(f"model {params.teacher.model}, {len(texts)} texts, batch {params.teacher.batch_size}, "
          f"{torch.get_num_threads()} threads, shard size {params.teacher.shard_size}")
    print(f"{'':<12}{'median texts/s':>16}")
    print(f"{'label step':<12}{label_rate:>16.2f}")
    print(f"{'encode':<12}{encode_rate:>16.2f}")
    print(f"SUMMARY label throughput: label step / encode = {label_rate / encode_rate:.3f}x (target >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
