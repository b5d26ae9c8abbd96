"""All four steps in-process on the tiny config, with real models and the real offline corpus."""

import json
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from distill import label, train
from distill.models import ModelLoadError


def test_student_loads_with_prompts(finished_pipeline):
    params, _ = finished_pipeline
    student = SentenceTransformer(params.paths.student)
    assert student.prompts["query"] == "query: " and student.prompts["passage"] == "passage: "
    with_prompt = student.encode(["who won the match"], prompt_name="query")
    explicit = student.encode(["query: who won the match"])
    assert np.allclose(with_prompt, explicit, atol=1e-5)
    card = (Path(params.paths.student) / "README.md").read_text()
    assert "all-MiniLM-L6-v2" in card and "query" in card


def test_metrics_have_every_key(finished_pipeline):
    params, flat = finished_pipeline
    on_disk = json.loads((Path(params.paths.metrics) / "eval.json").read_text())
    assert on_disk == flat
    for role in ("teacher", "baseline", "student"):
        for key in ("topics/accuracy", "clusters/v_measure", "mean_score", "texts_per_s", "parameters", "size_mb"):
            assert f"{role}/{key}" in flat, f"{role}/{key}"
    for role in ("baseline", "student"):
        assert f"{role}/fid/sim_spearman" in flat and f"{role}/speedup" in flat
        assert f"{role}/retained_pct/mean_score" in flat
    assert flat["baseline/fid/cosine"] > 0  # a pruned teacher shares the teacher's space
    assert flat["student/parameters"] < flat["teacher/parameters"]


def test_report_and_plots_written(finished_pipeline):
    params, _ = finished_pipeline
    report = (Path(params.paths.reports) / "report.md").read_text()
    assert "| distilled student |" in report and "speed-up" in report
    plots = Path(params.paths.plots)
    for name in ("eval/speed_quality.png", "eval/fidelity.png", "eval/fidelity.csv", "training/train_loss.csv"):
        assert (plots / name).stat().st_size > 0, name


def test_rerun_label_pays_nothing(finished_pipeline):
    params, _ = finished_pipeline
    encoder = label.teacher_encoder(params, params.paths.teacher_cache)
    label.run(params, encoder)
    assert encoder.misses == 0


def test_keep_layers_out_of_range(finished_pipeline):
    params, _ = finished_pipeline
    bad = params.model_copy(update={"student": params.student.model_copy(update={"keep_layers": [0, 9]})})
    with pytest.raises(ModelLoadError, match=r"student\.keep_layers.*out of range.*6 layers"):
        train.base_student(bad)
