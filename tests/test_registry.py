"""The registry gate end to end, against a real MLflow SQLite store in a temp folder."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import mlflow.sentence_transformers
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sentence_transformers import SentenceTransformer

from distill.errors import ProvenanceError
from distill.readers import PER_ITEM_FILE
from distill.services.tracking import metric_key
from distill.steps import register


@pytest.fixture
def workspace(finished_pipeline, tmp_path, monkeypatch):
    """A private copy of the tiny pipeline's metrics and a fresh MLflow store."""
    params, _ = finished_pipeline
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    metrics_dir = tmp_path / "metrics"
    shutil.copytree(params.paths.metrics, metrics_dir)
    paths = params.paths.model_copy(update={"metrics": str(metrics_dir)})
    tracking = params.tracking.model_copy(update={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    return params.model_copy(update={"paths": paths, "tracking": tracking})


def make_student_better(params):
    """Per-item scores in which the distilled student gets every topic right and clusters perfectly."""
    path = Path(params.paths.metrics) / PER_ITEM_FILE
    with np.load(path) as data:
        items = dict(data)
    items["student/topics/correct"] = np.ones_like(items["student/topics/correct"])
    items["student/clusters/cluster"] = items["student/clusters/label"].copy()
    np.savez(path, **items)


def client_for(params):
    mlflow.set_tracking_uri(params.tracking.tracking_uri)
    return MlflowClient()


def test_real_pipeline_is_gated_on_its_bootstrap_interval(workspace):
    result = register.run(workspace)
    flat = json.loads((Path(workspace.paths.metrics) / "eval.json").read_text())
    assert (result.alias == "champion") == (flat["student/vs_baseline/low"] > 0)
    client = client_for(workspace)
    tags = client.get_model_version(workspace.registry.model_name, str(result.version)).tags
    assert tags["eval_spec"] == flat["eval/spec"] and tags["student_fingerprint"] == flat["student/fingerprint"]
    assert "bootstrap" in tags["vs_baseline"] and tags["vs_champion"] == "no champion"
    if result.alias == "challenger":
        assert "does not beat the undistilled student beyond noise" in tags["lost_because"]
    run = client.get_run(result.run_id)
    assert run.data.metrics[metric_key("student/mean_score")] == pytest.approx(flat["student/mean_score"])
    assert run.data.tags["eval/spec"] == flat["eval/spec"]
    assert run.data.params["train.objectives.margin_mse"] == "1.0" and run.data.params["mining.negatives"] == "3"
    artifacts = {a.path for folder in ("report", "plots") for a in client.list_artifacts(result.run_id, folder)}
    assert {"report/report.md", "report/eval.json", f"report/{PER_ITEM_FILE}", "plots/speed_quality.png"} <= artifacts
    assert client.get_metric_history(result.run_id, "train/loss")


def test_champion_only_for_a_student_better_than_baseline_and_champion(workspace):
    make_student_better(workspace)
    first = register.run(workspace)
    assert first.alias == "champion", first.reason
    # The same student again: no better than the champion (difference 0), so it stays a challenger.
    second = register.run(workspace)
    assert second.alias == "challenger" and second.champion_version == first.version
    assert "does not beat the champion beyond noise" in second.reason
    client = client_for(workspace)
    assert int(client.get_model_version_by_alias(workspace.registry.model_name, "champion").version) == first.version


def test_champion_scored_on_another_spec_is_re_evaluated(workspace, caplog):
    make_student_better(workspace)
    first = register.run(workspace)
    client = client_for(workspace)
    client.set_model_version_tag(workspace.registry.model_name, str(first.version), "eval_spec", "another-spec")
    with caplog.at_level("INFO", logger="distill.steps.register"):
        second = register.run(workspace)
    assert "scored on evaluation spec another-spec" in caplog.text
    # Re-evaluated here, the champion scores what its weights really score, which the edited
    # per-item scores (every topic right, perfect clusters) beat.
    assert second.champion_version == first.version and second.versus_champion is not None
    assert second.alias == "champion", second.reason


def test_a_student_other_than_the_evaluated_one_is_refused(workspace):
    path = Path(workspace.paths.metrics) / "eval.json"
    flat = json.loads(path.read_text())
    flat["student/fingerprint"] = "0" * 32
    path.write_text(json.dumps(flat))
    with pytest.raises(ProvenanceError, match="is not the student that"):
        register.run(workspace)
    assert not client_for(workspace).search_registered_models()


def test_a_retried_register_reuses_its_version(workspace):
    mlflow.set_tracking_uri(workspace.tracking.tracking_uri)
    mlflow.set_experiment(workspace.tracking.experiment)
    with mlflow.start_run():
        first = register.run(workspace)
        again = register.run(workspace)
    assert again.version == first.version and again.alias == first.alias
    versions = client_for(workspace).search_model_versions(f"name='{workspace.registry.model_name}'")
    assert len(versions) == 1


def test_registered_model_round_trip_matches_student(workspace):
    result = register.run(workspace)
    loaded = mlflow.sentence_transformers.load_model(f"models:/{workspace.registry.model_name}/{result.version}")
    local = SentenceTransformer(workspace.paths.student)
    texts = ["the markets rallied", "a football match", "new phone released"]
    a = loaded.encode(texts, prompt_name="query")
    b = local.encode(texts, prompt_name="query")
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.9999
    assert loaded.prompts["query"] == "query: "


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_served_champion_encodes_like_the_student(workspace, tmp_path):
    """`mlflow models serve` of models:/<name>@champion, as the README shows it: a query and a passage
    over HTTP, each with its prompt_name, come back as SentenceTransformer(student).encode's vectors."""
    make_student_better(workspace)
    assert register.run(workspace).alias == "champion"
    name = workspace.registry.model_name
    version = client_for(workspace).get_model_version_by_alias(name, "champion")
    assert "registered as @champion" in version.description and "onnx_int8" in version.description
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The server execs uvicorn by name: the venv's bin first, as `make test` has it.
    env = {**os.environ, "MLFLOW_TRACKING_URI": workspace.tracking.tracking_uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion",
                               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        student = SentenceTransformer(workspace.paths.student)
        served = {}
        for prompt_name, text in (("query", "who won the match"), ("passage", "Shares in the bank fell sharply.")):
            answer = post_json(f"http://127.0.0.1:{port}/invocations",
                               {"inputs": [text], "params": {"prompt_name": prompt_name}})
            served[prompt_name] = np.array(answer["predictions"], dtype=np.float32)
            np.testing.assert_allclose(served[prompt_name], student.encode([text], prompt_name=prompt_name), atol=1e-5)
        # The tiny student's prompts differ by type, so a prompt_name the server ignored would show here.
        unprompted = student.encode(["who won the match"])
        assert not np.allclose(served["query"], unprompted, atol=1e-3)
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
