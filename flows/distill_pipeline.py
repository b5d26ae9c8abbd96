"""The ``distill-pipeline`` Prefect flow: prepare → label → train → export → evaluate → register, as DVC runs.

Each task runs its DVC stage (``dvc repro --single-item <stage>``), so a flow run and ``dvc repro``
are one pipeline with one ``dvc.lock``: after a flow run ``dvc status`` is clean and ``dvc repro``
does nothing, and after ``dvc repro`` a flow run only registers. Overrides are applied to
``params.yaml`` for the run, as ``dvc exp run --set-param`` does, and the file is restored after.
Every flow run is saved as a DVC experiment named after the flow run (``dvc exp show`` lists it with
its params and metrics), its outputs are pushed to the DVC remote, and its MLflow run and registered
model version carry the experiment, the ``dvc.lock`` hash and the data's hashes.

With ``cluster`` set, the label step's missing texts are first encoded as Prefect tasks on a Dask
cluster (``prefect-dask``'s ``DaskTaskRunner``: ``cluster.address``, or a LocalCluster of
``cluster.n_workers``); the label stage then mines from the full cache.

Run it from the project root: in-process (``python flows/distill_pipeline.py --once --set
train.epochs=2``) or serve the ``local`` deployment (no arguments) and start runs with
``prefect deployment run distill-pipeline/local -p train='{"epochs": 2}'``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect_dask import DaskTaskRunner

from distill.config.base import ParamsError
from distill.config.loader import load_params
from distill.config.schema import ClusterConfig, Params
from distill.encoding import teacher_encoder
from distill.labelling.dask_label import TextSlice, encode_slice, missing_slices
from distill.pipeline import STEPS, configure
from distill.readers import read_json_artifact
from distill.services import dvc_experiments as lineage
from distill.services.lock import pipeline_lock
from distill.services.tracking import pipeline_run

# Retries where a second try can succeed: hub downloads while labelling, a busy tracking store, a
# remote that did not answer. Bad params, bad data and training divergence fail the same way twice.
# A retried register reuses the version its MLflow run registered already (never a twin).
RETRIES = {"prepare": 0, "label": 2, "train": 0, "export": 0, "evaluate": 1, "register": 2, "push": 2}


def _stage_task(name: str):
    def run(root: str, mlflow_run_id: str) -> None:
        # Printed, not only logged: `make run` streams the served process's output to the terminal.
        print(f"== step {name} ==", flush=True)
        # register always runs: a flow run ends in a model version of its own MLflow run, even when
        # `dvc repro` already did every other stage.
        lineage.repro_stage(name, Path(root), lineage.stage_env(os.getpid(), mlflow_run_id), force=name == "register")

    return task(name=name, retries=RETRIES[name], retry_delay_seconds=5, cache_policy=NO_CACHE)(run)


STAGE_TASKS = {name: _stage_task(name) for name in STEPS}


@task(name="label-slice", retries=RETRIES["label"], retry_delay_seconds=5, cache_policy=NO_CACHE)
def label_slice(params: Params, piece: TextSlice) -> int:
    return encode_slice(params, piece)


@flow(name="label-on-dask")
def label_on_dask(params: Params, slices: list[TextSlice]) -> int:
    """Each slice a Prefect task on the Dask cluster; returns the texts encoded."""
    return sum(future.result() for future in label_slice.map(unmapped(params), slices))


def dask_task_runner(config: ClusterConfig) -> DaskTaskRunner:
    """prefect-dask's runner on ``cluster.address``, or on a LocalCluster it starts for the subflow
    (``address`` and ``cluster_kwargs`` cannot be combined)."""
    if config.address is not None:
        return DaskTaskRunner(address=config.address)
    return DaskTaskRunner(cluster_kwargs=config.local_cluster_kwargs)


def label_on_cluster(params: Params) -> None:
    """Fill the label cache on the Dask cluster through Prefect before the label stage runs: the
    stage then finds every text cached and only mines. Nothing missing, no cluster."""
    slices = missing_slices(params, teacher_encoder(params, params.paths.teacher_cache))
    if slices:
        print(f"== label on dask: {sum(len(s.rows) for s in slices)} texts in {len(slices)} slices ==", flush=True)
        label_on_dask.with_options(task_runner=dask_task_runner(params.cluster))(params, slices)


@task(name="push", retries=RETRIES["push"], retry_delay_seconds=5, cache_policy=NO_CACHE)
def push(root: str) -> None:
    print("== push to the DVC remote ==", flush=True)
    lineage.push(Path(root))


@task(name="save-experiment", cache_policy=NO_CACHE)
def save_experiment(root: str, name: str) -> lineage.Experiment:
    return lineage.save_experiment(Path(root), name)


@flow(name="distill-pipeline")
def distill_pipeline(
    overrides: list[str] | None = None,
    params_files: list[str] | None = None,
    seed: int | None = None,
    threads: int | None = None,
    teacher: dict[str, Any] | None = None,
    student: dict[str, Any] | None = None,
    corpus: dict[str, Any] | None = None,
    mining: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    eval: dict[str, Any] | None = None,  # noqa: A002 - the params section is called eval
    paths: dict[str, Any] | None = None,
    tracking: dict[str, Any] | None = None,
    register: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every stage on ``params.yaml`` of the current directory (the DVC project).

    Overrides come as params files layered in order (``params_files=["params/benchmark.yaml"]``),
    dotted strings (``overrides=["train.epochs=2"]``) or one partial mapping per params section
    (``train={"epochs": 2}``, which is ``-p train='{"epochs": 2}'`` on the Prefect CLI); all are
    merged onto ``params.yaml`` in that order and validated before anything runs.
    """
    root = Path.cwd()
    if not (root / "dvc.yaml").is_file():
        raise ParamsError(f"{root} has no dvc.yaml: run the flow from the project root (where `make run` serves it)")
    sections = {
        "seed": seed, "threads": threads, "teacher": teacher, "student": student, "corpus": corpus, "mining": mining,
        "cluster": cluster, "train": train, "eval": eval, "paths": paths, "tracking": tracking, "register": register,
    }
    updates = {key: value for key, value in sections.items() if value is not None}
    files = [root / path for path in params_files or []]
    params = load_params([root / lineage.PARAMS_FILE, *files], overrides, updates)
    leaves = lineage.layered_leaves(files, overrides, updates)
    configure(params)
    run_name = flow_run.get_name() or "flow"
    # An override run is an experiment: params.yaml, dvc.lock and the outputs are the user's again after it.
    kept = lineage.workspace_kept(root, bool(leaves), keep=(params.paths.teacher_cache,))
    with pipeline_lock(params.paths.lock), kept, lineage.params_applied(root, leaves):
        with pipeline_run(params, run_name=run_name, tags={"entry_point": "prefect"}) as run_id:
            for name in (step for step in STEPS if step != "register"):
                if name == "label" and params.cluster.enabled:
                    label_on_cluster(params)
                STAGE_TASKS[name](str(root), run_id)
            push(str(root))  # the data is on the remote before any version points at it
            STAGE_TASKS["register"](str(root), run_id)
            registration = read_json_artifact(Path(params.paths.metrics) / "registry.json", "register")
            experiment = save_experiment(str(root), f"{run_name}-{run_id[:8]}")
            push(str(root))  # and the registry record
            tags = {"dvc_experiment": experiment.name, "dvc_experiment_rev": experiment.rev}
            client = MlflowClient()
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
                client.set_model_version_tag(registration["model_name"], str(registration["version"]), key, value)
    print(f"DVC experiment {experiment.name} ({experiment.rev[:8]}): `dvc exp show`; restore its data in a clone "
          f"with `dvc exp pull origin {experiment.name} && dvc exp apply {experiment.name}`", flush=True)
    return {**registration, **tags}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="run the flow once in-process instead of serving")
    parser.add_argument("--params", action="append", default=[], metavar="FILE", help="layered onto params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.once:
        print(json.dumps(distill_pipeline(args.set, args.params), indent=2))
    else:
        distill_pipeline.serve(name="local")


if __name__ == "__main__":
    main()
