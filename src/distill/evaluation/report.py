"""Evaluation outputs: flat metrics for ``dvc metrics show``, per-item scores, a Markdown report and
plots, all staged first and renamed into place together, so a failure leaves the old set whole."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from distill.atomic import atomic_dir, atomic_files, write_json  # noqa: E402
from distill.config.schema import ExportFormat, Params, export_role  # noqa: E402
from distill.evaluation.gate import (
    Interval,  # noqa: E402
    interval_text,
)
from distill.readers import PER_ITEM_FILE  # noqa: E402
from distill.student import describe  # noqa: E402

ROLE_LABELS = {"teacher": "teacher", "baseline": "undistilled student", "student": "distilled student"}
EXPORT_LABELS = {"onnx": "ONNX fp32", "onnx_int8": "ONNX Runtime int8 (dynamic)",
                 "openvino_int8": "OpenVINO int8 (static, calibrated)"}
assert set(EXPORT_LABELS) == set(ExportFormat.__args__), "every export format needs a label"


def role_labels(flat: dict) -> dict[str, str]:
    """Every model this evaluation measured, in table order: the three models, then each export."""
    exports = {export_role(fmt): f"distilled student, {label}" for fmt, label in EXPORT_LABELS.items()}
    return {role: label for role, label in {**ROLE_LABELS, **exports}.items() if f"{role}/texts_per_s" in flat}


def verdict(params: Params, flat: dict, versus_baseline: Interval) -> str:
    """The report's first line: does the distilled student beat the undistilled one beyond noise?"""
    metric = params.registry.primary_metric
    values = f"{flat[f'student/{metric}']:.2f} vs {flat[f'baseline/{metric}']:.2f}"
    if versus_baseline.low > params.registry.min_improvement:
        line = (f"**The distilled student beats the undistilled student beyond noise** on `{metric}`: {values}, "
                f"difference {versus_baseline}.")
    else:
        line = (f"**The distilled student does NOT beat the undistilled student beyond noise** on `{metric}`: "
                f"{values}, difference {versus_baseline}. The registry gate will not promote it.")
    return line + per_set_differences(params, flat)


def per_set_differences(params: Params, flat: dict) -> str:
    """Each quality set's own distilled − undistilled interval (evaluate writes one per quality set)."""
    names = [s.name for s in params.eval.sets if s.in_mean_score and f"student/vs_baseline/{s.name}/low" in flat]
    if not names:
        return ""
    cells = [f"`{n}` {interval_text(flat, f'student/vs_baseline/{n}')}" for n in names]
    return " Per set: " + "; ".join(cells) + "."


def results_table(params: Params, flat: dict) -> pd.DataFrame:
    """One row per model: every set metric, mean score, retained %, texts/s, speed-up, size."""
    rows = []
    for role, label in role_labels(flat).items():
        row: dict[str, object] = {"model": label}
        for spec in params.eval.sets:
            for key in sorted(k for k in flat if k.startswith(f"student/{spec.name}/")):
                row[key.removeprefix("student/")] = flat.get(f"{role}/{key.removeprefix('student/')}")
        row["mean score"] = flat.get(f"{role}/mean_score")
        row["retained %"] = flat.get(f"{role}/retained_pct/mean_score", 100.0 if role == "teacher" else None)
        row["texts/s (min–max)"] = (f"{flat[f'{role}/texts_per_s']:.1f} "
                                    f"({flat[f'{role}/texts_per_s_min']:.1f}–{flat[f'{role}/texts_per_s_max']:.1f})")
        row["speed-up"] = flat.get(f"{role}/speedup", 1.0)
        row["params (M)"] = flat[f"{role}/parameters"] / 1e6
        row["size (MB)"] = flat[f"{role}/size_mb"]
        if f"{role}/vs_student/low" in flat:
            row["vs distilled fp32"] = interval_text(flat, f"{role}/vs_student")
        rows.append(row)
    return pd.DataFrame(rows)


