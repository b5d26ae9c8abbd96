"""Choosing the long recipe on long_articles_dev (never on the reported test-half sets).

    python bench/long_dev.py                                   # training-free rows
    python bench/long_dev.py --tune NAME [--set key=value ...] # long tuning from the short student
    python bench/long_dev.py --score PATH                      # a student trained elsewhere

Run ``python bench/long_context.py`` first: it prepares and labels the long recipe's data and trains
the short student under bench/out/long, which every row here starts from. The rows, scored on
params/long.yaml's ``long_articles_dev`` set (the held-out articles' dev half) at each of its lengths,
and on STS-B dev (``../shared/data/stsb``, where present), the short quality a long recipe must keep:

- the chunk-pooled teacher;
- the short distilled student extended by each ``student.extend_positions`` method, untrained;
- the short distilled student chunk-pooled over 256-token windows and over windows of its native length;
- ``--tune``: the short student extended and tuned by ``train.long`` with the ``--set`` overrides
  (a ``full_epochs`` stage mixes in the short candidate objectives, as the train step does).

Each row is printed and appended to bench/out/long_dev/results.jsonl with its overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from distill.config.loader import load_params, read_params_file
from distill.config.schema import ChunkingConfig
from distill.encoding import Encoder, teacher_encoder
from distill.errors import DataError
from distill.evaluation.long import LongSet
from distill.evaluation.registry import load_evaluators, score_model
from distill.evaluation.sts import StsEvaluator, StsSet
from distill.models import load_model
from distill.readers import load_candidates, load_corpus
from distill.student import base_student
from distill.training.candidates import candidate_objective
from distill.training.long import long_training_targets, train_long
from distill.training.positions import extend_positions, native_length

ROOT = Path(__file__).resolve().parents[1]
LONG = Path("bench/out/long")
OUT = Path("bench/out/long_dev")
SHORT_STUDENT = LONG / "models/short_student"
METHODS = ("copy_tile", "interpolate", "grouped")
# The benchmark data folder params/benchmark.yaml names (../shared/data), relative to the project root.
STS_DEV = ROOT / read_params_file(ROOT / "params/benchmark.yaml")["paths"]["eval_data"] / "stsb/sts-dev.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune", metavar="NAME", help="tune the position stage; the student goes to bench/out/long_dev/NAME")
    parser.add_argument("--score", metavar="PATH", help="score a saved student")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    os.chdir(ROOT)
    if not (SHORT_STUDENT / "modules.json").is_file():
        raise DataError(f"{SHORT_STUDENT} holds no short student: run python bench/long_context.py first")
    params = load_params([ROOT / "params.yaml", ROOT / "params/long.yaml"],
                         [f"paths.prepared={LONG / 'data/prepared'}", f"paths.mined={LONG / 'data/mined'}"] + args.set)
    heldout = load_corpus(params.paths.prepared).query("split == 'heldout'")
    teacher = teacher_encoder(params, Path(params.paths.eval_cache))
    specs = [s for s in params.eval.sets if isinstance(s, LongSet) and s.heldout_half == "dev"]
    evaluators = load_evaluators(specs, heldout, params.seed, params.corpus.text_type,
                                 tokenizer=base_student(params, teacher.model).tokenizer)
    if STS_DEV.is_file():  # the short quality a long recipe must keep, on STS-B's dev split
        evaluators.append(StsEvaluator.load(StsSet(name="stsb_dev", type="sts", path=str(STS_DEV)), None, params.seed,
                                            params.corpus.text_type))
    # Students' embeddings stay out of the shared evaluation cache: these models are not kept.
    budget = dict(cache_root=OUT / "cache", batch_size=params.eval.batch_size, token_budget=params.eval.token_budget,
                  prompts=params.student.prompts)

    def row(name: str, encoder) -> None:
        start = time.perf_counter()
        scores, _ = score_model(encoder, evaluators)
        cells = {key: round(value, 2) for key, value in scores.items()
                 if ("/len" in key and key.endswith("ndcg@10")) or key == "stsb_dev/spearman"}
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in cells.items())
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        OUT.mkdir(parents=True, exist_ok=True)
        with open(OUT / "results.jsonl", "a") as out:
            out.write(json.dumps({"row": name, "overrides": args.set, **cells}) + "\n")

    if args.score or args.tune:
        # A student scored once: its embeddings go to a scratch cache, gone with it.
        with tempfile.TemporaryDirectory() as scratch:
            fresh = {**budget, "cache_root": Path(scratch) / "cache"}
            if args.score:
                row(args.score, Encoder(model=load_model(args.score, field="--score"), name="dev score", **fresh))
                return 0
            student = load_model(str(SHORT_STUDENT), field="short student")
            native = extend_positions(student, params.student.extend_positions)
            teacher = teacher_encoder(params, params.paths.teacher_cache)
            targets = long_training_targets(params, teacher)
            label_caches = (teacher.cache("query"), teacher.cache(params.corpus.text_type))
            del teacher  # free its memory before training
            short_sets, short_losses, short_prompts = {}, {}, {}
            if params.train.long.full_epochs:  # the full stage mixes in the short candidate objectives
                short_sets["candidates"], short_losses["candidates"], short_prompts["candidates"] = \
                    candidate_objective(student, params, load_candidates(params.paths.mined), label_caches)
            train_long(student, params, scratch, native, targets, short_sets, short_losses, short_prompts, offset=0)
            student.save(str(OUT / args.tune))
            row(args.tune, Encoder(model=student, name="dev tuned", **fresh))
    else:
        row("teacher (chunk-pooled)", teacher)
        for method in METHODS:
            student = load_model(str(SHORT_STUDENT), field="short student")
            extend_positions(student, params.student.extend_positions.model_copy(update={"method": method}))
            row(f"short distilled, extended ({method}), untrained",
                Encoder(model=student, name=f"dev extended {method}", **budget))
        short = load_model(str(SHORT_STUDENT), field="short student")
        short.max_seq_length = native_length(short)
        for tokens in (256, short.max_seq_length - 2):  # the native length less [CLS] and [SEP]
            row(f"short distilled, chunk-pooled ({tokens}-token windows)",
                Encoder(model=short, name="dev short", **budget,
                        chunking=ChunkingConfig(tokens=tokens, overlap=params.teacher.chunking.overlap)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
