"""Scaling study: how much of the teacher's in-domain lead the student takes, against the
teacher-labelled text it learns from and the training compute it spends.

    python bench/scaling.py [--points a,b,...] [--steps prepare,label,train,evaluate] [--set key=value ...]
                            [--results bench/out/scaling/<name>.json]
    python bench/scaling.py --render bench/out/scaling/results.json     # table and plot of an earlier run

Every point is ``params.yaml`` plus overrides: a training-text size (``default``: the corpus of
``params.yaml``, 645 training articles, their first 2 passages; ``half`` and ``all`` add every passage
of every second / every training-eligible BBC article through a ``train_only`` source, which never
reads a held-out article, so every point is scored on the same documents) and an objective family:

- ``queries``: MarginMSE on teacher-mined candidates of headline and inverse-cloze queries, inside
  MatryoshkaLoss (the shipped recipe until ``queries+inbatch`` measured better on dev);
- ``align``: embedding alignment only, the cosine to the teacher's embedding of every labelled
  training passage through a least-squares-initialised projection into the teacher's space
  (LEAF-style, https://arxiv.org/abs/2509.12539: texts only, no queries or negatives);
- ``align-all``: the same alignment on every labelled text, the training queries too (``train.mode:
  asymmetric`` adds their teacher embeddings to the text objective);
- ``align+queries``: both, weight 1 each, without MatryoshkaLoss (``align+queries-matryoshka`` keeps it
  around the margins, as the shipped recipe does);
- ``align-head`` and ``align-all-head``: ``align`` and ``align-all`` with the projection a training head
  only (``student.drop_projection``), removed after training, so the student keeps its own space;
- ``static``: the static student of ``params/static.yaml`` (a Model2Vec distillation of the teacher,
  regressed onto the teacher's embeddings of every labelled text), whose undistilled baseline is its
  plain distillation; ``static-lr1e-3``, ``static-lr5e-2`` and ``static-20ep`` vary its learning rate
  and epochs, to choose them on dev;
- ``queries+inbatch`` (the shipped recipe with three negatives, 16 queries a batch) and ``inbatch``: the
  teacher's distribution of each query over every passage of the batch (``in_batch_kl``, TAS-B's
  in-batch supervision, from the cached teacher embeddings), beside those margins and alone, both in
  MatryoshkaLoss;
- ``queries+inbatch-bs32`` and ``queries+inbatch-2ep``: that pair with 32 queries a batch (128 in-batch
  passages) or two epochs; ``queries+inbatch-neg1`` and ``queries+inbatch-bs32-neg1``: one mined negative a
  query instead of three (40% less student compute a query), at 16 or 32 queries a batch (the latter is
  ``params.yaml``'s recipe since it measured level on dev, also at ``-seed1`` … ``-seed3``);
- ``queries-seed1`` … ``queries-seed3`` (and ``queries+inbatch-seed1`` …): the recipe at other training
  seeds (``train.seed``), the run-to-run spread of one recipe; ``queries-soup4``: the average of those four students' weights (a
  uniform model soup), trained by nothing else, so its cost is theirs together.

Each point is evaluated on the test sets of ``params.yaml`` and the dev sets of ``params/dev.yaml`` at
once (one run, the same texts for teacher, undistilled and distilled student). Recipes are chosen on
the dev columns; the test columns report. Per half: the share of the teacher's lead the student takes,
``(student − undistilled) / (teacher − undistilled)`` on the mean score, with the paired bootstrap
interval of the difference divided by the lead. Cost per point: training articles, passages and
queries, teacher-labelled texts and the teacher seconds they cost (texts x the teacher's seconds per
text, timed on a fixed sample in this run), and training steps and seconds.

Writes ``bench/out/scaling/results.json`` (or ``--results``) after every point (a long study shows its results as it
goes, and rows of points an earlier run measured are kept, each with the commit and command it came
from), prints the table, and draws ``bench/plots/scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from distill.config.eval_sets import EvalConfig
from distill.config.loader import load_params, read_params_file
from distill.encoding import teacher_encoder
from distill.evaluation.gate import paired_bootstrap
from distill.evaluation.items import primary_sets, role_items
from distill.pipeline import run_step
from distill.readers import PER_ITEM_FILE, load_corpus, load_per_item, load_queries
from distill.sampling import spread_sample
from distill.services.dvc_experiments import provenance
from distill.training.objectives import objectives, weights_override

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("bench/out/scaling")
PLOT = Path("bench/plots/scaling.png")

DEFAULT_SOURCE = "{type: bbc, unit: passage, max_units_per_document: 2}"
TEXT_SIZES = {
    "default": [],
    "half": [f"corpus.sources=[{DEFAULT_SOURCE}, {{type: bbc, unit: passage, train_only: true, max_documents: 1112}}]"],
    "all": [f"corpus.sources=[{DEFAULT_SOURCE}, {{type: bbc, unit: passage, train_only: true}}]"],
}
# Overrides merge into params.yaml's train.objectives key by key: each family names every weight. The
# families below were measured with three mined negatives at 16 queries a batch (params.yaml's until the
# -neg1 points below chose one at 32), and say so, so that each point reruns as it was measured.
THREE_NEGATIVES = ["mining.negatives=3", "train.candidate_batch_size=16"]
OBJECTIVES = {
    # MarginMSE alone, params.yaml's recipe until in_batch_kl joined it.
    "queries": [*THREE_NEGATIVES, weights_override(margin_mse=1.0)],
    "align": [*THREE_NEGATIVES, weights_override(cosine=1.0), "train.matryoshka_dims=[]"],
    # Every labelled text: the training queries' teacher embeddings too (train.mode asymmetric adds them
    # to the text objective), as LEAF aligns whatever text the teacher embedded.
    "align-all": [*THREE_NEGATIVES, weights_override(cosine=1.0), "train.matryoshka_dims=[]", "train.mode=asymmetric"],
    "align+queries": [*THREE_NEGATIVES, weights_override(cosine=1.0, margin_mse=1.0), "train.matryoshka_dims=[]"],
    # MatryoshkaLoss on the margins asks the first 64/128/256 dims of the projected (teacher-space) output
    # to rank alone, which the teacher's own coordinates do not: it fights the alignment.
    "align+queries-matryoshka": [*THREE_NEGATIVES, weights_override(cosine=1.0, margin_mse=1.0)],
}
# Alignment through a projection head dropped after training (student.drop_projection, as the static
# student trains): the teacher's coordinates shape the student, which keeps its own space.
OBJECTIVES.update({
    "align-head": [*OBJECTIVES["align"], "student.drop_projection=true"],
    "align-all-head": [*OBJECTIVES["align-all"], "student.drop_projection=true"],
})
# The static student (params/static.yaml, issue #23): judged against its plain Model2Vec distillation, so
# the share is of the teacher's lead over that; the variants choose its learning rate and epochs on dev.
STATIC_RECIPE = "params/static.yaml"
OBJECTIVES.update({
    "static": [],
    "static-lr1e-3": ["train.learning_rate=0.001"],
    "static-lr5e-2": ["train.learning_rate=0.05"],
    "static-20ep": ["train.epochs=20"],
})
# The teacher's in-batch distribution over every passage of the batch (in_batch_kl, from its cached
# embeddings: no teacher cost), beside the shipped margins (TAS-B's dual supervision) and alone.
OBJECTIVES.update({
    "queries+inbatch": [*THREE_NEGATIVES, weights_override(margin_mse=1.0, in_batch_kl=1.0)],
    "inbatch": [*THREE_NEGATIVES, weights_override(in_batch_kl=1.0)],
})
# The in-batch KL with more in-batch passages (32 queries a batch: 128 passages, half the steps) and with
# a second epoch (new batches, so new in-batch negatives): where its teacher signal per query could grow.
OBJECTIVES.update({
    "queries+inbatch-bs32": [*OBJECTIVES["queries+inbatch"], "train.candidate_batch_size=32"],
    "queries+inbatch-2ep": [*OBJECTIVES["queries+inbatch"], "train.epochs=2"],
})
# Cheaper steps for a 2-core make run: one mined negative a query instead of three (3 texts a query, not
# 5: 40% less student compute), at 16 queries a batch (32 in-batch passages, the same 72 steps) or 32
# (64 in-batch passages as now, 36 steps).
OBJECTIVES.update({
    "queries+inbatch-neg1": [*OBJECTIVES["queries+inbatch"], "mining.negatives=1"],
    "queries+inbatch-bs32-neg1": [*OBJECTIVES["queries+inbatch-bs32"], "mining.negatives=1"],
})
# MarginMSE alone, queries+inbatch and params.yaml's recipe since 6947df3 at three more training seeds
# (train.seed: the split, labels and evaluation stay as they are): a recipe's run-to-run spread, the
# noise every difference is read against.
OBJECTIVES.update({f"{family}-seed{seed}": [*OBJECTIVES[family], f"train.seed={seed}"]
                   for family in ("queries", "queries+inbatch", "queries+inbatch-bs32-neg1") for seed in (1, 2, 3)})
# Averages of trained points' weights (a uniform model soup, Wortsman et al., 2022,
# https://arxiv.org/abs/2203.05482): run after the points they average, which must be of the same size.
SOUPS = {"queries-soup4": ["queries", "queries-seed1", "queries-seed2", "queries-seed3"]}
OBJECTIVES.update({name: [] for name in SOUPS})
POINTS = {f"{size}/{objective}": (size, objective) for size in TEXT_SIZES for objective in OBJECTIVES}
TEACHER_SAMPLE = 64  # training passages timed through the teacher (no cache) for its seconds per text


def point_params(point: str, extra: list[str]):
    size, objective = POINTS[point]
    data = OUT / f"data-{size}"
    run = OUT / point.replace("/", "-")
    paths = {"prepared": data / "prepared", "mined": data / "mined", "student": run / "student",
             "metrics": run / "metrics", "reports": run / "reports", "plots": run / "plots"}
    dev_sets = read_params_file(ROOT / "params/dev.yaml")["eval"]["sets"]
    test_sets = [s.model_dump(mode="json") for s in EvalConfig().sets]
    sets = "eval.sets=" + json.dumps(test_sets + dev_sets)
    # No exports: the study compares recipes (bench/RESULTS.md's frontier measures the exports).
    overrides = [f"paths.{k}={v}" for k, v in paths.items()] + [
        sets, "eval.throughput_repeats=1", "eval.throughput_texts=64", "eval.throughput_warmup=16", "export.formats=[]"]
    files = [ROOT / "params.yaml", *([ROOT / STATIC_RECIPE] if objective.startswith("static") else [])]
    return load_params(files, overrides + TEXT_SIZES[size] + OBJECTIVES[objective] + extra)


def halves(params) -> dict[str, list]:
    quality = [s for s in params.eval.sets if s.in_mean_score]
    return {half: [s for s in quality if getattr(s, "heldout_half", None) == half] for half in ("dev", "test")}


def lead_share(params, flat: dict, items: dict, specs: list) -> dict:
    """Mean score of each role over ``specs``, and the share of the teacher's lead the student takes."""
    means = {role: float(np.mean([flat[f"{role}/{s.name}/{s.primary_metric}"] for s in specs]))
             for role in ("teacher", "baseline", "student")}
    registry = params.registry
    interval = paired_bootstrap(role_items(items, "student", specs), role_items(items, "baseline", specs),
                                primary_sets(specs, "mean_score"), registry.bootstrap_resamples, registry.confidence,
                                params.seed)
    lead = means["teacher"] - means["baseline"]
    per_set = {s.name: [flat[f"student/vs_baseline/{s.name}/{k}"] for k in ("difference", "low", "high")]
               for s in specs if f"student/vs_baseline/{s.name}/low" in flat}
    per_set_lead = {s.name: flat[f"teacher/{s.name}/{s.primary_metric}"] - flat[f"baseline/{s.name}/{s.primary_metric}"]
                    for s in specs if s.name in per_set}
    per_set_share = {name: [100 * v / lead_of for v in per_set[name]] for name, lead_of in per_set_lead.items()}
    return {**means, "lead": lead, "difference": [interval.difference, interval.low, interval.high],
            "share_pct": [100 * v / lead for v in (interval.difference, interval.low, interval.high)],
            "per_set": per_set, "per_set_lead": per_set_lead, "per_set_share_pct": per_set_share}


