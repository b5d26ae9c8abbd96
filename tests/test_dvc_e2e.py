"""`dvc repro` in a fresh copy of the project on the tiny config, then a training-param change."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sentence_transformers import SentenceTransformer

from distill.config.loader import params_from_dict
from tests.conftest import project_copy, tiny_params_dict

pytestmark = pytest.mark.slow


def sh(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "Someone cuts an onion.", 4.2),
    ("The cat sleeps on the sofa.", "A dog runs in the park.", 0.4),
    ("Stocks fell sharply today.", "Share prices dropped a lot today.", 4.5),
    ("The team won the final.", "It rained all afternoon.", 0.2),
    ("A child is reading a book.", "A kid reads a book.", 4.6),
    ("The minister resigned.", "The chef cooked pasta.", 0.1),
    ("Two men are talking.", "Two people have a conversation.", 3.9),
]


def write_sts(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"g\tf\t2012\t{i:04d}\t{score}\t{a}\t{b}\n" for i, (a, b, score) in enumerate(rows)))


def test_dvc_repro_then_train_change(tmp_path):
    project = project_copy(tmp_path / "project")
    # An evaluation file inside paths.eval_data (evaldata/), which the DVC stages depend on.
    write_sts(project / "evaldata" / "sts.csv", STS_ROWS)
    data = tiny_params_dict(Path("."))
    data["eval"]["sets"].append({"name": "toy_sts", "type": "sts", "path": "evaldata/sts.csv"})
    # DVC reads tracked params from params.yaml itself, so write every key, defaults included.
    params = params_from_dict(data).model_dump(mode="json", by_alias=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(project / "src"),
    }
    dvc = [str(Path(sys.executable).parent / "dvc")]
    sh(dvc + ["repro"], project, env)

    student = SentenceTransformer(str(project / "models/student"))
    assert {"query": "query: ", "passage": "passage: "}.items() <= student.prompts.items()
    assert np.allclose(
        student.encode(["x"], prompt_name="passage"), student.encode(["passage: x"]), atol=1e-5
    )
    metrics = json.loads((project / "metrics/eval.json").read_text())
    for role in ("teacher", "baseline", "student"):
        assert {f"{role}/topics/accuracy", f"{role}/mean_score", f"{role}/texts_per_s"} <= metrics.keys()
    assert "student/toy_sts/spearman" in metrics
    shown = sh(dvc + ["metrics", "show", "--json"], project, env)
    assert "student/mean_score" in shown
    assert json.loads(sh(dvc + ["status", "--json"], project, env)) == {}

    # Changing an evaluation file reruns what reads it: decontamination and evaluation.
    write_sts(project / "evaldata" / "sts.csv", [*STS_ROWS[:-1], ("Two men are talking.", "Nobody speaks.", 1.0)])
    changed = set(json.loads(sh(dvc + ["status", "--json"], project, env)))
    assert {"prepare", "evaluate", "register"} <= changed and "label" not in changed
    sh(dvc + ["repro"], project, env)

    # Plots render offline: the template inlines vega instead of loading it from a CDN.
    sh(dvc + ["plots", "show"], project, env)
    page = (project / "dvc_plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "vegaEmbed" in page and "Training loss" in page

    params["train"]["learning_rate"] = 5e-5
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    status = sh(dvc + ["status", "--json"], project, env)
    changed = set(json.loads(status))
    # evaluate depends on train's output, so status can only name it once train has rerun.
    assert "train" in changed and "label" not in changed and "prepare" not in changed
    log = sh(dvc + ["repro"], project, env)
    assert "Stage 'label' didn't change, skipping" in log
    assert "Running stage 'train'" in log and "Running stage 'evaluate'" in log
