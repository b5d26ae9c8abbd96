"""MLflow tracking: one run per pipeline run, with params, tags, curves, metrics and artifacts.

The store defaults to ``tracking.tracking_uri`` (``sqlite:///mlflow.db`` in the project root, with
artifacts in ``mlartifacts/``); the ``MLFLOW_TRACKING_URI`` environment variable overrides it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from distill.config.loader import flatten
from distill.config.schema import Params
from distill.readers import PER_ITEM_FILE
from distill.services.dvc_experiments import git_commit

_METRIC_UNSAFE = re.compile(r"[^\w\-. /:]")


def tracking_uri(params: Params) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.tracking_uri


def metric_key(key: str) -> str:
    """MLflow metric names allow letters, digits, ``_-. /:``; ``ndcg@10`` becomes ``ndcg_at_10``."""
    return _METRIC_UNSAFE.sub("_", key.replace("@", "_at_"))


def artifact_root(uri: str) -> str | None:
    """A SQLite store keeps its artifacts in ``mlartifacts/`` beside the database file;
    remote tracking servers choose their own location (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def configure(params: Params) -> None:
    uri = tracking_uri(params)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(params.tracking.experiment) is None:
        mlflow.create_experiment(params.tracking.experiment, artifact_location=artifact_root(uri))
    mlflow.set_experiment(params.tracking.experiment)


@contextmanager
def pipeline_run(params: Params, run_name: str | None = None, tags: dict[str, str] | None = None) -> Iterator[str]:
    """Start (or join the active) MLflow run for one pipeline run; yields its id.

    A run that raises ends as FAILED in MLflow, so failures are visible in the UI.
    """
    active = mlflow.active_run()
    if active is not None:
        yield active.info.run_id
        return
    configure(params)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"git_commit": git_commit(Path.cwd()), **(tags or {})})
        flat = {key: str(value)[:6000] for key, value in flatten(params).items()}
        mlflow.log_params(flat)
        yield run.info.run_id


# MLflow's limit on the metrics of one log_batch request.
MAX_METRICS_PER_BATCH = 1000


def log_outputs(params: Params, metrics: dict[str, float | str]) -> None:
    """Training curves as step metrics, the evaluation table as metrics (its strings, such as the
    evaluation spec and student fingerprint, as tags), report, per-item scores, plots and the exported
    students as artifacts."""
    training = Path(params.paths.plots) / "training"
    now = int(time.time() * 1000)
    points = [Metric(f"train/{column}", float(value), now, int(step))
              for file_name, column in (("train_loss.csv", "loss"), ("eval_loss.csv", "eval_loss"))
              if (training / file_name).is_file()
              for step, value in pd.read_csv(training / file_name)[["step", column]].itertuples(index=False)]
    for start in range(0, len(points), MAX_METRICS_PER_BATCH):  # one request per batch, not per point
        MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=points[start:start + MAX_METRICS_PER_BATCH])
    mlflow.log_metrics({metric_key(k): float(v) for k, v in metrics.items() if not isinstance(v, str)})
    mlflow.set_tags({k: v for k, v in metrics.items() if isinstance(v, str)})
    for artifact, folder in (
        (Path(params.paths.reports) / "report.md", "report"),
        (Path(params.paths.metrics) / "eval.json", "report"),
        (Path(params.paths.metrics) / PER_ITEM_FILE, "report"),
    ):
        if artifact.is_file():
            mlflow.log_artifact(str(artifact), artifact_path=folder)
    plots = Path(params.paths.plots)
    for image in sorted(plots.glob("*/*.png")):
        mlflow.log_artifact(str(image), artifact_path="plots")
    for fmt in params.export.formats:  # each a Sentence Transformers folder (distill.runtimes)
        mlflow.log_artifacts(str(Path(params.paths.exports) / fmt), artifact_path=f"exports/{fmt}")
