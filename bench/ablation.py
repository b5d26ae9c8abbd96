"""Ablation of distillation objectives and students, from one committed list of recipes.

    python bench/ablation.py [--config default|benchmark] [--recipes a,b,...] [--set key=value ...]
                             [--steps evaluate]

Each recipe is a set of params overrides on ``params.yaml`` and ``params/dev.yaml`` (``--config
benchmark`` layers ``params/benchmark.yaml`` instead: STS-B test, MS MARCO and DBpedia). Every recipe
runs prepare → label → train → export → evaluate into its own folder under
``bench/out/ablation/<config>/<recipe>``; the prepared corpus, the mined candidates and the teacher
caches are shared, so the teacher is paid once. Each finished recipe is then saved as the DVC
experiment ``ablation-<config>-<recipe>`` (``dvc exp save`` of those stages with the recipe's params in
``params.yaml``, which is restored afterwards, as the flow saves its runs), so ``dvc exp show`` lists
every recipe with its params and metrics. The steps run here rather than under ``dvc exp run --queue``
because recipes share the prepared corpus, the mined candidates and the caches between their output
folders, and the table reports each step's seconds. Recipes are chosen on the default config, whose sets
are on the *dev* half of the held-out BBC articles (``params/dev.yaml``), never on the test half that
``params.yaml`` reports and never on the benchmark's test sets. To fit this 2-core box, throughput is one round per recipe
(``eval.throughput_repeats=1``); the full three-round measurement is bench/quality.py's.

Prints one Markdown table (every quality set's primary metric, mean score, retained % of the
teacher, speed-up, distilled − undistilled on the primary metric with its bootstrap interval, and
the Matryoshka / asymmetric variants) and the seconds of each step, headed by commit, date, machine and
command; writes ``bench/out/ablation/<config>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from distill.config.loader import load_params
from distill.evaluation.gate import paired_bootstrap
from distill.evaluation.items import primary_sets, role_items
from distill.evaluation.report import truncated_dims
from distill.pipeline import run_step
from distill.readers import PER_ITEM_FILE, load_per_item
from distill.services.dvc_experiments import (
    Experiment,
    layered_leaves,
    params_applied,
    provenance,
    save_experiment,
    workspace_kept,
)
from distill.services.lock import pipeline_lock
from distill.training.objectives import weights_override

ROOT = Path(__file__).resolve().parents[1]


def objectives(dims: tuple[int, ...] = (), **weights: float) -> list[str]:
    """Overrides naming every objective and the Matryoshka dims: overrides merge into params.yaml, so a
    recipe states everything it leaves out (weight 0, no dims) rather than inheriting the default."""
    return [weights_override(**weights), f"train.matryoshka_dims=[{','.join(map(str, dims))}]"]


CLOZE_3 = "corpus.queries=[{type: titles}, {type: inverse_cloze, per_document: 3, min_sentences: 3}]"
PRUNED_4 = ["student.init=pruned", "student.keep_layers=[0,4,8,11]"]
PRUNED_6 = ["student.init=pruned", "student.keep_layers=[0,2,4,6,8,11]"]
RECIPES: dict[str, list[str]] = {
    # Objectives on the pretrained all-MiniLM-L6-v2 student.
    "similarity": objectives(similarity=1.0),
    "similarity+margin_mse": objectives(similarity=1.0, margin_mse=1.0),
    "similarity+kl": objectives(similarity=1.0, kl=1.0),
    "similarity+mnrl": objectives(similarity=1.0, mnrl=1.0),
    "similarity+margin_mse+relative": objectives(similarity=1.0, margin_mse=1.0, relative=1.0),
    "matryoshka(64|128|256)": objectives(similarity=1.0, margin_mse=1.0, dims=(64, 128, 256)),
    # The same recipe trained longer and harder: does the student move further towards the teacher?
    "matryoshka(64|128|256)-3ep-lr5e-5": [*objectives(similarity=1.0, margin_mse=1.0, dims=(64, 128, 256)),
                                          "train.epochs=3", "train.learning_rate=5e-5"],
    "matryoshka(64|128|256)-5ep-lr5e-5": [*objectives(similarity=1.0, margin_mse=1.0, dims=(64, 128, 256)),
                                          "train.epochs=5", "train.learning_rate=5e-5"],
    "matryoshka(64|128|256)-3ep-lr5e-5-cloze3": [*objectives(similarity=1.0, margin_mse=1.0, dims=(64, 128, 256)),
                                                 "train.epochs=3", "train.learning_rate=5e-5", CLOZE_3],
    # A cheaper step for the warm-rerun budget of issue #8: no text batches, 3 negatives instead of 7.
    "margin_mse(64|128|256)-3neg": [*objectives(margin_mse=1.0, dims=(64, 128, 256)), "mining.negatives=3"],
    # The same step at 5x the learning rate: 71 steps at 2e-5 barely move the student.
    "margin_mse(64|128|256)-3neg-lr1e-4": [*objectives(margin_mse=1.0, dims=(64, 128, 256)), "mining.negatives=3",
                                           "train.learning_rate=1e-4"],
    # Half the steps: headline queries only (no inverse-cloze sentences).
    "margin_mse(64|128|256)-3neg-titles": [*objectives(margin_mse=1.0, dims=(64, 128, 256)), "mining.negatives=3",
                                           "corpus.queries=[{type: titles}]"],
    # More training from the same training articles (the evaluation is unchanged): three inverse-cloze
    # queries per article instead of one, and three epochs.
    "margin_mse(64|128|256)-3neg-cloze3": [*objectives(margin_mse=1.0, dims=(64, 128, 256)), "mining.negatives=3",
                                           CLOZE_3],
    "margin_mse(64|128|256)-3neg-3ep": [*objectives(margin_mse=1.0, dims=(64, 128, 256)), "mining.negatives=3",
                                        "train.epochs=3"],
    "margin_mse(64|128|256)-3neg-cloze3-3ep": [*objectives(margin_mse=1.0, dims=(64, 128, 256)), "mining.negatives=3",
                                               CLOZE_3, "train.epochs=3"],
    # Listwise KL beside the pairwise margins, over 7 negatives.
    "margin_mse+kl(64|128|256)-7neg": [*objectives(margin_mse=1.0, kl=1.0, dims=(64, 128, 256)), "mining.negatives=7"],
    "asymmetric(cosine+margin_mse)": ["train.mode=asymmetric", *objectives(cosine=1.0, margin_mse=1.0)],
    # Students that start from the teacher: 4 and 6 of all-mpnet-base-v2's 12 layers.
    "pruned4(cosine+margin_mse)": [*PRUNED_4, *objectives(cosine=1.0, margin_mse=1.0)],
    "pruned6(cosine+margin_mse)": [*PRUNED_6, *objectives(cosine=1.0, margin_mse=1.0)],
}


STEPS = ("prepare", "label", "train", "export", "evaluate")  # the dvc.yaml stages a recipe runs and saves


def recipe_overrides(config: str, recipe: str, extra: list[str]) -> tuple[list[Path], list[str]]:
    """The params files and the overrides that make ``recipe`` under ``config``."""
    files = [ROOT / "params.yaml", ROOT / ("params/benchmark.yaml" if config == "benchmark" else "params/dev.yaml")]
    out = f"bench/out/ablation/{config}"
    paths = {
        "prepared": f"{out}/data/prepared",
        "mined": f"{out}/data/mined",
        "student": f"{out}/{recipe}/student",
        "exports": f"{out}/{recipe}/exports",
        "metrics": f"{out}/{recipe}/metrics",
        "reports": f"{out}/{recipe}/reports",
        "plots": f"{out}/{recipe}/plots",
    }
    overrides = [f"paths.{k}={v}" for k, v in paths.items()] + ["eval.throughput_repeats=1", "export.formats=[]"]
    return files, overrides + RECIPES[recipe] + extra


def recipe_params(config: str, recipe: str, extra: list[str]):
    return load_params(*recipe_overrides(config, recipe, extra))


def save_recipe(config: str, recipe: str, extra: list[str], params) -> Experiment:
    """The recipe's finished stages as a DVC experiment. Its label and evaluation caches stay as they are
    (they only gain content-addressed shards, which the next recipe reads instead of encoding again), so
    ``dvc status`` lists the label and evaluate stages of a ``make run`` workspace until its next ``dvc repro``,
    which reads every embedding from those caches."""
    files, overrides = recipe_overrides(config, recipe, extra)
    leaves = layered_leaves(files[1:], overrides)
    name = f"ablation-{config}-" + re.sub(r"[^\w.]+", "-", recipe).strip("-")
    with (workspace_kept(ROOT, True, keep=(params.paths.teacher_cache, params.paths.eval_cache)),
          params_applied(ROOT, leaves)):
        return save_experiment(ROOT, name, STEPS)


def row(recipe: str, params, m: dict) -> dict:
    quality = [f"{s.name}/{s.primary_metric}" for s in params.eval.sets if s.in_mean_score]
    out = {"recipe": recipe}
    for role in ("teacher", "baseline", "student"):
        out[role] = {key: m[f"{role}/{key}"] for key in quality + ["mean_score"]}
    out["retained_pct"] = m["student/retained_pct/mean_score"]
    out["speedup"] = m["student/speedup"]
    out["vs_baseline"] = [m[f"student/vs_baseline/{k}"] for k in ("difference", "low", "high")]
    names = [q.split("/")[0] for q in quality]
    out["vs_baseline_per_set"] = {n: [m[f"student/vs_baseline/{n}/{k}"] for k in ("difference", "low", "high")]
                                  for n in names if f"student/vs_baseline/{n}/low" in m}
    out["variants"] = {k: v for k, v in m.items() if k.startswith(("student_dim", "asymmetric/"))
                       and (k.endswith(tuple(quality)) or "retained_pct" in k or k.endswith("mean_score"))}
    return out


def table(rows: list[dict], quality: list[str]) -> list[str]:
    names = [q.split("/")[0] for q in quality]
    lines = ["| model | " + " | ".join(names) + " | mean | retained % | speed-up | distilled − undistilled [95% CI] |",
             "|---|" + "---|" * (len(names) + 4)]
    seen_baselines = set()
    for r in rows:
        recipe = r["recipe"].replace("|", "\\|")  # Markdown cells cannot hold a bare pipe
        for role, label in (("teacher", "teacher"), ("baseline", f"undistilled ({recipe})")):
            key = json.dumps(r[role], sort_keys=True)
            if key in seen_baselines:
                continue
            seen_baselines.add(key)
            lines.append(f"| {label} | " + " | ".join(f"{r[role][q]:.2f}" for q in quality)
                         + f" | {r[role]['mean_score']:.2f} | | | |")
        diff, low, high = r["vs_baseline"]
        lines.append(f"| **{recipe}** | " + " | ".join(f"{r['student'][q]:.2f}" for q in quality)
                     + f" | {r['student']['mean_score']:.2f} | {r['retained_pct']:.2f} | {r['speedup']:.2f}x"
                     + f" | {diff:+.2f} [{low:+.2f}, {high:+.2f}] |")
        per_set = r.get("vs_baseline_per_set") or {}
        if per_set:
            cells = [per_set.get(n) for n in names]
            lines.append(f"| &nbsp;&nbsp;{recipe}: distilled − undistilled per set | " + " | ".join(
                "" if c is None else f"{c[0]:+.2f} [{c[1]:+.2f}, {c[2]:+.2f}]" for c in cells) + " | | | | |")
        variants = r["variants"]
        for prefix, label in [(f"student_dim{d}", f"first {d} dims") for d in truncated_dims(variants)] + [
                ("asymmetric", "student queries × teacher documents")]:
            cells = [variants.get(f"{prefix}/{q}") for q in quality]
            if all(c is None for c in cells):
                continue
            retained = [f"{variants[k]:.2f} ({k.split('/')[-1]})" for k in variants
                        if k.startswith(f"{prefix}/retained_pct/")]
            mean = variants.get(f"{prefix}/mean_score")
            lines.append(f"| &nbsp;&nbsp;{recipe}: {label} | " + " | ".join("" if c is None else f"{c:.2f}" for c in cells)
                         + f" | {'' if mean is None else f'{mean:.2f}'} | {', '.join(retained)} | | |")
    return lines


def versus(config: str, recipes: list[str], reference: str, extra: list[str]) -> list[str]:
    """Each recipe's distilled student − ``reference``'s on the primary metric: a paired bootstrap on
    the per-item scores both evaluations saved (same sets, same items), as the gate compares rivals."""
    params = recipe_params(config, reference, extra)
    registry = params.registry
    sets = primary_sets(params.eval.sets, registry.primary_metric)

    def student_items(recipe: str):
        metrics = Path(recipe_params(config, recipe, extra).paths.metrics)
        return role_items(load_per_item(metrics / PER_ITEM_FILE), "student", params.eval.sets)

    rival = student_items(reference)
    lines = [f"distilled − distilled `{reference}` on {registry.primary_metric}:"]
    for recipe in recipes:
        if recipe != reference:
            interval = paired_bootstrap(student_items(recipe), rival, sets, registry.bootstrap_resamples,
                                        registry.confidence, params.seed)
            lines.append(f"- {recipe}: {interval}")
    return lines


def render(path: Path, quality: list[str]) -> list[str]:
    data = json.loads(path.read_text())
    return table(data["rows"], quality)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["default", "benchmark"], default="default")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, from: {', '.join(RECIPES)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="applied to every recipe")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="comma-separated steps per recipe; 'evaluate' re-scores each recipe's saved student")
    parser.add_argument("--out", type=Path, help="results JSON (default bench/out/ablation/<config>.json)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="print the table of an earlier run's bench/out/ablation/<config>.json, run nothing")
    parser.add_argument("--versus", metavar="RECIPE",
                        help="after the table: each recipe's distilled student against this recipe's (paired bootstrap)")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.render:
        params = recipe_params(args.config, next(iter(RECIPES)), args.set)
        print("\n".join(render(args.render, [f"{s.name}/{s.primary_metric}" for s in params.eval.sets
                                             if s.in_mean_score])))
        if args.versus:
            recipes = [row["recipe"] for row in json.loads(args.render.read_text())["rows"]]
            print("\n" + "\n".join(versus(args.config, recipes, args.versus, args.set)))
        return 0
    recipes = args.recipes.split(",")
    unknown = [r for r in recipes + ([args.versus] if args.versus else []) if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown}; choose from {list(RECIPES)}")
    steps = args.steps.split(",")
    if unknown_steps := [s for s in steps if s not in STEPS]:
        parser.error(f"unknown steps {unknown_steps}; choose from {', '.join(STEPS)}")
    command = f"python bench/ablation.py --config {args.config} --recipes {args.recipes}" + "".join(
        f" --set {s}" for s in args.set) + (f" --steps {args.steps}" if args.steps != parser.get_default("steps")
                                            else "") + (f" --out {args.out}" if args.out else "")
    started = provenance(command, ROOT)  # the code that runs is the code at the start, whatever is committed later
    rows, timings = [], {}
    for index, recipe in enumerate(recipes, start=1):
        params = recipe_params(args.config, recipe, args.set)
        print(f"\n== recipe {index}/{len(recipes)}: {recipe} ==", flush=True)
        seconds = {}
        with pipeline_lock(params.paths.lock):
            for step in steps:
                start = time.perf_counter()
                run_step(step, params)
                seconds[step] = round(time.perf_counter() - start, 1)
            experiment = save_recipe(args.config, recipe, args.set, params)
        print(f"DVC experiment {experiment.name} ({experiment.rev[:8]}): `dvc exp show`", flush=True)
        timings[recipe] = seconds
        m = json.loads((Path(params.paths.metrics) / "eval.json").read_text())
        rows.append(row(recipe, params, m))
        # The table so far after every recipe: a long ablation shows its results as it goes.
        quality = [f"{s.name}/{s.primary_metric}" for s in params.eval.sets if s.in_mean_score]
        lines = table(rows, quality)
        lines.append("")
        lines.append("seconds per recipe and step: " + "; ".join(
            f"{k}: " + ", ".join(f"{step} {s:.0f}" for step, s in v.items()) for k, v in timings.items()))
        done = "" if index == len(recipes) else f" (partial: {index} of {len(recipes)} recipes)"
        print(f"\n{started}{done}\n\n" + "\n".join(lines), flush=True)
        out = args.out or ROOT / f"bench/out/ablation/{args.config}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": command, "rows": rows, "timings": timings}, indent=2))
    if args.versus:
        print("\n" + "\n".join(versus(args.config, recipes, args.versus, args.set)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
