"""Step 4, evaluate: teacher, undistilled student and distilled student on every configured set.

:func:`evaluate_model` is the one function that scores any model on all sets; :func:`run` calls it
for the three models, measures encode throughput on the same held-out texts, and writes
``<paths.metrics>/eval.json`` (flat keys), ``<paths.reports>/report.md`` and the evaluation plots.
Every model's embeddings of evaluation texts go through the cache under ``paths.eval_cache``, so
the teacher's pass over a 5,000-document retrieval corpus is paid once.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distill import metrics
from distill.cache import namespace_key, text_key
from distill.config import EvalSet, FidelitySet, LabelledSet, Params, RetrievalSet, StsSet
from distill.encoding import Encoder
from distill.evalsets import fidelity_texts, load_labelled, load_retrieval, load_sts
from distill.io import read_json, write_json
from distill.label import teacher_encoder
from distill.models import load_model, model_info
from distill.prepare import DataError, load_corpus
from distill.report import write_outputs
from distill.train import base_student, teacher_to_student_space

log = logging.getLogger(__name__)

MODEL_ROLES = ("teacher", "baseline", "student")
# The metric that stands for each set type in means, retained % and the registry gate.
PRIMARY_METRIC = {
    "sts": "spearman",
    "retrieval": "ndcg@10",
    "classification": "accuracy",
    "clustering": "v_measure",
    "fidelity": "sim_spearman",
}


@dataclass(frozen=True)
class LoadedSet:
    spec: EvalSet
    data: object


def load_sets(params: Params, heldout: pd.DataFrame) -> list[LoadedSet]:
    """Load every configured set before any model runs, so bad input fails fast."""
    loaded = []
    for spec in params.eval.sets:
        if isinstance(spec, StsSet):
            data: object = load_sts(spec)
        elif isinstance(spec, RetrievalSet):
            data = load_retrieval(spec)
        elif isinstance(spec, LabelledSet):
            data = load_labelled(spec, heldout, params.seed)
        else:
            data = fidelity_texts(spec, heldout)
        loaded.append(LoadedSet(spec, data))
    return loaded


def evaluate_model(
    encoder: Encoder,
    sets: list[LoadedSet],
    *,
    text_type: str,
    seed: int,
    reference: Encoder | None = None,
    to_reference_space: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> dict[str, float]:
    """Score one model on every set; keys are ``<set>/<metric>``.

    ``reference`` (the teacher) is needed for fidelity sets; ``to_reference_space`` maps the
    reference's embeddings into this model's target space for the teacher-student cosine, or
    returns None when the model has no such space (only the similarity-structure score is given).
    """
    scores: dict[str, float] = {}
    for item in sets:
        spec, data = item.spec, item.data
        if isinstance(spec, StsSet):
            first = encoder.encode(data.first, "sentence", desc=f"{encoder.name} {spec.name}")
            second = encoder.encode(data.second, "sentence", desc=f"{encoder.name} {spec.name}")
            scores[f"{spec.name}/spearman"] = metrics.sts_spearman(first, second, np.asarray(data.scores))
        elif isinstance(spec, RetrievalSet):
            queries = encoder.encode(data.queries, "query", desc=f"{encoder.name} {spec.name} queries")
            documents = encoder.encode(data.documents, "passage", desc=f"{encoder.name} {spec.name} documents")
            for metric, value in metrics.retrieval_scores(queries, documents, data.qrels).items():
                scores[f"{spec.name}/{metric}"] = value
        elif isinstance(spec, LabelledSet):
            train_x = encoder.encode(data.train_texts, text_type, desc=f"{encoder.name} {spec.name}")
            test_x = encoder.encode(data.test_texts, text_type, desc=f"{encoder.name} {spec.name}")
            if spec.type == "classification":
                scores[f"{spec.name}/accuracy"] = metrics.classification_accuracy(
                    train_x, data.train_labels, test_x, data.test_labels, seed
                )
            else:
                scores[f"{spec.name}/v_measure"] = metrics.clustering_v_measure(
                    np.vstack([train_x, test_x]), data.train_labels + data.test_labels, seed
                )
        elif isinstance(spec, FidelitySet):
            if reference is None or reference is encoder:
                continue
            model_x = encoder.encode(data, text_type, desc=f"{encoder.name} {spec.name}")
            teacher_x = reference.encode(data, text_type, desc=f"{reference.name} {spec.name}")
            scores[f"{spec.name}/sim_spearman"] = metrics.similarity_spearman(model_x, teacher_x)
            mapped = to_reference_space(teacher_x) if to_reference_space else None
            if mapped is not None and mapped.shape[1] == model_x.shape[1]:
                scores[f"{spec.name}/cosine"] = metrics.mean_cosine(model_x, mapped)
    primary = [
        scores[f"{item.spec.name}/{PRIMARY_METRIC[item.spec.type]}"]
        for item in sets
        if item.spec.type != "fidelity"
    ]
    if primary:
        scores["mean_score"] = float(np.mean(primary))
    return scores


def measure_throughput(encoder: Encoder, texts: list[str], text_type: str, warmup: int) -> float:
    """Texts per second of a plain ``encode`` (no cache), timed once after a warm-up.

    The result is remembered in ``<cache_root>/throughput.json`` under the model fingerprint, the
    texts, batch size, thread count, device and host, so an unchanged teacher or baseline is not
    run again when only the student changed.
    """
    record = Path(encoder.cache_root) / "throughput.json"
    key = namespace_key(
        {
            "model": encoder.fingerprint,
            "texts": [text_key(t).hex() for t in texts],
            "text_type": text_type,
            "batch_size": encoder.batch_size,
            "threads": torch.get_num_threads(),
            "device": str(encoder.model.device),
            "host": platform.node(),
        }
    )
    known = read_json(record) if record.is_file() else {}
    if key in known:
        return float(known[key])
    if warmup:
        encoder.raw_encode(texts[:warmup], text_type)
    start = time.perf_counter()
    encoder.raw_encode(texts, text_type)
    rate = len(texts) / (time.perf_counter() - start)
    write_json(record, {**known, key: rate})
    return rate


def _throughput_texts(heldout: pd.DataFrame, count: int) -> list[str]:
    texts = heldout["text"].tolist()
    if not texts:
        return []
    return (texts * (count // len(texts) + 1))[:count]


def run(params: Params) -> dict[str, float]:
    """Evaluate teacher, undistilled student and distilled student; write metrics, report, plots."""
    corpus = load_corpus(params)
    heldout = corpus[corpus["split"] == "heldout"]
    sets = load_sets(params, heldout)
    cache_root = Path(params.paths.eval_cache)
    teacher = teacher_encoder(params, cache_root)
    teacher.fallback_roots = (Path(params.paths.teacher_cache),)  # held-out texts were labelled already
    student_path = Path(params.paths.student)
    if not (student_path / "modules.json").is_file():
        raise DataError(f"{student_path} holds no trained student: run the train step first")
    student_kwargs = dict(
        cache_root=cache_root,
        prompts=params.student.prompts,
        normalize=True,
        batch_size=params.eval.batch_size,
    )
    encoders = {
        "teacher": teacher,
        "baseline": Encoder(model=base_student(params, teacher.model), name="baseline", **student_kwargs),
        "student": Encoder(model=load_model(str(student_path), field="paths.student"), name="student", **student_kwargs),
    }
    # A pruned-teacher baseline lives in the teacher's space; a pretrained one has no shared space.
    same_dim = encoders["baseline"].model.get_embedding_dimension() == teacher.model.get_embedding_dimension()
    spaces = {
        "teacher": None,
        "baseline": (lambda x: x) if same_dim else None,
        "student": lambda x: teacher_to_student_space(student_path, x),
    }

    results: dict[str, dict[str, float]] = {}
    for role, encoder in encoders.items():
        results[role] = evaluate_model(
            encoder,
            sets,
            text_type=params.corpus.text_type,
            seed=params.seed,
            reference=teacher,
            to_reference_space=spaces[role],
        )
    speed_texts = _throughput_texts(heldout, params.eval.throughput_texts)
    for role, encoder in encoders.items():
        info = model_info(encoder.model)
        results[role]["texts_per_s"] = measure_throughput(
            encoder, speed_texts, params.corpus.text_type, params.eval.throughput_warmup
        )
        results[role]["parameters"] = float(info.parameters)
        results[role]["size_mb"] = info.size_mb
    threads = torch.get_num_threads()
    flat = flatten_results(results, sets)
    flat["eval/threads"] = float(threads)
    flat["eval/throughput_texts"] = float(len(speed_texts))
    fidelity_pairs = _fidelity_pairs(encoders, sets, params.corpus.text_type)
    write_outputs(params, results, flat, sets, fidelity_pairs)
    return flat


def flatten_results(results: dict[str, dict[str, float]], sets: list[LoadedSet]) -> dict[str, float]:
    """``<role>/<set>/<metric>`` keys, plus retained % of the teacher and speed-up for both students."""
    flat = {f"{role}/{key}": round(value, 4) for role, scores in results.items() for key, value in scores.items()}
    teacher = results["teacher"]
    for role in ("baseline", "student"):
        for item in sets:
            key = f"{item.spec.name}/{PRIMARY_METRIC[item.spec.type]}"
            if key in teacher and key in results[role] and teacher[key]:
                flat[f"{role}/retained_pct/{item.spec.name}"] = round(100 * results[role][key] / teacher[key], 2)
        if teacher.get("mean_score"):
            flat[f"{role}/retained_pct/mean_score"] = round(100 * results[role]["mean_score"] / teacher["mean_score"], 2)
        flat[f"{role}/speedup"] = round(results[role]["texts_per_s"] / teacher["texts_per_s"], 3)
    return flat


def _fidelity_pairs(encoders: dict[str, Encoder], sets: list[LoadedSet], text_type: str) -> pd.DataFrame:
    """Teacher vs distilled-student pairwise cosines of held-out texts (cached, so free here)."""
    texts = next((item.data for item in sets if isinstance(item.spec, FidelitySet)), None)
    if not texts:
        return pd.DataFrame(columns=["teacher_cosine", "student_cosine"])
    texts = texts[:200]
    return pd.DataFrame(
        {
            "teacher_cosine": metrics.pairwise_cosines(encoders["teacher"].encode(texts, text_type)),
            "student_cosine": metrics.pairwise_cosines(encoders["student"].encode(texts, text_type)),
        }
    )
