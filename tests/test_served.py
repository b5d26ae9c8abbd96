"""The served path once: Prefect server + `flow.serve` + `prefect deployment run` on the tiny config."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distill.config.loader import params_from_dict
from tests.conftest import project_copy, tiny_params_dict

pytestmark = pytest.mark.slow


def test_served_deployment_runs_with_an_override(tmp_path):
    with socket.socket() as sock:  # a free port of its own: `make run`'s server may hold 4200
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    project = project_copy(tmp_path / "project")
    params = params_from_dict(tiny_params_dict(Path("."))).model_dump(mode="json", by_alias=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "HF_HUB_OFFLINE": "1", "DISTILL_PREFECT_PORT": str(port)}
    env.pop("MLFLOW_TRACKING_URI", None)
    services = [sys.executable, "-m", "distill.services"]
    try:
        served = subprocess.run(services + ["serve"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert served.returncode == 0, served.stdout + served.stderr
        run = subprocess.run(
            services + ["trigger", "-p", "train.max_steps=2", "-p", "eval.throughput_texts=16"],
            cwd=project, env=env, capture_output=True, text=True, timeout=600,
        )
        assert run.returncode == 0 and "Completed" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
        # The served process's output reaches the triggering terminal: the steps and the label bar.
        assert "== step label ==" in run.stdout and "teacher labels:" in run.stdout, run.stdout[-3000:]
    finally:
        subprocess.run(services + ["stop"], cwd=project, env=env, capture_output=True, timeout=120)
    registry = json.loads((project / "metrics/registry.json").read_text())
    assert registry["version"] == 1 and registry["alias"] in ("champion", "challenger") and registry["reason"]
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert metrics["eval/throughput_texts"] == 16.0
    assert (project / "mlflow.db").is_file() and (project / "mlartifacts").is_dir()
