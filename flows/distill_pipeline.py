"""The ``distill-pipeline`` Prefect flow: prepare → label → train → evaluate → register.

Each task calls the same ``distill`` step function as the DVC stage of the same name, so both entry
points read and write one content-addressed label cache and the same outputs. Run it in-process
(``python flows/distill_pipeline.py --once``) or serve the ``local`` deployment (no arguments) and
start runs with ``prefect deployment run distill-pipeline/local -p train.epochs=2``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from distill.config import Params, load_params
from distill.lock import pipeline_lock
from distill.pipeline import STEPS, configure
from distill.tracking import pipeline_run

# Retries where a second try can succeed: hub downloads while labelling, a busy tracking store.
# Bad params, bad data and training divergence fail the same way twice, so they are not retried.
# A retried register reuses the version its MLflow run registered already (never a twin).
RETRIES = {"prepare": 0, "label": 2, "train": 0, "evaluate": 1, "register": 2}


def _step_task(name: str):
    def run(params: Params) -> Any:
        # Printed, not only logged: `make run` streams the served process's output to the terminal.
        print(f"== step {name} ==", flush=True)
        return STEPS[name](params)

    return task(name=name, retries=RETRIES[name], retry_delay_seconds=5, cache_policy=NO_CACHE)(run)


TASKS = {name: _step_task(name) for name in STEPS}


@flow(name="distill-pipeline")
def distill_pipeline(
    params_file: str = "params.yaml",
    overrides: list[str] | None = None,
    seed: int | None = None,
    threads: int | None = None,
    teacher: dict[str, Any] | None = None,
    student: dict[str, Any] | None = None,
    corpus: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    eval: dict[str, Any] | None = None,  # noqa: A002 - the params section is called eval
    paths: dict[str, Any] | None = None,
    tracking: dict[str, Any] | None = None,
    register: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every step on ``params_file``.

    Overrides come as dotted strings (``overrides=["train.epochs=2"]``) or as one partial mapping
    per params section (``train={"epochs": 2}``, which is ``-p train='{"epochs": 2}'`` on the
    Prefect CLI); both are merged onto the file and validated by the same config module.
    """
    sections = {
        "seed": seed, "threads": threads, "teacher": teacher, "student": student, "corpus": corpus, "train": train,
        "eval": eval, "paths": paths, "tracking": tracking, "register": register,
    }
    updates = {key: value for key, value in sections.items() if value is not None}
    params = load_params(params_file, overrides, updates)
    configure(params)
    with pipeline_lock(params.paths.lock):
        run_name = flow_run.get_name() or None
        with pipeline_run(params, run_name=run_name, tags={"entry_point": "prefect"}):
            for name in ("prepare", "label", "train", "evaluate"):
                TASKS[name](params)
            registration = TASKS["register"](params)
    return asdict(registration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="run the flow once in-process instead of serving")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.once:
        print(json.dumps(distill_pipeline(args.params, args.set), indent=2))
    else:
        distill_pipeline.serve(name="local", parameters={"params_file": args.params})


if __name__ == "__main__":
    main()