def truncated_dims(flat: dict) -> list[int]:
    """The Matryoshka dimensions the student was scored at (eval.json's ``student_dim<d>/…`` keys), widest first."""
    return sorted({int(k.split("/")[0].removeprefix("student_dim")) for k in flat if k.startswith("student_dim")},
                  reverse=True)


def variants_table(flat: dict) -> pd.DataFrame:
    """The distilled student served other ways (truncated Matryoshka dims, student queries × teacher
    documents) and BM25 on the retrieval sets; one row each, same metric columns as the main table
    where they exist."""
    rows = []
    for dim in truncated_dims(flat):
        prefix = f"student_dim{dim}"
        row = {"variant": f"distilled, first {dim} dims"}
        row.update({k.removeprefix(prefix + "/"): v for k, v in flat.items() if k.startswith(prefix + "/")})
        rows.append(row)
    bm25 = {k.removeprefix("bm25/"): v for k, v in flat.items() if k.startswith("bm25/")}
    if bm25:
        rows.append({"variant": "BM25 (lexical reference, no neural model)", **bm25})
    asymmetric = {k.removeprefix("asymmetric/"): v for k, v in flat.items() if k.startswith("asymmetric/")}
    if asymmetric:
        row = {"variant": "distilled queries × teacher documents"}
        row.update({k.replace("retained_pct/", "retained % ") if k.startswith("retained_pct/") else k: v
                    for k, v in asymmetric.items()})
        row["query-side speed-up"] = flat.get("student/speedup")
        rows.append(row)
    return pd.DataFrame(rows)


def variants_section(flat: dict) -> str:
    variants = variants_table(flat)
    if variants.empty:
        return ""
    return ("\n## The distilled student served other ways, and BM25\n\nTruncated to its Matryoshka dimensions, encoding "
            "only the queries against the teacher's documents (asymmetric use), and BM25 on the same retrieval "
            "sets as the no-neural reference.\n\n" + markdown_table(variants) + "\n")


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table (tabulate's pipe format): scores to 2 decimals, "—" where missing."""
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, floatfmt=".2f", missingval="—")


