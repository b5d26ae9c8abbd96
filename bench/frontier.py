"""Speed–quality frontier: every way this project serves a student, with one throughput measurement.

    python bench/frontier.py [--steps prepare,label,train,export,evaluate] [--set key=value ...]
    python bench/frontier.py --steps none        # re-measure speed and redraw from the saved runs
    python bench/frontier.py --only static       # rerun one recipe's steps; the other's saved run is read

Runs two recipes through their steps, outputs under ``bench/out/frontier/`` (labels come from the
shared label cache): ``params.yaml`` (the distilled MiniLM and its ONNX, ONNX Runtime int8 and OpenVINO
int8 exports) and ``params/static.yaml`` (the static student and its plain Model2Vec distillation).
Quality is each run's evaluation on the *test* half of the held-out articles (the same sets: their
evaluation specs are checked equal), each model against its own reference with the run's paired
bootstrap: the distilled student against the undistilled one, an export against the fp32 student it
came from, the static student against its plain distillation. Speed: every model, the teacher
included, encodes the same held-out texts at the same batch size and threads, in alternating rounds
in this one process (``distill.encoding.measure_throughput``, as the evaluate step measures).

Prints a Markdown table for bench/RESULTS.md headed by the commit, date, machine and command, checks
issue #23's targets, and draws ``bench/plots/frontier.png`` (texts/s on a log axis against mean score).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from distill.config.loader import load_params  # noqa: E402
from distill.config.schema import export_role  # noqa: E402
from distill.encoding import Encoder, measure_throughput, teacher_encoder  # noqa: E402
from distill.models import load_model  # noqa: E402
from distill.pipeline import run_step  # noqa: E402
from distill.readers import load_corpus  # noqa: E402
from distill.runtimes import load_exported  # noqa: E402
from distill.sampling import throughput_texts  # noqa: E402
from distill.services.dvc_experiments import provenance  # noqa: E402
from distill.services.lock import pipeline_lock  # noqa: E402
from distill.student import base_student  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("bench/out/frontier")
PLOT = Path("bench/plots/frontier.png")
RECIPES = {"default": [], "static": ["params/static.yaml"]}
TEXTS = 256  # throughput texts: more than the default run's 128, for a steadier figure at 8 models


def recipe_params(recipe: str, extra: list[str]):
    run = OUT / recipe
    paths = {"prepared": OUT / "data/prepared", "mined": OUT / "data/mined", "student": run / "student",
             "exports": run / "exports", "metrics": run / "metrics", "reports": run / "reports", "plots": run / "plots"}
    files = [ROOT / "params.yaml", *(ROOT / f for f in RECIPES[recipe])]
    return load_params(files, [f"paths.{k}={v}" for k, v in paths.items()] + extra)


def models(runs: dict) -> list[dict]:
    """Every model with its label, where its quality comes from (run, role), its reference role in that
    run (None: none), and how to load it."""
    default = runs["default"]
    rows = [
        {"label": "teacher", "run": "default", "role": "teacher", "versus": None},
        {"label": "undistilled MiniLM", "run": "default", "role": "baseline", "versus": None},
        {"label": "distilled MiniLM (fp32 torch)", "run": "default", "role": "student", "versus": "baseline"},
        *({"label": f"distilled MiniLM, {fmt}", "run": "default", "role": export_role(fmt), "versus": "student",
           "path": Path(default["params"].paths.exports) / fmt} for fmt in default["params"].export.formats),
        {"label": "static, plain Model2Vec distillation", "run": "static", "role": "baseline", "versus": None},
        {"label": "static, trained (params/static.yaml)", "run": "static", "role": "student", "versus": "baseline"},
    ]
    for row in rows:
        row["metrics"] = runs[row["run"]]["metrics"]
    return rows


def encoder_of(row: dict, runs: dict, teacher: Encoder) -> Encoder:
    params = runs[row["run"]]["params"]
    if row["role"] == "teacher":
        return teacher
    if row["role"] == "baseline":
        model = base_student(params, teacher.model)
    elif "path" in row:
        model = load_exported(row["path"], "paths.exports")
    else:
        model = load_model(params.paths.student, field="paths.student")
    return Encoder(model=model, name=row["label"], cache_root=Path(params.paths.eval_cache),
                   prompts=params.student.prompts, batch_size=params.eval.batch_size, show_progress=False)


def interval(row: dict) -> str:
    m, role = row["metrics"], row["role"]
    key = {"baseline": "vs_baseline", "student": "vs_student"}.get(row["versus"])
    if key is None:
        return "—"
    return "{:+.2f} [{:+.2f}, {:+.2f}]".format(*(m[f"{role}/{key}/{k}"] for k in ("difference", "low", "high")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="prepare,label,train,export,evaluate",
                        help="comma-separated steps per recipe; 'none' re-measures speed from the saved runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="applied to both recipes")
    parser.add_argument("--only", choices=list(RECIPES), help="run the steps of this recipe only")
    args = parser.parse_args()
    os.chdir(ROOT)
    command = "python bench/frontier.py" + (f" --steps {args.steps}" if args.steps != parser.get_default("steps")
                                             else "") + (f" --only {args.only}" if args.only else "") + "".join(
        f" --set {s}" for s in args.set)
    started = provenance(command, ROOT)
    runs = {}
    for recipe in RECIPES:
        params = recipe_params(recipe, args.set)
        with pipeline_lock(params.paths.lock):
            for step in (s for s in args.steps.split(",") if s != "none" and args.only in (None, recipe)):
                print(f"== {recipe}: {step} ==", flush=True)
                run_step(step, params)
        runs[recipe] = {"params": params, "metrics": json.loads((Path(params.paths.metrics) / "eval.json").read_text())}
    specs = {recipe: run["metrics"]["eval/spec"] for recipe, run in runs.items()}
    if len(set(specs.values())) != 1:
        raise SystemExit(f"the recipes were evaluated on different sets: {specs}")

    params = runs["default"]["params"]
    teacher = teacher_encoder(params, params.paths.eval_cache)
    rows = models(runs)
    encoders = {row["label"]: encoder_of(row, runs, teacher) for row in rows}
    for encoder in encoders.values():
        encoder.batch_size = params.eval.batch_size
    corpus = load_corpus(params.paths.prepared)
    texts = throughput_texts(corpus[corpus["split"] == "heldout"], TEXTS, params.seed)
    rates = measure_throughput(encoders, texts, params.corpus.text_type, params.eval.throughput_warmup,
                               params.eval.throughput_repeats)
    speed = {label: statistics.median(r) for label, r in rates.items()}
    teacher_mean = rows[0]["metrics"]["teacher/mean_score"]
    student_speed = speed["distilled MiniLM (fp32 torch)"]
    lines = ["| model | mean score (test) | % of teacher | vs its reference [95% CI] | texts/s (min–max) | × teacher "
             "| × fp32 student | size (MB) |", "|---|" + "---|" * 7]
    for row in rows:
        label, m, role = row["label"], row["metrics"], row["role"]
        mean = m[f"{role}/mean_score"]
        row.update({"mean": mean, "speed": speed[label]})
        lines.append(f"| {label} | {mean:.2f} | {100 * mean / teacher_mean:.1f} | {interval(row)} | {speed[label]:.1f} "
                     f"({min(rates[label]):.1f}–{max(rates[label]):.1f}) | {speed[label] / speed['teacher']:.1f} | "
                     f"{speed[label] / student_speed:.2f} | {m[f'{role}/size_mb']:.1f} |")
    static = rows[-1]["metrics"]
    sets = [s.name for s in params.eval.sets if f"student/vs_baseline/{s.name}/low" in static]
    lines.append("\nStatic student vs its plain distillation, per set: " + "; ".join(
        "{} {:+.2f} [{:+.2f}, {:+.2f}]".format(
            n, *(static[f"student/vs_baseline/{n}/{k}"] for k in ("difference", "low", "high")))
        for n in sets) + ".")
    bm25 = {k.removeprefix("bm25/"): v for k, v in rows[0]["metrics"].items() if k.startswith("bm25/") and k.endswith("ndcg@10")}
    lines.append("BM25 (no neural model), nDCG@10: " + ", ".join(f"{k.split('/')[0]} {v:.2f}" for k, v in bm25.items()) + ".")
    checks = {}
    for row in rows:
        if row["role"].endswith("int8"):
            m = row["metrics"]
            pct = 100 * row["mean"] / m["student/mean_score"]
            checks[f"{row['label']}: {row['speed'] / student_speed:.2f}x the fp32 student (>= 2x), {pct:.2f}% of its mean "
                   f"score (>= 99.5%), {row['speed'] / speed['teacher']:.1f}x the teacher (>= 14x)"] = (
                row["speed"] >= 2 * student_speed and pct >= 99.5 and row["speed"] >= 14 * speed["teacher"])
    trained = rows[-1]
    checks[f"static: {trained['speed'] / speed['teacher']:.0f}x the teacher (>= 500x)"] = (
        trained["speed"] >= 500 * speed["teacher"])
    checks[f"static: {100 * trained['mean'] / teacher_mean:.1f}% of the teacher's mean score (>= 85%)"] = (
        trained["mean"] >= 0.85 * teacher_mean)
    checks["static: above its plain distillation with the lower bound > 0 on every set"] = all(
        static[f"student/vs_baseline/{n}/low"] > 0 for n in sets)
    lines.append("SUMMARY frontier: " + "; ".join(f"{text} {'OK' if ok else 'MISSED'}" for text, ok in checks.items()))
    print(f"\n{started}; {torch.get_num_threads()} threads, {len(texts)} texts at batch {params.eval.batch_size}, "
          f"{params.eval.throughput_repeats} rounds\n\n" + "\n".join(lines))

    points = [{"label": r["label"], "texts_per_s": r["speed"], "mean_score": r["mean"]} for r in rows]
    (ROOT / OUT / "results.json").write_text(json.dumps({"provenance": started, "rows": points}, indent=2))
    draw(points, f"texts/s, log scale ({torch.get_num_threads()} CPU threads, batch {params.eval.batch_size}, "
                 f"median of {params.eval.throughput_repeats} rounds)")
    return 0


def draw(points: list[dict], xlabel: str) -> None:
    """Every model a marker of its own, named in the legend with its figures (the MiniLM family sits
    too close together for labels beside the points)."""
    fig, ax = plt.subplots(figsize=(9, 5))
    markers = "o^sDvP*Xh"
    for index, point in enumerate(points):
        ax.scatter(point["texts_per_s"], point["mean_score"], s=60, marker=markers[index % len(markers)],
                   label=f"{point['label']}: {point['texts_per_s']:.0f}/s, {point['mean_score']:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean score, test half of the held-out BBC articles")
    ax.set_title("Speed vs quality: every model, one throughput run")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    (ROOT / PLOT).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(ROOT / PLOT, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
