"""The registry gate and round trip, against a real MLflow SQLite store in a temp folder."""

import json
import shutil
from pathlib import Path

import mlflow
import mlflow.sentence_transformers
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sentence_transformers import SentenceTransformer

from distill import register
from distill.prepare import DataError
from distill.tracking import metric_key


@pytest.fixture
def workspace(finished_pipeline, tmp_path, monkeypatch):
    """A private copy of the tiny pipeline's outputs and a fresh MLflow store."""
    params, _ = finished_pipeline
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    metrics_dir = tmp_path / "metrics"
    shutil.copytree(params.paths.metrics, metrics_dir)
    paths = params.paths.model_copy(update={"metrics": str(metrics_dir)})
    tracking = params.tracking.model_copy(update={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    return params.model_copy(update={"paths": paths, "tracking": tracking})


def set_primary(params, value):
    path = Path(params.paths.metrics) / "eval.json"
    metrics = json.loads(path.read_text())
    metrics["student/mean_score"] = value
    path.write_text(json.dumps(metrics))


def versions(params):
    mlflow.set_tracking_uri(params.tracking.tracking_uri)
    return {int(v.version): v for v in MlflowClient().search_model_versions(f"name='{params.registry.model_name}'")}


def test_gate_moves_champion_only_for_a_better_student(workspace):
    set_primary(workspace, 50.0)
    first = register.run(workspace)
    assert first.alias == "champion" and first.champion_value is None

    set_primary(workspace, 49.0)
    worse = register.run(workspace)
    client = MlflowClient()
    assert worse.alias == "challenger" and worse.champion_value == pytest.approx(50.0)
    tags = client.get_model_version(workspace.registry.model_name, str(worse.version)).tags
    assert "does not beat the champion's 50.0000" in tags["lost_because"]
    assert int(client.get_model_version_by_alias(workspace.registry.model_name, "champion").version) == first.version

    set_primary(workspace, 51.0)
    better = register.run(workspace)
    assert better.alias == "champion"
    assert int(client.get_model_version_by_alias(workspace.registry.model_name, "champion").version) == better.version

    run = client.get_run(better.run_id)
    assert run.data.metrics[metric_key("student/mean_score")] == pytest.approx(51.0)
    assert run.data.params["train.epochs"] == "1.0"
    assert {"git_commit", "dvc_lock"} <= run.data.tags.keys()
    artifacts = {a.path for a in client.list_artifacts(better.run_id)} | {
        a.path for folder in ("report", "plots") for a in client.list_artifacts(better.run_id, folder)
    }
    assert {"report/report.md", "report/eval.json", "plots/speed_quality.png", "plots/fidelity.png"} <= artifacts
    assert client.get_metric_history(better.run_id, "train/loss")


def test_minimum_metrics_block_the_champion(workspace):
    floors = workspace.registry.model_copy(update={"min_metrics": {"student/topics/accuracy": 101.0}})
    result = register.run(workspace.model_copy(update={"registry": floors}))
    assert result.alias == "challenger" and "below the minimum 101.0" in result.reason


def test_missing_primary_metric_leaves_registry_unchanged(workspace):
    register.run(workspace)
    before = versions(workspace)
    bad = workspace.model_copy(update={"registry": workspace.registry.model_copy(update={"primary_metric": "student/nope"})})
    with pytest.raises(DataError, match="register.primary_metric 'student/nope'"):
        register.run(bad)
    assert versions(workspace).keys() == before.keys()


def test_champion_round_trip_matches_student(workspace):
    register.run(workspace)
    loaded = mlflow.sentence_transformers.load_model(f"models:/{workspace.registry.model_name}@champion")
    local = SentenceTransformer(workspace.paths.student)
    texts = ["the markets rallied", "a football match", "new phone released"]
    a = loaded.encode(texts, prompt_name="query")
    b = local.encode(texts, prompt_name="query")
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.9999
    assert loaded.prompts["query"] == "query: "