def analysed(row: dict, extra: list[str]) -> dict:
    """``row`` (a point's provenance and cost) with its dev and test columns, computed from the
    evaluation files the point left, so rows of earlier runs are read the same way as new ones."""
    params = point_params(row["point"], extra)
    flat = json.loads((Path(params.paths.metrics) / "eval.json").read_text())
    items = load_per_item(Path(params.paths.metrics) / PER_ITEM_FILE)
    s_per_text = row.get("teacher_seconds_per_text") or row["cost"]["teacher_seconds"] / row["cost"]["teacher_texts"]
    return {**{k: v for k, v in row.items() if k not in ("dev", "test")}, "teacher_seconds_per_text": s_per_text,
            "cost": cost(params, row["seconds"], s_per_text),
            **{half: lead_share(params, flat, items, specs) for half, specs in halves(params).items()}}


def souped(params, members: list) -> None:
    """The average of ``members``' trained weights as ``params``' student; its summary counts their steps."""
    import torch
    from sentence_transformers import SentenceTransformer

    from distill.atomic import atomic_dir, write_json
    from distill.student import DISTILLATION_FILE

    models = [SentenceTransformer(m.paths.student) for m in members]
    states = [m.state_dict() for m in models]
    soup = models[0]
    soup.load_state_dict({k: torch.stack([s[k] for s in states]).mean(0) if states[0][k].is_floating_point()
                          else states[0][k] for k in states[0]})
    summaries = [json.loads((Path(m.paths.student) / DISTILLATION_FILE).read_text()) for m in members]
    summary = {**summaries[0], "train_steps": sum(s["train_steps"] for s in summaries),
               "seed": [s["seed"] for s in summaries], "soup_of": [m.paths.student for m in members]}
    with atomic_dir(Path(params.paths.student)) as staging:
        soup.save(str(staging))
        write_json(staging / DISTILLATION_FILE, summary)


