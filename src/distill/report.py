"""Evaluation outputs: flat metrics for ``dvc metrics show``, a Markdown report, and plots."""

from __future__ import annotations

import os

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from distill.config import Params  # noqa: E402
from distill.io import atomic_dir, atomic_file, write_json  # noqa: E402

if TYPE_CHECKING:
    from distill.evaluate import LoadedSet

ROLE_LABELS = {"teacher": "teacher", "baseline": "undistilled student", "student": "distilled student"}


def results_table(results: dict[str, dict[str, float]], sets: list["LoadedSet"]) -> pd.DataFrame:
    """One row per model: every metric, retained % of the teacher's mean score, speed-up, size."""
    metric_keys = []
    for item in sets:
        metric_keys += [k for k in results["student"] if k.startswith(f"{item.spec.name}/")]
    rows = []
    teacher = results["teacher"]
    for role, scores in results.items():
        row = {"model": ROLE_LABELS[role]}
        for key in metric_keys:
            row[key] = scores.get(key)
        if "mean_score" in scores:
            row["mean score"] = scores["mean_score"]
            row["retained %"] = 100 * scores["mean_score"] / teacher["mean_score"] if teacher.get("mean_score") else None
        row["texts/s"] = scores["texts_per_s"]
        row["speed-up"] = scores["texts_per_s"] / teacher["texts_per_s"]
        row["params (M)"] = scores["parameters"] / 1e6
        row["size (MB)"] = scores["size_mb"]
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "—"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def speed_quality_plot(frame: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    quality = frame["mean score"] if "mean score" in frame else None
    for i, row in frame.iterrows():
        y = quality.iloc[i] if quality is not None else 0
        ax.scatter(row["texts/s"], y, s=80, label=f"{row['model']} ({row['texts/s']:.0f}/s, {y:.2f})")
    ax.set_xlim(left=0)
    ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("encode throughput (texts/s)")
    ax.set_ylabel("mean score over evaluation sets")
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
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(
    params: Params,
    results: dict[str, dict[str, float]],
    flat: dict[str, float],
    sets: list["LoadedSet"],
    fidelity_pairs: pd.DataFrame,
) -> None:
    frame = results_table(results, sets)
    write_json(Path(params.paths.metrics) / "eval.json", flat)

    plots_dir = Path(params.paths.plots) / "eval"
    with atomic_dir(plots_dir) as staging:
        frame[["model", "texts/s"] + (["mean score"] if "mean score" in frame else [])].to_csv(
            staging / "speed_quality.csv", index=False
        )
        fidelity_pairs.to_csv(staging / "fidelity.csv", index=False)
        speed_quality_plot(frame, staging / "speed_quality.png")
        fidelity_plot(fidelity_pairs, staging / "fidelity.png")
        training = Path(params.paths.plots) / "training"
        training_plot(training / "train_loss.csv", training / "eval_loss.csv", staging / "training_loss.png")

    images = Path(os.path.relpath(plots_dir, Path(params.paths.reports))).as_posix()
    report = f"""# Distillation report

Teacher `{params.teacher.model}` → student `{params.student.model if params.student.init == "pretrained" else f"pruned teacher {params.student.keep_layers}"}`,
loss `{params.train.loss}`, {params.train.epochs} epoch(s). Scores ×100 (STS: Spearman of cosine;
retrieval: nDCG@10 with gain 2^rel−1 and Recall@100 over judged queries; classification:
logistic-regression accuracy; clustering: k-means V-measure; fidelity: Spearman of pairwise
similarities with the teacher's, and mean cosine to the teacher where the student shares its space).
Throughput: `encode` on the same {int(flat["eval/throughput_texts"])} held-out texts, {int(flat["eval/threads"])} threads, after warm-up.

{markdown_table(frame)}

![speed vs quality]({images}/speed_quality.png)
![fidelity]({images}/fidelity.png)
![training loss]({images}/training_loss.png)
"""
    with atomic_file(Path(params.paths.reports) / "report.md") as handle:
        handle.write(report)
