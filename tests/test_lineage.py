"""Test projects never start from a user's run, and an override run's workspace handoff (`lineage.workspace_kept`)
on a toy DVC project: the user's outputs come back from the DVC cache, and where the cache lacks them the run's
own stay in place."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from distill.services.dvc_experiments import workspace_kept
from tests.conftest import git, project_copy

STAGE = {"stages": {"write": {"cmd": "python -c \"import yaml; n = yaml.safe_load(open('params.yaml'))['n']; "
                                    "open('out.txt', 'w').write(str(n))\"",
                              "params": ["n"], "outs": ["out.txt"]}}}


def dvc(args: list[str], cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"dvc {args}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


def test_test_projects_are_built_from_the_source_tree_alone(tmp_path):
    checkout = project_copy(tmp_path / "checkout")  # stands for a user's checkout after `make run`
    stray = ["dvc.lock", "data/prepared/corpus.parquet", "models/student/config.json", "metrics/eval.json",
             "reports/report.md", "mlflow.db", ".prefect/serve.log", ".dvc/cache/files/md5/ab/cdef",
             "data/teacher/manifest.json"]
    for name in stray:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("left by a run")
    project = project_copy(tmp_path / "project", source=checkout)
    assert not [name for name in stray if (project / name).exists()]
    assert (project / "dvc.yaml").is_file() and (project / "src/distill/__init__.py").is_file()
    # An untracked source file the user has not committed yet is part of the source tree.
    (checkout / "src/distill/new_module.py").write_text("")
    assert (project_copy(tmp_path / "again", source=checkout) / "src/distill/new_module.py").is_file()


def toy_project(root: Path) -> Path:
    root.mkdir()
    git(["init", "-q"], root)
    dvc(["init", "-q"], root)
    (root / "params.yaml").write_text("n: 1\n")
    (root / "dvc.yaml").write_text(yaml.safe_dump(STAGE))
    dvc(["repro"], root)
    return root


def test_override_run_gives_the_users_outputs_back(tmp_path):
    root = toy_project(tmp_path / "toy")
    lock = (root / "dvc.lock").read_bytes()
    with workspace_kept(root, active=True):
        (root / "params.yaml").write_text("n: 2\n")
        dvc(["repro"], root)
        assert (root / "out.txt").read_text() == "2"
    (root / "params.yaml").write_text("n: 1\n")
    assert (root / "dvc.lock").read_bytes() == lock and (root / "out.txt").read_text() == "1"


def test_override_run_keeps_its_own_outputs_when_the_cache_lacks_the_users(tmp_path, capsys):
    root = toy_project(tmp_path / "toy")
    shutil.rmtree(root / ".dvc/cache")  # the earlier lock's outputs are in no cache now
    with workspace_kept(root, active=True):
        (root / "params.yaml").write_text("n: 2\n")
        dvc(["repro"], root)
        run_lock = (root / "dvc.lock").read_bytes()
    assert (root / "out.txt").read_text() == "2" and (root / "dvc.lock").read_bytes() == run_lock
    out = capsys.readouterr().out
    assert "not all in the DVC cache" in out and "left in place" in out


def test_a_params_file_runs_as_a_dvc_experiment(tmp_path):
    """`python -m distill exp-run --params FILE`: DVC's own `exp run --set-param` with every key of the file."""
    from distill.__main__ import main
    from tests.conftest import write_tiny_params

    root = tmp_path / "project"
    root.mkdir()
    write_tiny_params(root)
    stage = {"stages": {"write": {"cmd": "python -c \"import yaml; p = yaml.safe_load(open('params.yaml')); "
                                         "open('out.txt', 'w').write(str((p['seed'], p['train']['epochs'])))\"",
                                  "params": ["seed", "train.epochs"], "outs": ["out.txt"]}}}
    (root / "dvc.yaml").write_text(yaml.safe_dump(stage))
    git(["init", "-q"], root)
    dvc(["init", "-q"], root)
    git(["add", "-A"], root)
    git(["-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "toy"], root)
    recipe = {"seed": 9, "train": {"epochs": 3},
              "corpus": {"sources": [{"type": "bbc", "unit": "passage", "max_units_per_document": 2}]}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (root / "typo.yaml").write_text("train:\n  epoch: 3\n")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        assert main(["exp-run", "--params", "typo.yaml"]) == 2  # refused before DVC runs anything
        assert not (root / "out.txt").exists()
        assert main(["exp-run", "--params", "recipe.yaml", "--name", "recipe"]) == 0
    finally:
        os.chdir(cwd)
    assert (root / "out.txt").read_text() == "(9, 3)"
    assert yaml.safe_load((root / "params.yaml").read_text())["corpus"]["sources"] == recipe["corpus"]["sources"]
    shown = json.loads(dvc(["exp", "show", "--json"], root))
    names = [e["name"] for baseline in shown for e in baseline.get("experiments") or []]
    assert "recipe" in names


def test_a_run_of_some_stages_is_saved_as_an_experiment_with_its_params_and_metrics(tmp_path):
    """bench/ablation.py's record of a recipe: steps run outside `dvc repro` with params overridden, then
    `save_experiment(..., stages)` commits only those stages (a later stage never ran), `dvc exp show` lists
    the run's params and metrics, and the workspace has the user's params.yaml and no dvc.lock again."""
    from distill.services.dvc_experiments import params_applied, save_experiment

    root = tmp_path / "toy"
    root.mkdir()
    git(["init", "-q"], root)
    dvc(["init", "-q"], root)
    write = "python -c \"import json, yaml; n = yaml.safe_load(open('params.yaml'))['n']; json.dump({'n': n}, open('m.json', 'w'))\""
    stages = {"stages": {"write": {"cmd": write, "params": ["n"], "metrics": ["m.json"]},
                         "later": {"cmd": "cp m.json later.json", "deps": ["m.json"], "outs": ["later.json"]}}}
    (root / "dvc.yaml").write_text(yaml.safe_dump(stages))
    (root / "params.yaml").write_text("n: 1  # the user's\n")
    (root / ".gitignore").write_text("/m.json\n")
    git(["add", "-A"], root)
    git(["-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "toy"], root)
    user_params = (root / "params.yaml").read_bytes()
    with workspace_kept(root, active=True), params_applied(root, {"n": 5}):
        subprocess.run(write, shell=True, cwd=root, check=True)
        experiment = save_experiment(root, "partial", ("write",))
    assert (root / "params.yaml").read_bytes() == user_params and not (root / "dvc.lock").exists()
    shown = json.loads(dvc(["exp", "show", "--json"], root))
    data = {e["name"]: e["revs"][0]["data"] for baseline in shown for e in baseline.get("experiments") or []}["partial"]
    assert data["rev"] == experiment.rev and data["params"]["params.yaml"]["data"]["n"] == 5
    assert data["metrics"]["m.json"]["data"] == {"n": 5}
    # The same name saved on a later commit is that commit's experiment, beside the earlier one.
    git(["-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "--allow-empty", "-m", "later"], root)
    with workspace_kept(root, active=True), params_applied(root, {"n": 6}):
        subprocess.run(write, shell=True, cwd=root, check=True)
        again = save_experiment(root, "partial", ("write",))
    assert again.rev != experiment.rev
    assert git(["show", f"{again.rev}:params.yaml"], root).startswith("n: 6")