def teacher_seconds_per_text(params) -> float:
    """The teacher's seconds per training passage, encoding a fixed sample with no cache."""
    corpus = load_corpus(params.paths.prepared)
    sample = spread_sample(corpus[corpus["split"] == "train"], TEACHER_SAMPLE, params.seed, "scaling/teacher")
    model = teacher_encoder(params, params.paths.teacher_cache).model
    texts = sample["text"].tolist()
    model.encode(texts[:8], batch_size=params.teacher.batch_size)  # warm-up
    start = time.perf_counter()
    model.encode(texts, batch_size=params.teacher.batch_size)
    return (time.perf_counter() - start) / len(texts)


def cost(params, seconds: dict, teacher_s_per_text: float) -> dict:
    corpus = load_corpus(params.paths.prepared)
    train = corpus[corpus["split"] == "train"]
    queries = load_queries(params.paths.prepared)
    summary = json.loads((Path(params.paths.student) / "distillation.json").read_text())
    # The texts this point's objectives read: passages, and the queries where they are trained on.
    labelled = len(train) + (len(queries) if params.train.uses(objectives("candidates")) or params.train.mode == "asymmetric"
                             else 0)
    return {"articles": int(train["doc_id"].nunique()), "passages": len(train), "queries": len(queries),
            "teacher_texts": labelled, "teacher_seconds": round(labelled * teacher_s_per_text),
            "train_steps": summary["train_steps"], "train_seconds": seconds.get("train")}


