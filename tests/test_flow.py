"""The Prefect flow in-process as DVC runs and experiments with lineage, locking, and the services' CLI."""

import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness

from distill.config.loader import load_params, params_from_dict, parse_override
from distill.services.dvc_experiments import override_leaves, params_applied
from distill.services.lock import HOLDER_ENV, pipeline_lock
from tests.conftest import ROOT, git, project_copy, tiny_params_dict, write_tiny_params

sys.path.insert(0, str(ROOT / "flows"))
from distill_pipeline import distill_pipeline  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def eval_cache_shards(project: Path) -> dict[str, set[str]]:
    """Shard names per evaluation-cache namespace (one namespace per model configuration)."""
    return {d.name: {p.name for p in d.glob("shard-*.npz")} for d in (project / "data/eval_cache").iterdir() if d.is_dir()}


def experiment_eval_cache_shards(project: Path, rev: str) -> dict[str, set[str]]:
    """:func:`eval_cache_shards` of an experiment's ``data/eval_cache``, read from its ``dvc.lock`` and the
    DVC cache's directory listing (the workspace holds the user's outputs again)."""
    lock = yaml.safe_load(git(["show", f"{rev}:dvc.lock"], project))
    digest = next(o["md5"] for o in lock["stages"]["evaluate"]["outs"] if o["path"] == "data/eval_cache")
    listing = json.loads((project / ".dvc/cache/files/md5" / digest[:2] / digest[2:]).read_text())
    shards: dict[str, set[str]] = {}
    for entry in listing:
        namespace, _, name = entry["relpath"].partition("/")
        if name.startswith("shard-") and name.endswith(".npz"):
            shards.setdefault(namespace, set()).add(name)
    return shards


def shard_count(folder) -> int:
    return len(list(Path(folder).rglob("shard-*.npz")))


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness():
        yield


@pytest.fixture
def dvc_project(tmp_path, monkeypatch):
    """A committed copy of the project on the tiny config, as the current directory, with its own DVC
    remote and MLflow store. DVC reads tracked params from params.yaml itself: every key is written."""
    project = project_copy(tmp_path / "project")
    params = params_from_dict(tiny_params_dict(Path("."))).model_dump(mode="json", by_alias=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    git(["commit", "-q", "-am", "tiny params"], project)
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(project / "src"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return project


def dvc(args, cwd) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"dvc {args}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


def test_flow_runs_are_dvc_runs_and_experiments_with_lineage(harness, dvc_project, tmp_path, capfd):
    project = dvc_project
    params_bytes = (project / "params.yaml").read_bytes()
    first = distill_pipeline()
    assert first["version"] == 1 and first["dvc_experiment"]
    # A flow run is a DVC run: nothing is left for `dvc repro`, and its experiment holds the lock.
    assert json.loads(dvc(["status", "--json"], project)) == {}
    assert "Running stage" not in dvc(["repro"], project)
    labels = shard_count(project / "data/teacher")

    # After `dvc repro` (nothing to do here) a flow run with the same params only registers.
    capfd.readouterr()
    second = distill_pipeline()
    out = capfd.readouterr().out
    assert second["version"] == 2 and "Running stage 'register'" in out
    assert not any(f"Running stage '{s}'" in out for s in ("prepare", "label", "train", "export", "evaluate")), out[-3000:]

    # An override is an experiment: params.yaml stays as written, `dvc exp show` lists the run's params
    # and metrics, and no teacher text is encoded again.
    evaluated = eval_cache_shards(project)
    lock_bytes = (project / "dvc.lock").read_bytes()
    third = distill_pipeline(overrides=["train.max_steps=2"])
    assert (project / "params.yaml").read_bytes() == params_bytes
    # ...and the workspace is the user's again: the lock and outputs of params.yaml, nothing to repro.
    assert (project / "dvc.lock").read_bytes() == lock_bytes
    assert json.loads(dvc(["status", "--json"], project)) == {}
    assert shard_count(project / "data/teacher") == labels
    # The teacher's and the undistilled student's evaluation embeddings come from the cache (their
    # namespaces gain no shard); only the new student's namespace is new.
    after = experiment_eval_cache_shards(project, third["dvc_experiment_rev"])
    assert {k: after[k] for k in evaluated} == evaluated and len(after) > len(evaluated)
    assert eval_cache_shards(project) == evaluated  # the workspace's cache is the user's run's again
    shown = json.loads(dvc(["exp", "show", "--json"], project))
    experiments = {e["name"]: e["revs"][0]["data"] for baseline in shown for e in baseline.get("experiments") or []}
    data = experiments[third["dvc_experiment"]]
    assert data["params"]["params.yaml"]["data"]["train"]["max_steps"] == 2
    assert "student/mean_score" in json.dumps(data["metrics"])
    assert first["dvc_experiment"] in experiments and second["dvc_experiment"] in experiments

    # MLflow knows the lineage: the run and the registered version carry the same tags.
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    client = mlflow.MlflowClient()
    version = client.get_model_version(third["model_name"], str(third["version"]))
    run_tags = client.get_run(third["run_id"]).data.tags
    for key in ("git_commit", "dvc_lock", "dvc_experiment", "dvc_experiment_rev", "dvc_out/data/prepared",
                "dvc_out/data/teacher", "dvc_out/data/mined", "dvc_out/models/student"):
        assert version.tags[key] == run_tags[key] and run_tags[key] not in ("", "none", "unknown"), key
    assert run_tags["entry_point"] == "prefect" and len(client.search_runs([client.get_experiment_by_name("distill").experiment_id])) == 3

    # A fresh clone restores the experiment's data from the DVC remote: the status is clean and
    # labelling encodes nothing (the label cache's content addresses survive the round trip).
    clone = tmp_path / "clone"
    git(["clone", "-q", str(project), str(clone)], tmp_path)
    dvc(["exp", "pull", "origin", third["dvc_experiment"]], clone)
    dvc(["exp", "apply", third["dvc_experiment"]], clone)
    assert json.loads(dvc(["status", "--json"], clone)) == {}
    assert (clone / "params.yaml").read_text().count("max_steps: 2") == 1
    clone_labels = shard_count(clone / "data/teacher")
    subprocess.run([sys.executable, "-m", "distill", "label"], cwd=clone, check=True, capture_output=True)
    assert shard_count(clone / "data/teacher") == clone_labels == labels


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


def test_children_of_the_holder_share_the_lock(tmp_path):
    """The flow holds the lock for its `dvc repro` stages: a child whose ancestor holds it may run;
    the same variable naming a process that is not an ancestor opens nothing."""
    path = write_tiny_params(tmp_path)
    params = load_params(path)
    command = [sys.executable, "-m", "distill", "prepare", "--params", str(path)]
    with pipeline_lock(params.paths.lock):
        child = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, HOLDER_ENV: str(os.getpid())})
        assert child.returncode == 0, child.stderr
        stranger = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, HOLDER_ENV: "1"})
        assert stranger.returncode == 2 and "another pipeline run" in stranger.stderr


