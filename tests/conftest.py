"""Shared fixtures: a tiny real-model configuration (all-MiniLM-L6-v2 as teacher, the default
pretrained student and loss) and the project paths. Tests that need ../shared/data skip with a reason without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from distill.config.loader import deep_merge, load_params

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (run these where one is; the CPU paths are tested everywhere)")
needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "stsb").is_dir(), reason=f"benchmark data not found at {SHARED_DATA} (only in the dev sandbox)"
)


def tiny_params_dict(root: Path) -> dict:
    """A config that runs every step in well under a minute on 2 cores, with real models and data."""
    return {
        "seed": 7,
        "paths": {
            "prepared": str(root / "data/prepared"),
            "teacher_cache": str(root / "data/teacher"),
            "mined": str(root / "data/mined"),
            "eval_cache": str(root / "data/eval_cache"),
            "student": str(root / "models/student"),
            "exports": str(root / "models/exports"),
            "metrics": str(root / "metrics"),
            "reports": str(root / "reports"),
            "plots": str(root / "plots"),
            "lock": str(root / ".distill.lock"),
        },
        "teacher": {"model": "all-MiniLM-L6-v2", "max_seq_length": 64, "shard_size": 64},
        "register": {"bootstrap_resamples": 200},
        # The shipped recipe: a pretrained student and the objectives of params.yaml.
        "student": {"prompts": {"query": "query: ", "passage": "passage: "}, "max_seq_length": 128},
        "corpus": {
            "sources": [{"type": "bbc", "unit": "passage", "max_documents": 60}],
            "passage_chars": 1000,
            "heldout_fraction": 0.35,
        },
        # The shipped objectives (margin_mse and in_batch_kl in MatryoshkaLoss), mined from a shorter rank window;
        # three negatives a query rather than the default one, so the score objectives see several.
        "mining": {"negatives": 3, "rank_end": 20},
        # No exports by default (each costs ~10 s of tracing here); finished_pipeline and test_exports make them.
        "export": {"formats": [], "calibration_texts": 32},
        "train": {"epochs": 1, "batch_size": 32, "candidate_batch_size": 8, "eval_texts": 32, "eval_steps": 100,
                  "log_steps": 1},
        "eval": {
            "throughput_texts": 32,
            "throughput_warmup": 8,
            "sets": [
                {"name": "fid", "type": "fidelity", "max_texts": 40},
                {"name": "headlines", "type": "title_retrieval"},
                {"name": "topics", "type": "classification"},
                {"name": "clusters", "type": "clustering"},
            ],
        },
    }


def write_tiny_params(root: Path, **sections) -> Path:
    """``root/params.yaml``: the tiny config with its own MLflow store, each of ``sections`` merged
    into its section (``train={"max_steps": 2}``)."""
    data = tiny_params_dict(root)
    data["tracking"] = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}
    data = deep_merge(data, sections)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def labelled_tiny_project(root: Path, **sections) -> Path:
    """``root/params.yaml`` (see :func:`write_tiny_params`), prepared and labelled in-process."""
    from distill.steps import label, prepare

    params_file = write_tiny_params(root, **sections)
    params = load_params(params_file)
    prepare.run(params)
    label.run(params)
    return params_file


@pytest.fixture(scope="session")
def word_tokenizer_dir(tmp_path_factory) -> Path:
    """A small BPE tokenizer trained on BBC text: tiny models built on it need no downloaded weights."""
    from tests.tiny_models import word_tokenizer

    path = tmp_path_factory.mktemp("word-tokenizer")
    word_tokenizer(path)
    return path


@pytest.fixture(scope="session")
def minilm():
    from distill.models import load_model

    return load_model("all-MiniLM-L6-v2", field="teacher.model")


@pytest.fixture(scope="session")
def finished_pipeline(tmp_path_factory):
    """prepare → label → train → export (every format) → evaluate once on the tiny config; returns
    (params, metrics)."""
    from distill.steps import evaluate, export, label, prepare, train

    params = load_params(write_tiny_params(tmp_path_factory.mktemp("pipeline"),
                                           export={"formats": ["onnx", "onnx_int8", "openvino_int8"]}))
    prepare.run(params)
    label.run(params)
    train.run(params)
    export.run(params)
    flat = evaluate.run(params)
    return params, flat


def git(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def run_state(source: Path) -> list[Path]:
    """What a run leaves in a checkout (``dvc.lock``, every output ``dvc.yaml`` names, every path of
    ``params.yaml``'s ``paths`` section but the evaluation data): never part of a test project."""
    from distill.services.dvc_experiments import LOCK_FILE, PARAMS_FILE, stage_outputs

    paths = (yaml.safe_load((source / PARAMS_FILE).read_text()) or {}).get("paths") or {}
    outputs = [value for key, value in paths.items() if key != "eval_data" and isinstance(value, str)]
    return [source / name for name in (LOCK_FILE, *stage_outputs(source), *outputs)]


def source_files(source: Path = ROOT) -> list[str]:
    """The checkout's source tree: tracked files and untracked ones git does not ignore, less the
    state a run leaves (:func:`run_state`), so a test project never starts from a user's run."""
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=source, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    state = run_state(source)
    return [name for name in names if (source / name).is_file()
            and not any(source / name == path or path in (source / name).parents for path in state)]


def project_copy(target: Path, source: Path = ROOT) -> Path:
    """The project's source tree (:func:`source_files` of ``source``) in a new git repository with one
    commit, its own git identity and a DVC remote of its own beside it (never the user's ~/.cache)."""
    for name in source_files(source):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    git(["init", "-q"], target)
    git(["config", "user.name", "distill tests"], target)
    git(["config", "user.email", "tests@distill.invalid"], target)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-d", "-f", "local", str(target.parent / "dvc-remote")],
                   cwd=target, check=True, capture_output=True)
    git(["add", "-A"], target)
    git(["commit", "-q", "-m", "project copy"], target)
    return target
