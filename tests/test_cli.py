"""The command line exits non-zero with a message naming the field or file, and writes nothing."""

import subprocess
import sys

import yaml

from tests.conftest import ROOT, tiny_params_dict


def run_cli(tmp_path, step, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return subprocess.run(
        [sys.executable, "-m", "distill", step, "--params", str(path)], capture_output=True, text=True, cwd=ROOT
    )


def test_wrong_type_exits_with_the_key(tmp_path):
    data = tiny_params_dict(tmp_path)
    data["train"]["batch_size"] = "big"
    result = run_cli(tmp_path, "prepare", data)
    assert result.returncode == 2
    assert "train.batch_size" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_unknown_model_path_exits_cleanly(tmp_path):
    data = tiny_params_dict(tmp_path)
    assert run_cli(tmp_path, "prepare", data).returncode == 0
    data["teacher"]["model"] = "./no/such/model"
    result = run_cli(tmp_path, "label", data)
    assert result.returncode == 2
    assert "teacher.model: model path './no/such/model' does not exist" in result.stderr
    assert not (tmp_path / "data" / "teacher").exists()
