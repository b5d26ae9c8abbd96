"""All four steps in-process on the tiny config (the shipped recipe), with real models and the real
offline corpus."""

import json
import math
import re
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from distill.encoding import teacher_encoder
from distill.models import fingerprint
from distill.steps import label


def table_row(report: str, label: str) -> bool:
    """Whether a Markdown table of ``report`` has a row whose first cell is ``label``."""
    return re.search(rf"^\|\s*{re.escape(label)}\s*\|", report, flags=re.M) is not None

def test_student_loads_with_prompts(finished_pipeline):
    params, _ = finished_pipeline
    student = SentenceTransformer(params.paths.student)
    assert student.prompts["query"] == "query: " and student.prompts["passage"] == "passage: "
    with_prompt = student.encode(["who won the match"], prompt_name="query")
    explicit = student.encode(["query: who won the match"])
    assert np.allclose(with_prompt, explicit, atol=1e-5)
    card = (Path(params.paths.student) / "README.md").read_text()
    assert "all-MiniLM-L6-v2" in card and "query" in card


def test_metrics_are_complete_finite_and_in_range(finished_pipeline):
    params, flat = finished_pipeline
    on_disk = json.loads((Path(params.paths.metrics) / "eval.json").read_text())
    assert on_disk == flat
    for role in ("teacher", "baseline", "student"):
        primaries = ("headlines/ndcg@10", "topics/accuracy", "clusters/v_measure")
        for key in (*primaries, "headlines/recall@100", "headlines/mrr@10", "mean_score"):
            assert 0 <= flat[f"{role}/{key}"] <= 100, f"{role}/{key}"
        mean = np.mean([flat[f"{role}/{key}"] for key in primaries])
        assert abs(flat[f"{role}/mean_score"] - mean) < 1e-3
        assert flat[f"{role}/texts_per_s_min"] <= flat[f"{role}/texts_per_s"] <= flat[f"{role}/texts_per_s_max"]
        assert flat[f"{role}/parameters"] > 0 and flat[f"{role}/size_mb"] > 0
    for role in ("baseline", "student"):
        assert -100 <= flat[f"{role}/fid/sim_spearman"] <= 100
        assert flat[f"{role}/speedup"] > 0 and flat[f"{role}/retained_pct/mean_score"] > 0
    assert "teacher/fid/sim_spearman" not in flat  # fidelity sits beside the mean, never in it
    # BM25, the lexical reference, on the retrieval set: a headline shares words with its article.
    assert 0 < flat["bm25/headlines/ndcg@10"] <= 100 and "bm25/topics/accuracy" not in flat
    # A pretrained student has its own space even where dimensions match: no cosine to the teacher.
    assert "baseline/fid/cosine" not in flat
    low, high = flat["student/vs_baseline/low"], flat["student/vs_baseline/high"]
    assert low <= flat["student/vs_baseline/difference"] <= high
    for key in primaries:  # each quality set's own interval, around its own difference
        name = key.split("/")[0]
        difference = flat[f"student/vs_baseline/{name}/difference"]
        assert abs(difference - (flat[f"student/{key}"] - flat[f"baseline/{key}"])) < 1e-3, name
        assert flat[f"student/vs_baseline/{name}/low"] <= difference <= flat[f"student/vs_baseline/{name}/high"]
    assert all(math.isfinite(v) for v in flat.values() if isinstance(v, float))
    assert flat["student/fingerprint"] == fingerprint(SentenceTransformer(params.paths.student))
    assert flat["eval/throughput_texts"] == params.eval.throughput_texts


def test_report_and_plots_written(finished_pipeline):
    params, _ = finished_pipeline
    report = (Path(params.paths.reports) / "report.md").read_text()
    assert table_row(report, "distilled student") and "speed-up" in report
    assert table_row(report, "BM25 (lexical reference, no neural model)")
    first_line = report.splitlines()[0]
    assert first_line.startswith("**The distilled student")
    assert ("does NOT beat" in first_line) == (finished_pipeline[1]["student/vs_baseline/low"] <= 0)
    assert all(f"`{name}` " in first_line.split("Per set:")[1] for name in ("headlines", "topics", "clusters"))
    plots = Path(params.paths.plots)
    for name in ("eval/speed_quality.png", "eval/fidelity.png", "eval/fidelity.csv", "training/train_loss.csv"):
        assert (plots / name).stat().st_size > 0, name


def test_rerun_label_pays_nothing(finished_pipeline):
    params, _ = finished_pipeline
    encoder = teacher_encoder(params, params.paths.teacher_cache)
    label.run(params, encoder)
    assert encoder.misses == 0


def test_student_records_its_training_data(finished_pipeline):
    params, flat = finished_pipeline
    info = json.loads((Path(params.paths.student) / "distillation.json").read_text())
    assert info["corpus_sha256"] == flat["corpus/sha256"]
    documents = (Path(params.paths.student) / "train_documents.txt").read_text().split()
    assert len(documents) == info["train_documents"] > 0


def test_exports_encode_like_the_student_and_are_evaluated_beside_it(finished_pipeline):
    params, flat = finished_pipeline
    student = SentenceTransformer(params.paths.student)
    texts = ["who won the match", "Shares in the bank fell sharply after the results were announced."]
    reference = student.encode(texts, prompt_name="query", normalize_embeddings=True)
    # int8 rounds weights (and, for OpenVINO, activations): close to the fp32 student, not equal to it.
    floors = {"onnx": 0.9999, "onnx_int8": 0.98, "openvino_int8": 0.98}
    for fmt in params.export.formats:
        role = f"student_{fmt}"
        exported = SentenceTransformer(str(Path(params.paths.exports) / fmt), trust_remote_code=True)
        assert exported.prompts["query"] == "query: " and "safetensors" not in str(list(Path(params.paths.exports, fmt).rglob("*")))
        cosines = (exported.encode(texts, prompt_name="query", normalize_embeddings=True) * reference).sum(axis=1)
        assert cosines.min() >= floors[fmt], (fmt, cosines)
        for key in ("mean_score", "headlines/ndcg@10", "fid/sim_spearman", "texts_per_s", "speedup", "retained_pct/mean_score"):
            assert math.isfinite(flat[f"{role}/{key}"]), f"{role}/{key}"
        assert flat[f"{role}/vs_student/low"] <= flat[f"{role}/vs_student/difference"] <= flat[f"{role}/vs_student/high"]
        assert flat[f"{role}/parameters"] == flat["student/parameters"]
    assert abs(flat["student_onnx/vs_student/difference"]) < 0.5  # the same weights in another runtime
    for fmt in ("onnx_int8", "openvino_int8"):  # int8 weights: about a quarter of the fp32 folder
        assert flat[f"student_{fmt}/size_mb"] < 0.5 * flat["student_onnx/size_mb"], fmt
    report = (Path(params.paths.reports) / "report.md").read_text()
    for runtime in ("ONNX fp32", "ONNX Runtime int8 (dynamic)", "OpenVINO int8 (static, calibrated)"):
        assert table_row(report, f"distilled student, {runtime}"), runtime
    speed = (Path(params.paths.plots) / "eval/speed_quality.csv").read_text()
    assert speed.count("\n") == 1 + 3 + len(params.export.formats)  # header, three models, every export
