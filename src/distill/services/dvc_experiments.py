"""DVC lineage of a pipeline run: the stages run through ``dvc repro``, every Prefect flow run is saved
as a DVC experiment, outputs go to the DVC remote, and MLflow gets the hashes that tie a registered
model to its exact data.

The Prefect flow runs stages, experiments and pushes through these; the register step reads
:func:`lineage_tags` inside its DVC stage. Everything goes through DVC's own command
line (``python -m dvc`` with this interpreter), so ``dvc.lock``, ``dvc status``, ``dvc exp show`` and
``dvc pull`` see exactly what a hand-typed ``dvc repro`` would have left.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distill.config.loader import dotted_leaves, load_params, parse_override, read_params_file
from distill.services.lock import HOLDER_ENV

log = logging.getLogger(__name__)

PARAMS_FILE = "params.yaml"
LOCK_FILE = "dvc.lock"
# The stages whose outputs a registered model is traced to: prepared corpus, teacher labels and
# mined candidates, student.
TRACED_STAGES = ("prepare", "label", "train")


class LineageError(RuntimeError):
    """A DVC command failed; the message carries its output and what to do."""


@dataclass(frozen=True)
class Experiment:
    name: str
    rev: str  # the experiment's git commit (refs/exps/...)


def _dvc(args: list[str], root: Path, env: dict[str, str] | None = None, stream: bool = False) -> str:
    """Run ``dvc <args>`` in ``root`` with this interpreter and return its output. ``stream`` also
    copies the output to this process's stdout as it comes (a stage's progress bars)."""
    process = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    chunks = []
    while chunk := os.read(process.stdout.fileno(), 65536):
        chunks.append(chunk)
        if stream:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    process.wait()
    output = b"".join(chunks).decode("utf-8", errors="replace")
    if process.returncode != 0:
        raise LineageError(f"`dvc {' '.join(args)}` failed in {root} (exit {process.returncode}):\n{output[-3000:]}")
    return output


def stage_env(lock_holder_pid: int, mlflow_run_id: str | None) -> dict[str, str]:
    """The environment of the stages a flow runs: this interpreter's ``python`` first on PATH (the
    stage commands say ``python``), the flow's pipeline lock handed down, and its MLflow run resumed
    by the register stage (``MLFLOW_RUN_ID``), so one flow run is one MLflow run."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           HOLDER_ENV: str(lock_holder_pid)}
    if mlflow_run_id:
        env["MLFLOW_RUN_ID"] = mlflow_run_id
    return env


def repro_stage(stage: str, root: Path, env: dict[str, str], force: bool = False) -> str:
    """``dvc repro --single-item <stage>``: runs the stage only if its deps, params or outs changed
    (``force``: always), and records it in ``dvc.lock``."""
    return _dvc(["repro", "--single-item", *(["--force"] if force else []), stage], root, env, stream=True)


def override_leaves(*partials: dict[str, Any]) -> dict[str, Any]:
    """Partial params mappings, in the order they apply, as ``{dotted key: value}`` at the leaves: a
    mapping merges key by key, as :func:`distill.config.loader.load_params` merges it, and a list replaces."""
    return {key: value for partial in partials for key, value in dotted_leaves(partial).items()}


def layered_leaves(files: list[Path], overrides: list[str] | None = None,
                   updates: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``load_params([params.yaml, *files], overrides, updates)`` sets on top of ``params.yaml``, as
    :func:`override_leaves`: the params files' keys, then the ``key=value`` overrides, then ``updates``."""
    return override_leaves(*(read_params_file(f) for f in files), *(parse_override(o) for o in overrides or []),
                           updates or {})


def hydra_override(key: str, value: Any) -> str:
    """One ``--set-param`` of ``dvc exp run``: ``++key=value`` in Hydra's override grammar (``++`` sets a key
    whether or not ``params.yaml`` has it). Strings are quoted, mappings and lists spelt out, so a value
    reads back as the same type (JSON would not do: Hydra's mappings take bare keys)."""

    def render(item: Any) -> str:
        if item is None:
            return "null"
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str):
            # Hydra unescapes backslashes only before a quote: double those, escape the quotes.
            escaped = re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + ("\\'" if m[2] else ""), item)
            return f"'{escaped}'"
        if isinstance(item, list | tuple):
            return "[" + ",".join(render(v) for v in item) + "]"
        if isinstance(item, dict):
            return "{" + ",".join(f"{k}:{render(v)}" for k, v in item.items()) + "}"
        raise TypeError(f"{key}: cannot pass a {type(item).__name__} to dvc exp run --set-param")

    return f"++{key}={render(value)}"


