"""Step 5, register: track the run in MLflow, log the student, and gate the ``champion`` alias.

The new model version takes ``champion`` only when every ``register.min_metrics`` floor is met and
its ``register.primary_metric`` beats the current champion's (if there is one). Otherwise it takes
``challenger`` and a ``lost_because`` tag that says why. A failure while aliasing deletes the new
version, so a failed step leaves the registry as it was.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import mlflow
import mlflow.sentence_transformers
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sentence_transformers import SentenceTransformer

from distill.config import Params
from distill.io import read_json, write_json
from distill.prepare import DataError
from distill.tracking import log_outputs, metric_key, pipeline_run

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: int
    alias: str
    reason: str
    primary_metric: str
    primary_value: float
    champion_value: float | None
    run_id: str


def serving_requirements() -> list[str]:
    """Explicit requirements, so MLflow need not infer them by loading the model in a subprocess.

    torch is deliberately absent: a pinned ``torch==X`` resolves to a CUDA build on PyPI, and the
    serving host installs the torch build that fits its hardware first.
    """
    return [f"sentence-transformers=={package_version('sentence-transformers')}", f"transformers=={package_version('transformers')}"]


def gate(metrics: dict[str, float], params: Params, champion_value: float | None) -> tuple[bool, str]:
    """Whether the new student may become champion, and why (not)."""
    config = params.registry
    for key, floor in config.min_metrics.items():
        if key not in metrics:
            return False, f"minimum metric {key} is missing from the evaluation (keys: {sorted(metrics)[:8]}…)"
        if metrics[key] < floor:
            return False, f"{key}={metrics[key]:.4f} is below the minimum {floor}"
    value = metrics[config.primary_metric]
    if champion_value is not None and not value > champion_value:
        return False, f"{config.primary_metric}={value:.4f} does not beat the champion's {champion_value:.4f}"
    if champion_value is None:
        return True, f"first version to pass the gate ({config.primary_metric}={value:.4f})"
    return True, f"{config.primary_metric}={value:.4f} beats the champion's {champion_value:.4f}"


def champion_value(client: MlflowClient, name: str, primary_metric: str) -> float | None:
    """The primary metric of the current champion's run, or None when there is no champion."""
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    metrics = client.get_run(champion.run_id).data.metrics
    return metrics.get(metric_key(primary_metric))


def run(params: Params) -> Registration:
    metrics_path = Path(params.paths.metrics) / "eval.json"
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path} does not exist: run the evaluate step first")
    metrics = read_json(metrics_path)
    config = params.registry
    if config.primary_metric not in metrics:
        raise DataError(
            f"register.primary_metric {config.primary_metric!r} is not in {metrics_path}; "
            f"choose one of {sorted(k for k in metrics if k.startswith('student/'))}"
        )
    student = SentenceTransformer(params.paths.student)
    with pipeline_run(params) as run_id:
        log_outputs(params, metrics)
        client = MlflowClient()
        best = champion_value(client, config.model_name, config.primary_metric)
        passed, reason = gate(metrics, params, best)
        example = ["an example sentence"]
        info = mlflow.sentence_transformers.log_model(
            student,
            name="student",
            registered_model_name=config.model_name,
            pip_requirements=serving_requirements(),
            signature=infer_signature(example, student.encode(example)),
        )
        version = int(info.registered_model_version)
        try:
            alias = CHAMPION if passed else CHALLENGER
            client.set_model_version_tag(config.model_name, str(version), "gate", reason)
            if not passed:
                client.set_model_version_tag(config.model_name, str(version), "lost_because", reason)
            client.set_registered_model_alias(config.model_name, alias, str(version))
        except Exception:
            client.delete_model_version(config.model_name, str(version))
            raise
        mlflow.set_tags({"registered_version": str(version), "registry_alias": alias})
    result = Registration(
        model_name=config.model_name,
        version=version,
        alias=alias,
        reason=reason,
        primary_metric=config.primary_metric,
        primary_value=float(metrics[config.primary_metric]),
        champion_value=best,
        run_id=run_id,
    )
    write_json(Path(params.paths.metrics) / "registry.json", asdict(result))
    log.info("registered %s version %d as %s: %s", config.model_name, version, alias, reason)
    return result