def test_trigger_without_server_says_how_to_start_it(tmp_path):
    env = {**os.environ, "DISTILL_PREFECT_PORT": str(free_port())}  # never the user's server on 4200
    result = subprocess.run([sys.executable, "-m", "distill.services", "trigger", "-p", "train.epochs=2"],
                            cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "Prefect server is not running" in result.stderr and "make serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_dotted_keys_become_section_parameters():
    from distill.services.servers import flow_parameters

    assert flow_parameters(["train.epochs=2", "train.learning_rate=5e-5", "overrides=[a.b=1]", "seed=3"]) == {
        "train": {"epochs": 2, "learning_rate": "5e-5"},
        "overrides": ["a.b=1"],
        "seed": 3,
    }


def test_overrides_are_applied_to_params_yaml_and_undone(tmp_path):
    (tmp_path / "params.yaml").write_text("# mine\ntrain:\n  epochs: 1   # one\n  objectives: {similarity: 1.0}\n")
    original = (tmp_path / "params.yaml").read_bytes()
    leaves = override_leaves({"train": {"epochs": 5}}, parse_override("train.objectives={kl: 1.0}"),
                             {"train": {"epochs": 2}, "seed": 3})
    assert leaves == {"train.epochs": 2, "train.objectives.kl": 1.0, "seed": 3}
    assert override_leaves({}) == override_leaves({"train": {}}) == {}
    with pytest.raises(RuntimeError), params_applied(tmp_path, leaves):
        applied = (tmp_path / "params.yaml").read_text()
        assert yaml.safe_load(applied) == {"train": {"epochs": 2, "objectives": {"similarity": 1.0, "kl": 1.0}}, "seed": 3}
        assert "# mine" in applied and "# one" in applied
        raise RuntimeError("a stage failed")
    assert (tmp_path / "params.yaml").read_bytes() == original
    # Values of every type read back as they were given, as `dvc exp run --set-param` writes them.
    values = {"corpus.sources": [{"type": "bbc", "max_documents": None}, {"type": "file", "path": "it's a\\dir\\"}],
              "eval.sets": [], "tracking.uri": "sqlite:///a b.db", "train.learning_rate": 0.0003, "seed": None,
              "register.min_metrics": {"student/topics/accuracy": 90}, "student.prompts.query": "42", "x.enabled": True}
    with params_applied(tmp_path, values):
        applied = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert {key: functools.reduce(lambda node, part: node[part], key.split("."), applied) for key in values} == values