@contextmanager
def params_applied(root: Path, leaves: dict[str, Any]) -> Iterator[None]:
    """``params.yaml`` holds the overrides while the block runs, written by DVC's own ``--set-param``
    code (``dvc.utils.hydra.apply_overrides``, comments kept), and exactly the user's bytes again
    afterwards, whatever happens.

    Why not ``dvc exp run --set-param`` itself: the flow runs each stage as its own Prefect task
    (``dvc repro --single-item``), so its state shows per step in the Prefect UI; ``dvc exp run`` runs
    the whole pipeline in one command. The flow then saves the run with ``dvc exp save``."""
    from dvc.utils.hydra import apply_overrides

    path = root / PARAMS_FILE
    if not leaves:
        yield
        return
    original = path.read_bytes()
    try:
        apply_overrides(path, [hydra_override(key, value) for key, value in leaves.items()])
        yield
    finally:
        path.write_bytes(original)


def stage_outputs(root: Path) -> list[str]:
    """Every output ``dvc.yaml``'s stages name (outs, metrics and plots files), its ``${paths.*}``
    resolved against ``params.yaml`` as DVC resolves them."""
    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {})
    values = dotted_leaves(read_params_file(root / PARAMS_FILE)) if (root / PARAMS_FILE).is_file() else {}

    def resolved(out: str) -> str:
        return re.sub(r"\$\{\s*([\w.]+)\s*\}", lambda m: str(values[m.group(1)]), out)

    return [resolved(out if isinstance(out, str) else next(iter(out)))
            for stage in stages.values() for out in [*stage.get("outs", []), *stage.get("metrics", []),
                                                     *stage.get("plots", [])]]


@contextmanager
def workspace_kept(root: Path, active: bool, keep: tuple[str, ...] = ()) -> Iterator[None]:
    """With ``active`` (a run with overrides, saved as an experiment), the workspace is the user's again
    afterwards, as after ``dvc exp run --temp``: ``dvc.lock`` as it was, and its outputs checked out from
    the DVC cache, so ``dvc status`` says what it said before. Outputs in ``keep`` stay as the run left
    them: the label cache only ever gains content-addressed shards, which would otherwise be paid for
    again by the next run that needs them (an override of teacher params leaves the label stage listed
    by ``dvc status`` until a ``dvc repro``, which encodes nothing).

    When the DVC cache does not hold the outputs the earlier ``dvc.lock`` names (a cleared cache, a
    lock copied from elsewhere), the run's own ``dvc.lock`` and outputs are checked out again instead,
    so the workspace is never left empty, and the run's output says so."""
    lock = root / LOCK_FILE
    before = lock.read_bytes() if lock.is_file() else None
    try:
        yield
    finally:
        if active:
            if before is None:
                lock.unlink(missing_ok=True)
            else:
                after = lock.read_bytes() if lock.is_file() else None
                kept = {Path(k).as_posix().rstrip("/") for k in keep}
                outputs = [o for o in stage_outputs(root) if o.rstrip("/") not in kept]
                lock.write_bytes(before)
                try:
                    _dvc(["checkout", "--force", *outputs], root)
                except LineageError as err:
                    _keep_run_outputs(root, after, outputs, err)


def _keep_run_outputs(root: Path, run_lock: bytes | None, outputs: list[str], err: LineageError) -> None:
    """The earlier lock's outputs could not be restored: put the run's lock back and check its outputs
    out (the run committed them to the DVC cache), printed so the run's terminal shows it."""
    lock = root / LOCK_FILE
    message = ("the run's experiment is saved, but the outputs your earlier dvc.lock names are not all in the "
               "DVC cache, so they cannot be restored; ")
    if run_lock is None:
        message += "this run wrote no dvc.lock either: `dvc repro` rebuilds the outputs"
    else:
        lock.write_bytes(run_lock)
        try:
            _dvc(["checkout", "--force", *outputs], root)
            message += ("this run's dvc.lock and outputs are left in place instead (`dvc status` names the "
                        "params it overrode; `dvc repro` rebuilds yours)")
        except LineageError as again:
            message += f"checking out this run's outputs failed too; `dvc repro` rebuilds them: {again}"
    print(f"WARNING: {message}\n{err}", flush=True)
    log.warning("%s", message)