def speed_quality_plot(speed: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for _, row in speed.iterrows():
        ax.errorbar(row["texts/s"], row["mean score"],
                    xerr=[[row["texts/s"] - row["texts/s min"]], [row["texts/s max"] - row["texts/s"]]],
                    fmt="o", markersize=8, capsize=3,
                    label=f"{row['model']} ({row['texts/s']:.0f}/s, {row['mean score']:.2f})")
    ax.set_xlim(left=0)
    ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("encode throughput (texts/s, median and range of the repeats)")
    ax.set_ylabel("mean score over quality sets")
    ax.set_title("Speed vs quality")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fidelity_plot(pairs: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(pairs["teacher_cosine"], pairs["student_cosine"], s=3, alpha=0.3)
    low = float(min(pairs.min().min(), 0)) if len(pairs) else 0.0
    ax.plot([low, 1], [low, 1], color="grey", linewidth=1)
    ax.set_xlabel("teacher cosine")
    ax.set_ylabel("distilled student cosine")
    ax.set_title("Pairwise similarity of held-out texts")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def training_plot(train_csv: Path, eval_csv: Path, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for csv_path, column, label in ((train_csv, "loss", "train"), (eval_csv, "eval_loss", "held-out")):
        if csv_path.is_file():
            curve = pd.read_csv(csv_path)
            if len(curve):
                ax.plot(curve["step"], curve[column], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title("Training loss")
    if ax.get_legend_handles_labels()[0]:  # a run killed before its first logged step has no curve
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def heldout_line(params: Params) -> str:
    """Which held-out documents each corpus set reads, and so which documents chose the recipe."""
    halves: dict[str, list[str]] = {}
    for spec in params.eval.sets:
        if hasattr(spec, "heldout_half") and getattr(spec, "path", None) is None:
            halves.setdefault(spec.heldout_half or "all", []).append(f"`{spec.name}`")
    if not halves:
        return ""
    parts = [f"{', '.join(names)} on {'every held-out document' if half == 'all' else f'the {half} half'}"
             for half, names in halves.items()]
    if "test" in halves:
        chose = (" Recipes are chosen on the dev half (`params/dev.yaml`, `bench/ablation.py`), which shares no "
                 "document with the test half.")
    else:
        chose = " No set is on the test half: a recipe chosen on these sets is measured on the documents that chose it."
    return "Held-out documents: " + "; ".join(parts) + "." + chose


def report_text(params: Params, flat: dict, versus_baseline: Interval, images: str) -> str:
    quality = [f"`{s.name}/{s.primary_metric}`" for s in params.eval.sets if s.in_mean_score]
    return f"""{verdict(params, flat, versus_baseline)}

# Distillation report

Teacher `{params.teacher.model}` → student {describe(params)}, objectives `{params.train.objectives}` ({params.train.mode}),
{params.train.epochs} epoch(s). Mean score: the mean of {", ".join(quality) or "no quality set"}, the
same metrics for every model; fidelity is reported beside it. Scores ×100 (STS: Spearman of cosine;
retrieval: trec_eval nDCG@10 (linear gain, as BEIR/MTEB), Recall@100 and MRR@10 over queries with a
relevant document; classification: logistic-regression accuracy; clustering: k-means V-measure;
fidelity: Spearman of pairwise similarities with the teacher's, and mean cosine to the teacher where
the student shares its space). The interval is a paired bootstrap over the per-pair / per-query /
per-text scores ({params.registry.bootstrap_resamples} resamples, seed {params.seed}).
{heldout_line(params)}
Decontamination: {int(flat["corpus/decontaminated_texts"])} corpus texts that occur in an evaluation set
were dropped before training. Throughput: `encode` of the same {int(flat["eval/throughput_texts"])} held-out
texts at batch {int(flat["eval/batch_size"])}, {int(flat["eval/threads"])} threads, after a warm-up;
median of {int(flat["eval/throughput_repeats"])} alternating repeats, measured in this run.
Evaluation spec `{flat["eval/spec"]}`, student fingerprint `{flat["student/fingerprint"]}`.

{markdown_table(results_table(params, flat))}
{variants_section(flat)}
![speed vs quality]({images}/speed_quality.png)
![fidelity]({images}/fidelity.png)
![training loss]({images}/training_loss.png)
"""


def write_outputs(
    params: Params,
    flat: dict,
    versus_baseline: Interval,
    items: dict[str, np.ndarray],
    fidelity_pairs: pd.DataFrame,
) -> None:
    metrics_dir, reports_dir = Path(params.paths.metrics), Path(params.paths.reports)
    plots_dir = Path(params.paths.plots) / "eval"
    speed = pd.DataFrame([
        {"model": label, "texts/s": flat[f"{role}/texts_per_s"],
         "texts/s min": flat[f"{role}/texts_per_s_min"], "texts/s max": flat[f"{role}/texts_per_s_max"],
         "mean score": flat.get(f"{role}/mean_score", float("nan"))}
        for role, label in role_labels(flat).items()
    ])
    # Everything is rendered into staging first; only then do the outputs replace the old ones.
    per_item_file, report_file = metrics_dir / PER_ITEM_FILE, reports_dir / "report.md"
    with atomic_dir(plots_dir) as staging, atomic_files(per_item_file, report_file) as (per_item, report):
        speed.to_csv(staging / "speed_quality.csv", index=False)
        fidelity_pairs.to_csv(staging / "fidelity.csv", index=False)
        speed_quality_plot(speed, staging / "speed_quality.png")
        fidelity_plot(fidelity_pairs, staging / "fidelity.png")
        training = Path(params.paths.plots) / "training"
        training_plot(training / "train_loss.csv", training / "eval_loss.csv", staging / "training_loss.png")
        images = Path(os.path.relpath(plots_dir, reports_dir)).as_posix()
        np.savez(per_item, **items)
        report.write(report_text(params, flat, versus_baseline, images).encode("utf-8"))
    write_json(metrics_dir / "eval.json", flat)  # last: its presence means the set is complete