def table(rows: list[dict]) -> list[str]:
    lines = ["| point | articles | passages | queries | teacher texts (s) | steps | train s | dev: share of lead [95% CI] "
             "| test: distilled − undistilled [95% CI] | test: share of lead [95% CI] | test per set: share of lead |",
             "|---|" + "---|" * 10]
    for r in rows:
        c, dev, test = r["cost"], r["dev"], r["test"]
        share = lambda h: "{:.0f}% [{:.0f}, {:.0f}]".format(*h["share_pct"])  # noqa: E731
        per_set = ", ".join(f"{n.removeprefix('bbc_')} {v[0]:.0f}%" if test["per_set_lead"][n] > 0
                            else f"{n.removeprefix('bbc_')} {test['per_set'][n][0]:+.2f} (no lead)"
                            for n, v in test["per_set_share_pct"].items())
        lines.append(f"| {r['point']} | {c['articles']} | {c['passages']} | {c['queries']} | {c['teacher_texts']} "
                     f"({c['teacher_seconds']}) | {c['train_steps']} | {c['train_seconds'] or 'not run'} | {share(dev)} | "
                     "{:+.2f} [{:+.2f}, {:+.2f}] | ".format(*test["difference"]) + f"{share(test)} | {per_set} |")
    if rows:
        t = rows[0]["test"]
        lines.append(f"\nTest documents: teacher {t['teacher']:.2f}, undistilled {t['baseline']:.2f} mean score "
                     f"(lead {t['lead']:.2f}); dev: teacher {rows[0]['dev']['teacher']:.2f}, undistilled "
                     f"{rows[0]['dev']['baseline']:.2f}.")
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    # A recipe's seeds are one series: their spread at one x is its run-to-run noise.
    frame = pd.DataFrame([{"objective": re.sub(r"-seed\d+$", "", r["point"].split("/")[1]),
                           "teacher_texts": r["cost"]["teacher_texts"],
                           "train_seconds": r["cost"]["train_seconds"], "share": r["test"]["share_pct"][0],
                           "low": r["test"]["share_pct"][1], "high": r["test"]["share_pct"][2]} for r in rows])
    for axis, x, label in ((axes[0], "teacher_texts", "teacher-labelled training texts (passages, and queries where used)"),
                           (axes[1], "train_seconds", "training seconds (2-core CPU)")):
        for objective, group in frame.groupby("objective"):
            group = group.sort_values(x)
            axis.errorbar(group[x], group["share"], yerr=[group["share"] - group["low"], group["high"] - group["share"]],
                          marker="o", capsize=3, label=objective)
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.axhline(50, color="grey", linewidth=0.8, linestyle="--")
        axis.set_xlabel(label)
    axes[0].set_ylabel("share of the teacher's lead taken, test documents (%)")
    axes[0].legend(title="objective")
    fig.suptitle("Distilled − undistilled student on the test documents, over the teacher's lead (95% bootstrap)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_path(results: Path) -> Path:
    return PLOT if results.stem == "results" else PLOT.with_name(f"scaling-{results.stem}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default=",".join(POINTS), help=f"comma-separated, from: {', '.join(POINTS)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="applied to every point")
    parser.add_argument("--steps", default="prepare,label,train,evaluate",
                        help="comma-separated steps per point; 'evaluate' re-scores each point's saved student")
    parser.add_argument("--render", type=Path, metavar="JSON", help="table and plot of an earlier run, run nothing")
    parser.add_argument("--results", type=Path, default=OUT / "results.json",
                        help="where rows are kept and added; another name draws bench/plots/scaling-<name>.png")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.render:
        rows = [analysed(row, args.set) for row in json.loads(args.render.read_text())["rows"]]
        print("\n".join(table(rows)))
        plot(rows, plot_path(args.render))
        return 0
    points = args.points.split(",")
    if unknown := [p for p in points if p not in POINTS]:
        parser.error(f"unknown points {unknown}; choose from {list(POINTS)}")
    command = f"python bench/scaling.py --points {args.points}" + "".join(f" --set {s}" for s in args.set) + (
        f" --steps {args.steps}" if args.steps != parser.get_default("steps") else "") + (
        f" --results {args.results}" if args.results != parser.get_default("results") else "")
    started = provenance(command, ROOT)
    # Points measured by earlier runs stay in the results, each row with its own provenance, so a
    # study can be run in parts; a point run again replaces its row.
    results = ROOT / args.results
    saved = json.loads(results.read_text()) if results.is_file() else {"rows": []}
    earlier = {r["point"]: {"provenance": saved.get("provenance"), **r} for r in saved["rows"]}
    teacher_s_per_text = None
    for index, point in enumerate(points, start=1):
        params = point_params(point, args.set)
        print(f"\n== point {index}/{len(points)}: {point} ==", flush=True)
        seconds = {}
        size, objective = POINTS[point]
        for step in args.steps.split(","):
            start = time.perf_counter()
            if objective in SOUPS and step == "train":
                members = [f"{size}/{member}" for member in SOUPS[objective]]
                souped(params, [point_params(m, args.set) for m in members])
                seconds[step] = round(sum(earlier[m]["seconds"]["train"] for m in members), 1)
                continue
            run_step(step, params)
            seconds[step] = round(time.perf_counter() - start, 1)
        if teacher_s_per_text is None:
            teacher_s_per_text = teacher_seconds_per_text(params)
        earlier[point] = {"point": point, "provenance": started, "seconds": seconds,
                          "teacher_seconds_per_text": teacher_s_per_text}
        rows = [analysed(earlier[p], args.set) for p in POINTS if p in earlier]
        done = "" if index == len(points) else f" (partial: {index} of {len(points)} points)"
        print(f"\n{started}{done}; teacher {teacher_s_per_text:.3f} s per training passage\n\n" + "\n".join(table(rows)),
              flush=True)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps({"teacher_seconds_per_text": teacher_s_per_text, "rows": rows}, indent=2))
        plot(rows, ROOT / plot_path(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
