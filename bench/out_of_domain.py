"""Out-of-domain check of a recipe (issue #21): does distilling on the BBC corpus cost the student
anything outside it?

    python bench/out_of_domain.py [--recipe params/full.yaml] [--steps prepare,label,train,evaluate] [--set key=value ...]

Trains the recipe exactly as ``python -m distill ... --params params.yaml --params <recipe>`` does (its own
corpus, labels from the shared label cache), outputs under ``bench/out/out_of_domain/``, and evaluates
teacher, undistilled and distilled student on the benchmark sets of ``params/benchmark.yaml`` (STS-B
test, the MS MARCO and DBpedia samples in ``../shared/data``), none of which chose a recipe. Prints, per
set, distilled − undistilled with the run's paired bootstrap interval and whether its lower bound is at
least −0.5 (the issue's no-harm target), headed by the commit and command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill.config.loader import load_params, read_params_file
from distill.evaluation.gate import interval_text
from distill.pipeline import run_step
from distill.services.dvc_experiments import provenance

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("bench/out/out_of_domain")
BENCHMARK = ROOT / "params/benchmark.yaml"
NO_HARM = -0.5  # lowest acceptable lower bound of distilled − undistilled, in metric points


def recipe_params(recipe: Path, extra: list[str]):
    paths = {"prepared": OUT / "prepared", "mined": OUT / "mined", "student": OUT / "student",
             "metrics": OUT / "metrics", "reports": OUT / "reports", "plots": OUT / "plots"}
    benchmark = read_params_file(BENCHMARK)
    overrides = [f"paths.{k}={v}" for k, v in paths.items()] + [
        f"paths.eval_data={benchmark['paths']['eval_data']}",
        "eval.sets=" + json.dumps(benchmark["eval"]["sets"]), "export.formats=[]"]
    return load_params([ROOT / "params.yaml", ROOT / recipe], overrides + extra)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="params/full.yaml", type=Path)
    parser.add_argument("--steps", default="prepare,label,train,evaluate")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    params = recipe_params(args.recipe, args.set)
    for step in filter(None, args.steps.split(",")):
        run_step(step, params)
    flat = json.loads((Path(params.paths.metrics) / "eval.json").read_text())
    print("\n" + provenance(f"python {' '.join(sys.argv)}", ROOT) + "\n")
    print("| set | metric | teacher | undistilled | distilled | distilled − undistilled [95%] | LB ≥ −0.5 |")
    print("|---|---|---|---|---|---|---|")
    for spec in (s for s in params.eval.sets if s.in_mean_score):
        key = f"{spec.name}/{spec.primary_metric}"
        low = flat[f"student/vs_baseline/{spec.name}/low"]
        print(f"| {spec.name} | {spec.primary_metric} | {flat[f'teacher/{key}']:.2f} | {flat[f'baseline/{key}']:.2f} "
              f"| {flat[f'student/{key}']:.2f} | {interval_text(flat, f'student/vs_baseline/{spec.name}')} "
              f"| {'yes' if low >= NO_HARM else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
