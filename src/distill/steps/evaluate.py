"""Step 4, evaluate: teacher, undistilled student, distilled student and each of its exports
(``export.formats``, read from ``paths.exports``) on every configured set, and BM25 on the retrieval sets.

Every model is scored by the same evaluators (:mod:`distill.evaluation`) on the same texts, and
encodes the same seeded sample of held-out texts with the same batch size and threads, in
alternating repeats, for throughput. The distilled student is compared with the undistilled one by a
paired bootstrap interval on the primary metric, and each export with the fp32 student. Outputs, written
together: ``<paths.metrics>/eval.json``
(flat keys), ``<paths.metrics>/per_item.npz`` (the per-item scores behind each primary metric, for
the registry gate), ``<paths.reports>/report.md`` and the evaluation plots.
Every model's embeddings of evaluation texts go through the cache under ``paths.eval_cache``, so
the teacher's pass over a 5,000-document retrieval corpus is paid once.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distill.config.schema import Params, export_role
from distill.encoding import Encoder, TruncatedEncoder, measure_throughput, teacher_encoder
from distill.errors import DataError, ProvenanceError
from distill.evaluation import metrics
from distill.evaluation.base import Evaluator
from distill.evaluation.gate import Interval, paired_bootstrap
from distill.evaluation.items import primary_sets, role_items
from distill.evaluation.registry import eval_spec, load_evaluators, score_model
from distill.evaluation.report import write_outputs
from distill.evaluation.retrieval import RetrievalEvaluator
from distill.models import load_model, model_info
from distill.readers import load_corpus, load_corpus_summary, load_exports_manifest
from distill.runtimes import load_exported
from distill.sampling import throughput_texts
from distill.student import base_student, load_distillation_info, shares_teacher_space, teacher_to_student_space

log = logging.getLogger(__name__)


def derived_metrics(results: dict[str, dict[str, float]], params: Params) -> dict[str, float]:
    """Retained % of the teacher (per quality set and mean score) and speed-up, for every student."""
    teacher = results["teacher"]
    derived = {}
    keys = [f"{s.name}/{s.primary_metric}" for s in params.eval.sets if s.in_mean_score] + ["mean_score"]
    for role in (r for r in results if r != "teacher"):
        for key in keys:
            if teacher.get(key) and key in results[role]:
                derived[f"{role}/retained_pct/{key.split('/')[0]}"] = 100 * results[role][key] / teacher[key]
        derived[f"{role}/speedup"] = results[role]["texts_per_s"] / teacher["texts_per_s"]
    return derived


def variant_metrics(
    student: Encoder, teacher: Encoder, evaluators: list[Evaluator], teacher_scores: dict[str, float], info: dict
) -> dict[str, float]:
    """Other ways to serve the distilled student, from cached embeddings (no extra encoding):

    - ``student_dim<d>/…``: its embeddings truncated to each trained Matryoshka dimension;
    - ``asymmetric/…``: when it lives in the teacher's space, its queries against the teacher's
      documents on every retrieval set, with retained % of the teacher (the query side runs at the
      student's speed-up)."""
    flat: dict[str, float] = {}
    quality = [e for e in evaluators if e.spec.in_mean_score]
    for dim in info.get("matryoshka_dims") or []:
        scores, _ = score_model(TruncatedEncoder(student, dim), quality)
        flat.update({f"student_dim{dim}/{key}": value for key, value in scores.items()})
    if info.get("target_space") == "teacher":
        for evaluator in (e for e in evaluators if isinstance(e, RetrievalEvaluator)):
            result = evaluator(student, document_encoder=teacher)
            flat.update({f"asymmetric/{evaluator.name}/{k}": v for k, v in result.scores.items()})
            primary = f"{evaluator.name}/{evaluator.primary_metric}"
            if teacher_scores.get(primary):
                flat[f"asymmetric/retained_pct/{evaluator.name}"] = (
                    100 * result.scores[evaluator.primary_metric] / teacher_scores[primary])
    return flat


def exported_students(params: Params, student: Encoder, **encoder_kwargs) -> dict[str, tuple[Encoder, float]]:
    """Each format of ``export.formats`` as an encoder under its role, with its size on disk (MiB), from
    ``paths.exports``; refused when the export step ran on another student than ``student``."""
    if not params.export.formats:
        return {}
    exports = Path(params.paths.exports)
    manifest = load_exports_manifest(exports)
    if manifest.get("student_fingerprint") != student.fingerprint:
        raise ProvenanceError(f"{exports} was exported from another student than {params.paths.student} "
                              f"({manifest.get('student_fingerprint')} vs {student.fingerprint}): run the export step")
    if missing := [fmt for fmt in params.export.formats if fmt not in manifest.get("formats", {})]:
        raise DataError(f"{exports} holds no {missing} export (export.formats changed?): run the export step")
    return {
        export_role(fmt): (Encoder(model=load_exported(exports / fmt, "paths.exports"), name=export_role(fmt),
                                   **encoder_kwargs), manifest["formats"][fmt]["size_mb"])
        for fmt in params.export.formats
    }


def run(params: Params) -> dict[str, float | str]:
    """Evaluate teacher, undistilled student, distilled student and its exports; write metrics, report, plots."""
    corpus = load_corpus(params.paths.prepared)
    heldout = corpus[corpus["split"] == "heldout"]
    text_type = params.corpus.text_type
    cache_root = Path(params.paths.eval_cache)
    teacher = teacher_encoder(params, cache_root)
    teacher.fallback_roots = (Path(params.paths.teacher_cache),)  # held-out texts were labelled already
    baseline = base_student(params, teacher.model)
    evaluators = load_evaluators(params.eval.sets, heldout, params.seed, text_type, tokenizer=baseline.tokenizer)
    watched = Path(params.paths.eval_data).resolve()
    unwatched = [str(p) for e in evaluators for p in e.data_files() if not p.resolve().is_relative_to(watched)]
    if unwatched:
        log.warning("evaluation files outside paths.eval_data (%s), whose changes DVC cannot see: %s",
                    params.paths.eval_data, unwatched)
    student_path = Path(params.paths.student)
    if not (student_path / "modules.json").is_file():
        raise DataError(f"{student_path} holds no trained student: run the train step first")
    student_kwargs = dict(cache_root=cache_root, prompts=params.student.prompts, normalize=True,
                          batch_size=params.eval.batch_size, token_budget=params.eval.token_budget)
    encoders = {
        "teacher": teacher,
        "baseline": Encoder(model=baseline, name="baseline", **student_kwargs),
        "student": Encoder(model=load_model(str(student_path), field="paths.student"), name="student", **student_kwargs),
    }
    exported = exported_students(params, encoders["student"], **student_kwargs)
    encoders.update({role: encoder for role, (encoder, _) in exported.items()})
    spaces = {
        "teacher": None,
        "baseline": (lambda x: x) if shares_teacher_space(params) else None,
        # An export is the student's own modules around another runtime: the same output space.
        **dict.fromkeys(["student", *exported], lambda x: teacher_to_student_space(student_path, x)),
    }

    results: dict[str, dict[str, float]] = {}
    items: dict[str, np.ndarray] = {}
    for role, encoder in encoders.items():
        scores, role_item_scores = score_model(encoder, evaluators, reference=teacher, to_reference_space=spaces[role])
        results[role] = scores
        items.update({f"{role}/{k}": v for k, v in role_item_scores.items()})

    speed_texts = throughput_texts(heldout, params.eval.throughput_texts, params.seed)
    # Every model at the evaluation batch size, so the speed-up compares like with like.
    for encoder in encoders.values():
        encoder.batch_size = params.eval.batch_size
    rates = measure_throughput(encoders, speed_texts, text_type, params.eval.throughput_warmup,
                               params.eval.throughput_repeats)
    for role, encoder in encoders.items():
        # An export's weights live in its graph, so its parameters are the student's and its size the folder's.
        info = model_info(encoders["student"].model if role in exported else encoder.model)
        results[role].update({
            "texts_per_s": statistics.median(rates[role]),
            "texts_per_s_min": min(rates[role]),
            "texts_per_s_max": max(rates[role]),
            "parameters": float(info.parameters),
            "size_mb": exported[role][1] if role in exported else info.size_mb,
        })

    registry = params.registry
    student_items, baseline_items = (role_items(items, role, params.eval.sets) for role in ("student", "baseline"))

    def versus(sets) -> Interval:
        return paired_bootstrap(student_items, baseline_items, sets, registry.bootstrap_resamples,
                                registry.confidence, params.seed)

    versus_baseline = versus(primary_sets(params.eval.sets, registry.primary_metric))
    # Each quality set's own interval too: where a difference comes from (the gate reads the primary one).
    versus_per_set = {name: versus([(name, on)]) for name, on in primary_sets(params.eval.sets, "mean_score")}
    summary = load_corpus_summary(params.paths.prepared)
    flat: dict[str, float | str] = {
        f"{role}/{key}": value for role, scores in results.items() for key, value in scores.items()
    }
    flat.update(derived_metrics(results, params))
    flat.update(variant_metrics(encoders["student"], teacher, evaluators, results["teacher"],
                                load_distillation_info(student_path)))
    # The lexical reference on every retrieval set: what a retrieval score is worth against no model.
    flat.update({f"bm25/{e.name}/{k}": v for e in evaluators if isinstance(e, RetrievalEvaluator)
                 for k, v in e.bm25().scores.items()})
    flat.update({f"student/vs_baseline/{k}": v for k, v in versus_baseline.as_dict().items()})
    flat.update({f"student/vs_baseline/{name}/{k}": interval.as_dict()[k] for name, interval in versus_per_set.items()
                 for k in ("difference", "low", "high")})
    # What each export loses against the fp32 student it was made from, on the primary metric.
    for role in exported:
        interval = paired_bootstrap(role_items(items, role, params.eval.sets), student_items,
                                    primary_sets(params.eval.sets, registry.primary_metric),
                                    registry.bootstrap_resamples, registry.confidence, params.seed)
        flat.update({f"{role}/vs_student/{k}": interval.as_dict()[k] for k in ("difference", "low", "high")})
    flat.update({
        "eval/threads": float(torch.get_num_threads()),
        "eval/batch_size": float(params.eval.batch_size),
        "eval/throughput_texts": float(len(speed_texts)),
        "eval/throughput_repeats": float(params.eval.throughput_repeats),
        "eval/spec": eval_spec(evaluators, heldout["doc_id"].unique().tolist(), params.seed),
        "corpus/decontaminated_texts": float(summary["decontamination"]["dropped_texts"]),
        "corpus/sha256": summary["corpus_sha256"],
        "student/fingerprint": encoders["student"].fingerprint,
    })
    flat = {k: round(v, 4) if isinstance(v, float) else v for k, v in flat.items()}
    fidelity = _fidelity_pairs(encoders, evaluators)
    write_outputs(params, flat, versus_baseline, items, fidelity)
    log.info("distilled − undistilled %s: %s", registry.primary_metric, versus_baseline)
    return flat


def _fidelity_pairs(encoders: dict[str, Encoder], evaluators) -> pd.DataFrame:
    """Teacher vs distilled-student pairwise cosines of held-out texts (cached, so free here)."""
    fidelity = next((e for e in evaluators if e.spec.type == "fidelity"), None)
    if fidelity is None:
        return pd.DataFrame(columns=["teacher_cosine", "student_cosine"])
    texts = fidelity.texts()[:200]
    return pd.DataFrame({
        "teacher_cosine": metrics.pairwise_cosines(encoders["teacher"].encode(texts, fidelity.text_type)),
        "student_cosine": metrics.pairwise_cosines(encoders["student"].encode(texts, fidelity.text_type)),
    })

