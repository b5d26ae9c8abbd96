"""SIGKILL mid-step, then a rerun: every step completes with the artifacts of an uninterrupted run.

Each step runs as ``python -m distill <step>`` in its own process and is killed at a point where it
has done part of its work (training steps logged, evaluation shards written, a model version created,
shards labelled on a Dask cluster). The rerun is compared with the session's uninterrupted tiny
pipeline (same params, another folder). The in-process label kill is tests/test_resume.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from safetensors.numpy import load_file

from distill.config.loader import load_params
from distill.readers import read_json_artifact
from distill.steps import evaluate, prepare, train
from tests.conftest import ROOT, labelled_tiny_project, write_tiny_params

pytestmark = pytest.mark.slow

DEADLINE = 600


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tiny project, prepared and labelled; the tests below take it through the later steps."""
    return labelled_tiny_project(tmp_path_factory.mktemp("faults")).parent


def kill_when(step: str, params_file: Path, ready: Callable[[str], bool], *overrides: str) -> None:
    """Start ``python -m distill <step>``; SIGKILL it once ``ready(output so far)`` holds."""
    argv = [sys.executable, "-m", "distill", step, "--params", str(params_file)]
    for override in overrides:
        argv += ["--set", override]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + DEADLINE
    while not ready("".join(output)):
        assert process.poll() is None, f"{step} ended before the kill point:\n{''.join(output)[-3000:]}"
        assert time.monotonic() < deadline, f"{step} never reached the kill point"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def rerun(step: str, params_file: Path, *overrides: str) -> None:
    argv = [sys.executable, "-m", "distill", step, "--params", str(params_file)]
    for override in overrides:
        argv += ["--set", override]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def no_leftovers(folder: Path) -> None:
    """No staging or retired copies beside an output: only whole artifacts."""
    assert not [p.name for p in folder.parent.glob(f".{folder.name}.*")], list(folder.parent.iterdir())


def test_train_killed_mid_training(project, finished_pipeline):
    params_file = project / "params.yaml"
    params = load_params(params_file)
    kill_when("train", params_file, lambda out: len(re.findall(r"'loss'", out)) >= 2)
    assert not Path(params.paths.student).exists()  # nothing half-written where the student goes
    rerun("train", params_file)
    no_leftovers(Path(params.paths.student))
    reference = load_file(str(Path(finished_pipeline[0].paths.student) / "model.safetensors"))
    weights = load_file(str(Path(params.paths.student) / "model.safetensors"))
    assert weights.keys() == reference.keys()
    for name, tensor in reference.items():
        np.testing.assert_allclose(weights[name], tensor, atol=1e-5, err_msg=name)


def test_evaluate_killed_mid_scoring(project, tmp_path):
    params_file = project / "params.yaml"
    params = load_params(params_file)
    if not Path(params.paths.student).exists():
        train.run(params)
    eval_cache = Path(params.paths.eval_cache)
    kill_when("evaluate", params_file, lambda out: len(list(eval_cache.rglob("shard-*.npz"))) >= 2)
    assert not (Path(params.paths.metrics) / "eval.json").exists()
    rerun("evaluate", params_file)
    no_leftovers(Path(params.paths.metrics))
    metrics = read_json_artifact(Path(params.paths.metrics) / "eval.json", "evaluate")
    # The same student evaluated without interruption, from an empty evaluation cache.
    fresh = load_params(params_file, [f"paths.{name}={tmp_path / name}" for name in ("eval_cache", "metrics", "reports",
                                                                                      "plots")])
    reference = evaluate.run(fresh)
    # Scores of the three models; run settings (eval/threads) and speed are not the step's artifacts.
    quality = [k for k in reference if isinstance(reference[k], float) and k.startswith(("teacher/", "baseline/", "student/"))
               and not any(word in k for word in ("throughput", "speed", "texts_per_s", "seconds"))]
    assert quality
    for key in quality:
        assert metrics[key] == pytest.approx(reference[key], abs=1e-6), key


def test_register_killed_after_the_version_is_created(project):
    params_file = project / "params.yaml"
    params = load_params(params_file)
    if not (Path(params.paths.metrics) / "eval.json").exists():
        if not Path(params.paths.student).exists():
            train.run(params)
        evaluate.run(params)
    kill_when("register", params_file, lambda out: "Created version" in out)
    rerun("register", params_file)
    registration = read_json_artifact(Path(params.paths.metrics) / "registry.json", "register")
    mlflow.set_tracking_uri(params.tracking.tracking_uri)
    client = MlflowClient()
    version = client.get_model_version(registration["model_name"], str(registration["version"]))
    assert version.aliases == [registration["alias"]]  # the record and the registry agree
    # The killed run created its version (the kill came after "Created version") and cannot clean up; the
    # rerun, a new MLflow run, made exactly one more, and only that one holds an alias.
    versions = client.search_model_versions(f"name='{registration['model_name']}'")
    assert sorted(int(v.version) for v in versions) == [1, 2] and int(registration["version"]) == 2
    orphan = client.get_model_version(registration["model_name"], "1")
    assert orphan.aliases == []


def test_dask_label_killed_mid_way(tmp_path, project):
    # The project's shard size: the same slices encode in the same batches, so the cache matches bit for bit.
    params_file = write_tiny_params(tmp_path, cluster={"n_workers": 2})
    params = load_params(params_file)
    prepare.run(params)
    cache = Path(params.paths.teacher_cache)
    kill_when("label", params_file, lambda out: len(list(cache.rglob("shard-*.npz"))) >= 2)
    rerun("label", params_file)
    reference = load_params(project / "params.yaml")
    mined = "candidates.parquet"
    assert (Path(params.paths.mined) / mined).read_bytes() == (Path(reference.paths.mined) / mined).read_bytes()
    assert not list(cache.rglob(".shard-*"))  # no temporary shard left by the killed workers
