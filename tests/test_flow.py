"""The Prefect flow in-process, cache reuse across entry points, locking, and the served deployment."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness

from distill.config import load_params
from distill.encoding import Encoder
from distill.lock import pipeline_lock
from tests.conftest import ROOT, tiny_params_dict

sys.path.insert(0, str(ROOT / "flows"))
from distill_pipeline import distill_pipeline  # noqa: E402


def shard_count(folder) -> int:
    return len(list(Path(folder).rglob("shard-*.npz")))


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness():
        yield


def tiny_file(root: Path, **changes) -> Path:
    data = tiny_params_dict(root)
    data["tracking"] = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}
    for section, values in changes.items():
        data[section].update(values)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_flow_reuses_the_cli_labels_and_registers(harness, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tiny_file(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for step in ("prepare", "label"):
        subprocess.run([sys.executable, "-m", "distill", step, "--params", str(path)], cwd=ROOT, env=env, check=True,
                       capture_output=True)
    params = load_params(path)
    labels_before = shard_count(params.paths.teacher_cache)

    result = distill_pipeline(str(path), train={"max_steps": 2})
    assert shard_count(params.paths.teacher_cache) == labels_before, "the flow recomputed teacher labels"
    assert result["alias"] == "champion" and result["version"] == 1
    eval_shards = shard_count(params.paths.eval_cache)

    # A second run with only a training change: not one teacher forward pass.
    forward_passes = []
    raw_encode = Encoder.raw_encode

    def counting(self, texts, text_type):
        forward_passes.append((self.name, len(texts)))
        return raw_encode(self, texts, text_type)

    monkeypatch.setattr(Encoder, "raw_encode", counting)
    again = distill_pipeline(str(path), overrides=["train.max_steps=3"])
    assert shard_count(params.paths.teacher_cache) == labels_before
    assert not [call for call in forward_passes if call[0] in ("teacher", "baseline")], forward_passes
    assert [call for call in forward_passes if call[0] == "student"]  # the new student is evaluated
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
    path = tiny_file(tmp_path, student={"init": "pretrained", "model": str(tmp_path / "missing-model"), "keep_layers": None})
    with pytest.raises(Exception, match="student.model"):
        distill_pipeline(str(path))
    params = load_params(path)
    mlflow.set_tracking_uri(params.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[params.tracking.experiment])
    assert list(runs["status"]) == ["FAILED"]
    assert not mlflow.MlflowClient().search_registered_models()


def test_second_run_is_refused_while_one_holds_the_lock(tmp_path):
    path = tiny_file(tmp_path)
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


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_trigger_without_server_says_how_to_start_it(tmp_path):
    if port_in_use(4200):
        pytest.skip("a Prefect server already runs on 127.0.0.1:4200")
    result = subprocess.run([sys.executable, "-m", "distill.services", "trigger", "-p", "train.epochs=2"],
                            cwd=tmp_path, capture_output=True, text=True)
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