def experiment_run(root: Path, files: list[Path], name: str | None = None) -> str:
    """``dvc exp run --set-param key=value ...``: the pipeline as a DVC experiment of ``params.yaml`` with
    every leaf of ``files`` (params files, layered in order) set, so ``dvc repro`` runs a recipe kept in
    a file (``params/full.yaml``) through DVC's own experiment mechanism (values as :func:`hydra_override`
    spells them). As after any ``dvc exp run``, the workspace holds the experiment afterwards."""
    load_params([root / PARAMS_FILE, *files])  # refuse bad keys before DVC starts a stage
    leaves = layered_leaves(files)
    args = ["exp", "run", *(["--name", name] if name else [])]
    for key, value in leaves.items():
        args.append(f"--set-param={hydra_override(key, value)}")
    return _dvc(args, root, stream=True)


def save_experiment(root: Path, name: str, stages: tuple[str, ...] = ()) -> Experiment:
    """``dvc exp save``: the workspace (params, ``dvc.lock``, the outputs' hashes) as a named
    experiment that ``dvc exp show`` lists and ``dvc exp pull``/``apply`` restore. ``stages``: commit
    only these stages' params and outputs to ``dvc.lock`` (``dvc exp save <stages>``), for a run that
    ran only part of the pipeline."""
    # Named explicitly: `dvc exp save` includes an untracked dvc.lock only if one was there before its
    # own commit of the stages wrote it.
    _dvc(["exp", "save", "--name", name, "--force", "--include-untracked", LOCK_FILE, *stages], root)
    # DVC keeps an experiment under its baseline commit (refs/exps/<ba>/<seline>/<name>): the same name
    # saved on an earlier commit is another experiment.
    baseline = git_commit(root)
    ref = f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], cwd=root, capture_output=True, text=True)
    if found.returncode != 0:
        raise LineageError(f"dvc saved experiment {name!r}, but git has no {ref}")
    return Experiment(name=name, rev=found.stdout.strip())


def push(root: Path) -> None:
    """``dvc push``: the workspace's outputs (prepared corpus, label cache, mined candidates, student,
    metrics) to the default DVC remote."""
    _dvc(["push"], root, stream=True)


def lineage_tags() -> dict[str, str]:
    """Tags that pin a run to its code and data: git commit, ``dvc.lock`` hash, and the DVC hashes of
    the prepared corpus, the teacher labels, the mined candidates and the student.

    Only inside a DVC stage (DVC sets ``DVC_ROOT``) does ``dvc.lock`` describe the outputs this
    process reads; run by hand, a step says so instead of citing a lock of another run."""
    if "DVC_ROOT" not in os.environ:
        return {"git_commit": git_commit(Path.cwd()), "dvc_lock": "not run through dvc"}
    root = Path(os.environ["DVC_ROOT"])
    tags = {"git_commit": git_commit(root), "dvc_lock": "none"}
    lock_path = root / LOCK_FILE
    if not lock_path.is_file():
        return tags
    lock = yaml.safe_load(lock_path.read_text()) or {}
    tags["dvc_lock"] = hashlib.sha256(lock_path.read_bytes()).hexdigest()[:16]
    for stage in TRACED_STAGES:
        for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
            tags[f"dvc_out/{out['path']}"] = str(out.get("md5", "unknown"))
    return tags


def provenance(command: str, root: Path) -> str:
    """The header of a benchmark table: commit (and whether tracked files differ from it), date, CPU,
    cores, torch and its threads, and the command."""
    commit = git_commit(root)
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    import torch  # only the benchmarks ask; the flow's lineage calls stay light

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    short = commit[:7] if commit != "unknown" else "unknown (no git repository)"
    return (f"commit `{short}`{' (uncommitted changes!)' if dirty else ''}, {datetime.date.today()}, "
            f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} {torch.get_num_threads()} threads, "
            f"command `{command}`")


def git_commit(root: Path) -> str:
    """HEAD's commit, or "unknown" where there is no git (not installed, not a repository, hung)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"
