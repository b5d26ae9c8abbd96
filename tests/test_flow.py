"""The Prefect flow in-process, cache reuse across entry points, locking, and the served deployment."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from prefect.testing.utilities import prefect_test_harness

from distill.config import load_params
from distill.cache import EmbeddingCache
from distill.lock import pipeline_lock
from tests.conftest import ROOT, write_tiny_params

sys.path.insert(0, str(ROOT / "flows"))
from distill_pipeline import distill_pipeline  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shard_count(folder) -> int:
    return len(list(Path(folder).rglob("shard-*.npz")))


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness():
        yield


def test_flow_reuses_the_cli_labels_and_registers(harness, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_tiny_params(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for step in ("prepare", "label"):
        subprocess.run([sys.executable, "-m", "distill", step, "--params", str(path)], cwd=ROOT, env=env, check=True,
                       capture_output=True)
    params = load_params(path)
    labels_before = shard_count(params.paths.teacher_cache)

    result = distill_pipeline(str(path), train={"max_steps": 2})
    assert shard_count(params.paths.teacher_cache) == labels_before, "the flow recomputed teacher labels"
    # Two steps of training do not beat the undistilled student beyond noise: an honest challenger.
    assert result["version"] == 1 and result["alias"] == "challenger", result
    eval_shards = shard_count(params.paths.eval_cache)

    # A second run with only a training change: every teacher and baseline embedding of labels and
    # evaluation texts comes from the caches (counted at the cache, where every fill goes through).
    # Throughput is measured fresh in each run, like for like, outside the caches.
    filled = []
    fill = EmbeddingCache.fill

    def counting(self, texts, encode, *args, **kwargs):
        filled.append((kwargs.get("desc", ""), len(self.missing(texts))))
        return fill(self, texts, encode, *args, **kwargs)

    monkeypatch.setattr(EmbeddingCache, "fill", counting)
    again = distill_pipeline(str(path), overrides=["train.max_steps=3"])
    assert shard_count(params.paths.teacher_cache) == labels_before
    misses = [(desc, n) for desc, n in filled if n]
    assert misses and all(desc.startswith("student") for desc, _ in misses), misses  # only the new student
    assert shard_count(params.paths.eval_cache) > eval_shards
    assert again["version"] == 2
    mlflow.set_tracking_uri(params.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[params.tracking.experiment])
    assert len(runs) == 2 and set(runs["tags.entry_point"]) == {"prefect"}

    # And the other way round: the DVC stage command after the flow finds every label cached.
    subprocess.run([sys.executable, "-m", "distill", "label", "--params", str(path)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    assert shard_count(params.paths.teacher_cache) == labels_before


def test_failed_step_fails_the_run_and_leaves_registry_alone(harness, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_tiny_params(tmp_path, student={"init": "pretrained", "model": str(tmp_path / "missing-model"), "keep_layers": None})
    with pytest.raises(Exception, match="student.model"):
        distill_pipeline(str(path))
    params = load_params(path)
    mlflow.set_tracking_uri(params.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[params.tracking.experiment])
    assert list(runs["status"]) == ["FAILED"]
    assert not mlflow.MlflowClient().search_registered_models()


def test_second_run_is_refused_while_one_holds_the_lock(tmp_path):
    path = write_tiny_params(tmp_path)
    params = load_params(path)
    with pipeline_lock(params.paths.lock):
        result = subprocess.run([sys.executable, "-m", "distill", "prepare", "--params", str(path)], cwd=ROOT,
                                capture_output=True, text=True)
    assert result.returncode == 2 and "another pipeline run is using this project" in result.stderr
    with pipeline_lock(params.paths.lock), pipeline_lock(params.paths.lock):
        pass  # re-entrant within one process
    released = subprocess.run([sys.executable, "-m", "distill", "prepare", "--params", str(path)], cwd=ROOT,
                              capture_output=True, text=True)
    assert released.returncode == 0, released.stderr  # leaving the outer context freed the lock


def test_trigger_without_server_says_how_to_start_it(tmp_path):
    env = {**os.environ, "DISTILL_PREFECT_PORT": str(free_port())}  # never the user's server on 4200
    result = subprocess.run([sys.executable, "-m", "distill.services", "trigger", "-p", "train.epochs=2"],
                            cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "Prefect server is not running" in result.stderr and "make serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_dotted_keys_become_section_parameters():
    from distill.services import flow_parameters

    assert flow_parameters(["train.epochs=2", "train.learning_rate=5e-5", "params_file=p.yaml", "seed=3"]) == {
        "train": {"epochs": 2, "learning_rate": "5e-5"},
        "params_file": "p.yaml",
        "seed": 3,
    }
