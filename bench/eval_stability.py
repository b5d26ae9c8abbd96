"""How much the seeds of the labelled sets' protocols move their scores, and what averaging leaves.

    python bench/eval_stability.py [--params FILE ...] [--set key=value ...] [--seeds 8]

Run after the evaluate step: it reads the prepared corpus, the distilled student and the evaluation
cache named in params. For the undistilled and the distilled student, and their difference, at each
of ``--seeds`` seeds: the clustering set's V-measure from one k-means fit and from the set's
``kmeans_runs``-fit average (disjoint fits: base seeds ``kmeans_runs`` apart); the classification
set's accuracy from one draw of its folds and from its ``repeats``-draw average. Min, max and spread
per row. The bootstrap interval resamples texts for fixed fits and folds, so the spread across seeds
is noise it does not see.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from distill.config.loader import load_params
from distill.encoding import Encoder
from distill.evaluation.labelled import ClassificationSet, ClusteringSet
from distill.evaluation.registry import EVALUATORS
from distill.models import load_model
from distill.readers import load_corpus
from distill.services.dvc_experiments import provenance
from distill.student import base_student

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", action="append", default=[], metavar="FILE", help="layered on params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    os.chdir(ROOT)
    params = load_params([ROOT / "params.yaml", *args.params], args.set)
    clustering = next((s for s in params.eval.sets if isinstance(s, ClusteringSet)), None)
    classification = next((s for s in params.eval.sets if isinstance(s, ClassificationSet)), None)
    if clustering is None and classification is None:
        parser.error("params configure no clustering or classification set")
    corpus = load_corpus(params.paths.prepared)
    heldout, text_type = corpus[corpus["split"] == "heldout"], params.corpus.text_type
    kwargs = dict(cache_root=Path(params.paths.eval_cache), prompts=params.student.prompts,
                  batch_size=params.eval.batch_size, show_progress=False)
    students = {
        "undistilled": Encoder(model=base_student(params), name="baseline", **kwargs),
        "distilled": Encoder(model=load_model(params.paths.student, field="paths.student"), name="student", **kwargs),
    }
    seeds = range(args.seeds)

    def scores_at_seeds(spec, field: str, count: int, seed_of) -> dict[str, np.ndarray]:
        """Each student's primary metric on ``spec`` with ``field`` set to ``count``, at every seed."""
        varied = spec.model_copy(update={field: count})
        return {name: np.array([EVALUATORS[spec.type].load(varied, heldout, seed_of(seed), text_type)(encoder)
                                .scores[spec.primary_metric] for seed in seeds]) for name, encoder in students.items()}

    tables = []  # (title, what is averaged, {(model, how many averaged): scores per seed})
    if clustering is not None:
        frame = EVALUATORS["clustering"].load(clustering, heldout, params.seed, text_type).frame
        scores = {(name, fits): values for fits in (1, clustering.kmeans_runs)  # base seeds `fits` apart: disjoint
                  for name, values in scores_at_seeds(clustering, "kmeans_runs", fits, lambda s, f=fits: s * f).items()}
        tables.append((f"{clustering.name}: {len(frame)} texts, k = {frame['label'].nunique()}, V-measure",
                       "k-means fits", scores))
    if classification is not None:
        scores = {(name, repeats): values for repeats in (1, classification.repeats)
                  for name, values in scores_at_seeds(classification, "repeats", repeats, lambda s: s).items()}
        tables.append((f"{classification.name}: accuracy, {classification.folds} folds", "draws of the folds", scores))
    print(provenance("python bench/eval_stability.py" + "".join(f" --params {p}" for p in args.params)
                     + "".join(f" --set {s}" for s in args.set) + f" --seeds {args.seeds}", ROOT))
    for title, averaged, scores in tables:
        print(f"\n{title}, at {args.seeds} seeds\n")
        print(f"| model | {averaged} per score | scores | min | max | spread |\n|---|---|---|---|---|---|")
        counts = sorted({n for _, n in scores})
        rows = [(name, n, scores[name, n]) for n in counts for name in students]
        rows += [("distilled − undistilled", n, scores["distilled", n] - scores["undistilled", n]) for n in counts]
        for name, n, values in rows:
            print(f"| {name} | {n} | {' '.join(f'{v:.2f}' for v in values)} | {values.min():.2f} | "
                  f"{values.max():.2f} | {values.max() - values.min():.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
