"""Long-context benchmark: params.yaml + params/long.yaml end to end, then one comparison table.

    python bench/long_context.py [--set key=value ...] [--steps prepare,label,short,train]

Runs the long recipe's prepare, label and train steps with outputs under bench/out/long/ (labels
shared with the default pipeline), trains the default short student on the same prepared data (the
``short`` step), then scores in one process, on the same texts, token budget and threads:

- teacher, chunk-pooled (``teacher.chunking``);
- undistilled student, truncating at its native positions;
- the same student extended by ``student.extend_positions``, untrained;
- the short distilled student (params.yaml's recipe), truncating at its native positions;
- the same student chunk-pooled over windows of its native length (``teacher.chunking``'s overlap and
  pooling): what a long text costs a short model without any extension, the long student's rival;
- the short distilled student extended, untrained: what the long tuning starts from, so the last row
  minus this one is the tuning's own effect;
- the distilled long student;

on the passkey, needle and long-document retrieval sets of params/long.yaml at each length, and on
STS-B test (``../shared/data``; skipped with a note when absent). Texts/s at each length: every model
encodes the same long-retrieval documents from an empty cache (chunking included), the models taking
turns over three repeats; the median is reported.
Prints a Markdown block for bench/RESULTS.md and writes bench/out/long/long_context.{json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from distill.config.loader import load_params, read_params_file  # noqa: E402
from distill.config.schema import ChunkingConfig  # noqa: E402
from distill.encoding import Encoder, teacher_encoder, turn_order  # noqa: E402
from distill.evaluation.base import set_items  # noqa: E402
from distill.evaluation.gate import paired_bootstrap  # noqa: E402
from distill.evaluation.long import (
    LongDocumentEvaluator,  # noqa: E402
    LongSet,  # noqa: E402
)
from distill.evaluation.registry import load_evaluators, score_model  # noqa: E402
from distill.evaluation.sts import (
    StsEvaluator,  # noqa: E402
    StsSet,  # noqa: E402
)
from distill.models import load_model  # noqa: E402
from distill.pipeline import run_step  # noqa: E402
from distill.readers import load_corpus  # noqa: E402
from distill.services.dvc_experiments import provenance  # noqa: E402
from distill.services.lock import pipeline_lock  # noqa: E402
from distill.student import base_student  # noqa: E402
from distill.training.positions import extend_positions, native_length  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("bench/out/long")
PATHS = {"prepared": OUT / "data/prepared", "mined": OUT / "data/mined", "student": OUT / "models/student",
         "metrics": OUT / "metrics", "reports": OUT / "reports", "plots": OUT / "plots"}
SHORT_STUDENT = OUT / "models/short_student"
ROWS = {"teacher": "teacher (chunk-pooled)", "undistilled": "undistilled (truncating)",
        "extended": "extended, untrained", "short": "short distilled (truncating)",
        "short_chunked": "short distilled, chunk-pooled",
        "short_extended": "short distilled, extended, untrained", "long": "distilled long student"}
# The benchmark data folder params/benchmark.yaml names (../shared/data), relative to the project root.
STS_PATH = ROOT / read_params_file(ROOT / "params/benchmark.yaml")["paths"]["eval_data"] / "stsb/sts-test.csv"
SPEED_TEXTS = 16
SPEED_REPEATS = 3


def texts_per_second(encoder: Encoder, texts: list[str]) -> float:
    """One encode of ``texts`` through an empty cache: every forward pass (and the teacher's windows) paid."""
    with tempfile.TemporaryDirectory() as scratch:
        timed = dataclasses.replace(encoder, cache_root=Path(scratch), fallback_roots=(), show_progress=False)
        start = time.perf_counter()
        timed.encode(texts, "passage")
        return len(texts) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", default="prepare,label,short,train",
                        help="steps before scoring; '' re-scores the saved students")
    args = parser.parse_args()
    os.chdir(ROOT)
    command = "python bench/long_context.py" + "".join(f" --set {s}" for s in args.set)
    if args.steps != parser.get_default("steps"):
        command += f" --steps '{args.steps}'"
    started = provenance(command, ROOT)
    overrides = [f"paths.{k}={v}" for k, v in PATHS.items()] + args.set
    params = load_params([ROOT / "params.yaml", ROOT / "params/long.yaml"], overrides)
    short_params = load_params([ROOT / "params.yaml"], [f"paths.{k}={PATHS[k]}" for k in ("prepared", "mined")]
                               + [f"paths.student={SHORT_STUDENT}"] + args.set)
    timings: dict[str, float] = {}
    with pipeline_lock(params.paths.lock):
        for step in filter(None, args.steps.split(",")):
            start = time.perf_counter()
            run_step("train", short_params) if step == "short" else run_step(step, params)
            timings[step] = time.perf_counter() - start

    start = time.perf_counter()
    heldout = load_corpus(params.paths.prepared).query("split == 'heldout'")
    budget = dict(batch_size=params.eval.batch_size, token_budget=params.eval.token_budget, normalize=True,
                  prompts=params.student.prompts)
    cache = Path(params.paths.eval_cache)
    teacher = teacher_encoder(params, cache)
    undistilled = base_student(params, teacher.model)
    extended = base_student(params, teacher.model)
    extend_positions(extended, params.student.extend_positions)
    short = load_model(str(SHORT_STUDENT), field="short student")
    short.max_seq_length = native_length(short)  # the most a truncating student can read
    short_extended = load_model(str(SHORT_STUDENT), field="short student")
    extend_positions(short_extended, params.student.extend_positions)
    encoders = {
        "teacher": teacher,
        "undistilled": Encoder(model=undistilled, name="undistilled", cache_root=cache, **budget),
        "extended": Encoder(model=extended, name="extended", cache_root=cache, **budget),
        "short": Encoder(model=short, name="short", cache_root=cache, **budget),
        # Windows of as many tokens as it reads; it caches only texts that fit, so it shares the cache with "short".
        "short_chunked": Encoder(model=short, name="short_chunked", cache_root=cache, **budget,
                                 chunking=ChunkingConfig(tokens=short.max_seq_length,
                                                         overlap=params.teacher.chunking.overlap)),
        "short_extended": Encoder(model=short_extended, name="short_extended", cache_root=cache, **budget),
        "long": Encoder(model=load_model(str(params.paths.student), field="paths.student"), name="long",
                        cache_root=cache, **budget),
    }
    specs = [s for s in params.eval.sets if isinstance(s, LongSet)]
    evaluators = load_evaluators(specs, heldout, params.seed, params.corpus.text_type, tokenizer=undistilled.tokenizer)
    if STS_PATH.is_file():
        evaluators.append(StsEvaluator.load(StsSet(name="stsb_test", type="sts", path=str(STS_PATH)), None, params.seed,
                                            params.corpus.text_type))
    scores, items = {}, {}
    for role, encoder in encoders.items():
        scores[role], items[role] = score_model(encoder, evaluators)
    # The reported long-retrieval set: the first not built for choosing recipes (heldout_half dev).
    articles = next(e for e in evaluators if isinstance(e, LongDocumentEvaluator) and e.spec.type == "long_retrieval"
                    and e.spec.heldout_half != "dev")
    # Every model at a length back to back, in turn_order; the median of the repeats.
    rates: dict[str, dict[int, list[float]]] = {role: {n: [] for n in articles.spec.lengths} for role in encoders}
    roles = list(encoders)
    for repeat in range(SPEED_REPEATS):
        for n in articles.spec.lengths:
            for role in turn_order(roles, repeat):
                rates[role][n].append(texts_per_second(encoders[role], [d.text for d in articles.by_length[n][:SPEED_TEXTS]]))
    speed = {role: {n: statistics.median(r) for n, r in by_length.items()} for role, by_length in rates.items()}
    timings["score"] = time.perf_counter() - start
    longest = max(articles.spec.lengths)
    key = f"{articles.name}/len{longest}/ndcg@10"

    def interval(rival: str, evaluator: LongDocumentEvaluator) -> str:
        name = evaluator.name
        result = paired_bootstrap({name: set_items(items["long"], name)}, {name: set_items(items[rival], name)},
                                  [(name, evaluator.primary_on)], params.registry.bootstrap_resamples,
                                  params.registry.confidence, params.seed)
        return f"{result.difference:+.2f} [{result.low:+.2f}, {result.high:+.2f}]"

    long_sets = [e for e in evaluators if isinstance(e, LongDocumentEvaluator)]
    columns = [f"{e.name} {n}" for e in long_sets for n in e.spec.lengths]
    lines = ["| model | " + " | ".join(columns) + " | STS-B test | texts/s at "
             + " / ".join(map(str, articles.spec.lengths)) + " |", "|" + "---|" * (len(columns) + 3)]
    for role, label in ROWS.items():
        cells = [f"{scores[role][f'{e.name}/len{n}/{e.primary_metric}']:.1f}" for e in long_sets for n in e.spec.lengths]
        sts = f"{scores[role]['stsb_test/spearman']:.2f}" if "stsb_test/spearman" in scores[role] else "n/a"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {sts} | " +
                     " / ".join(f"{speed[role][n]:.1f}" for n in articles.spec.lengths) + " |")
    notes = ["Cells: nDCG@1 for passkey and needle, nDCG@10 for long retrieval; documents per length: "
             + ", ".join(f"{e.name} {len(e.by_length[e.spec.lengths[0]])}" for e in long_sets)
             + "; lengths in student tokens."]
    for evaluator in long_sets:
        notes.append(f"long − undistilled on {evaluator.name} (all lengths, paired bootstrap): "
                     f"{interval('undistilled', evaluator)}; long − extended untrained: {interval('extended', evaluator)}; "
                     f"long − short distilled extended untrained (the tuning's effect): "
                     f"{interval('short_extended', evaluator)}; long − short distilled chunk-pooled: "
                     f"{interval('short_chunked', evaluator)}")
    long_speed, teacher_speed = speed["long"][longest], speed["teacher"][longest]
    checks = {
        f"long retrieval @{longest}: long {scores['long'][key]:.1f} vs truncating {scores['undistilled'][key]:.1f} "
        f"(>= +10)": scores["long"][key] - scores["undistilled"][key] >= 10,
        f"long retrieval @{longest}: {100 * scores['long'][key] / scores['teacher'][key]:.1f}% of the teacher (>= 95%)":
            scores["long"][key] >= 0.95 * scores["teacher"][key],
        f"texts/s @{longest}: {long_speed / teacher_speed:.1f}x the teacher (>= 5x)": long_speed >= 5 * teacher_speed,
        "passkey and needle never below the truncating student at any length": all(
            scores["long"][key] >= scores["undistilled"][key]
            for e in long_sets if e.spec.type != "long_retrieval"
            for key in (f"{e.name}/len{n}/{e.primary_metric}" for n in e.spec.lengths)),
    }
    if "stsb_test/spearman" in scores["long"]:
        gap = scores["long"]["stsb_test/spearman"] - scores["short"]["stsb_test/spearman"]
        checks[f"STS-B test within 0.3 of the short distilled student ({gap:+.2f})"] = abs(gap) <= 0.3
    else:
        notes.append(f"STS-B test not scored: {STS_PATH} is absent")
    notes.append("step seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    notes.append(f"SUMMARY long context: {sum(checks.values())}/{len(checks)} targets met; " + "; ".join(
        f"{text} {'OK' if ok else 'MISSED'}" for text, ok in checks.items()))
    print(f"\n{started}\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes))

    figure, axes = plt.subplots(1, len(long_sets), figsize=(5 * len(long_sets), 4), squeeze=False)
    for ax, evaluator in zip(axes[0], long_sets):
        for role, label in ROWS.items():
            ax.plot(evaluator.spec.lengths, [scores[role][f"{evaluator.name}/len{n}/{evaluator.primary_metric}"]
                                             for n in evaluator.spec.lengths], marker="o", label=label)
        ax.set(xscale="log", xticks=evaluator.spec.lengths, xticklabels=evaluator.spec.lengths, xlabel="tokens",
               ylabel=evaluator.primary_metric, title=evaluator.name)
        ax.minorticks_off()  # the log axis would label its minor ticks over the lengths
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    (ROOT / OUT).mkdir(parents=True, exist_ok=True)
    figure.savefig(ROOT / OUT / "long_context.png", dpi=120)
    (ROOT / OUT / "long_context.json").write_text(json.dumps({"scores": scores, "texts_per_s": speed,
                                                               "timings": timings}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
