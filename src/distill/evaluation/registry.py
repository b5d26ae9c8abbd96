"""The set types, and what runs them all.

:data:`SET_TYPES` lists each set type's evaluator once; from it come :data:`EVALUATORS` (``type`` →
evaluator) and :data:`EvalSet`, the union that ``eval.sets`` and ``corpus.exclude_sets`` validate
against. A new set type is one module beside the others (its spec and its evaluator) and one entry
here. :func:`load_evaluators` loads a config's sets (held-out ones on their half of the held-out
documents); :func:`score_model` runs every evaluator for one model; :func:`eval_spec` fingerprints what
was evaluated (set configs, data file hashes, held-out documents), so scores are only ever compared on
the same spec.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union, get_args

import numpy as np
import pandas as pd
from pydantic import Field

from distill.evaluation.base import Evaluator, Items, ToReferenceSpace
from distill.evaluation.fidelity import FidelityEvaluator
from distill.evaluation.labelled import ClassificationEvaluator, ClusteringEvaluator
from distill.evaluation.long import LongDocumentEvaluator
from distill.evaluation.retrieval import RetrievalEvaluator, TitleRetrievalEvaluator
from distill.evaluation.sts import StsEvaluator
from distill.sampling import heldout_half

if TYPE_CHECKING:
    from distill.encoding import Encoder

SET_TYPES: tuple[type[Evaluator], ...] = (
    StsEvaluator,
    RetrievalEvaluator,
    TitleRetrievalEvaluator,
    ClassificationEvaluator,
    ClusteringEvaluator,
    FidelityEvaluator,
    LongDocumentEvaluator,
)

EVALUATORS: dict[str, type[Evaluator]] = {
    set_type: evaluator
    for evaluator in SET_TYPES
    for set_type in get_args(evaluator.spec_class.model_fields["type"].annotation)
}

# One eval.sets entry: the spec class whose ``type`` matches. Union over a tuple is how a union is
# built from a list at run time (``X | Y`` needs the members written out).
EvalSet = Annotated[Union[tuple(evaluator.spec_class for evaluator in SET_TYPES)], Field(discriminator="type")]  # noqa: UP007


def heldout_documents(spec: EvalSet, heldout: pd.DataFrame | None, seed: int) -> pd.DataFrame | None:
    """The held-out corpus rows a set may read: those of its ``heldout_half``, or all of them."""
    half = getattr(spec, "heldout_half", None)
    if heldout is None or half is None:
        return heldout
    return heldout[heldout["doc_id"].astype(str).map(lambda d: heldout_half(seed, d)) == half]


def load_evaluators(specs: list[EvalSet], heldout: pd.DataFrame, seed: int, text_type: str,
                    tokenizer=None) -> list[Evaluator]:
    """Load every configured set before any model runs, so bad input fails fast. ``tokenizer`` (the
    student's) measures the long-document sets' lengths."""
    loaded = []
    for spec in specs:
        evaluator = EVALUATORS[spec.type]
        context = {"tokenizer": tokenizer} if evaluator.needs_tokenizer else {}
        loaded.append(evaluator.load(spec, heldout_documents(spec, heldout, seed), seed, text_type, **context))
    return loaded


def file_evaluators(specs: list[EvalSet], seed: int, text_type: str) -> list[Evaluator]:
    """The sets read from files (not from the held-out corpus): what decontamination must remove."""
    loaded = []
    for spec in specs:
        evaluator = EVALUATORS[spec.type]
        if evaluator.uses_heldout and getattr(spec, "path", None) is None:
            continue
        loaded.append(evaluator.load(spec, None, seed, text_type))
    return loaded


def score_model(
    encoder: Encoder,
    evaluators: list[Evaluator],
    reference: Encoder | None = None,
    to_reference_space: ToReferenceSpace | None = None,
) -> tuple[dict[str, float], Items]:
    """Scores ``<set>/<metric>`` plus ``mean_score`` (mean of the quality sets' primary metrics,
    the same metrics for every model), and per-item arrays keyed ``<set>/<field>``."""
    scores: dict[str, float] = {}
    items: Items = {}
    for evaluator in evaluators:
        result = evaluator(encoder, reference, to_reference_space)
        scores.update({f"{evaluator.name}/{k}": v for k, v in result.scores.items()})
        items.update({f"{evaluator.name}/{k}": v for k, v in result.items.items()})
    primaries = [scores[f"{e.name}/{e.primary_metric}"] for e in evaluators if e.spec.in_mean_score]
    if primaries:
        scores["mean_score"] = float(np.mean(primaries))
    return scores, items


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def eval_spec(evaluators: list[Evaluator], heldout_doc_ids: list[str], seed: int) -> str:
    """A hash of what an evaluation measured: set configs, data file contents, held-out documents."""
    spec = {
        "sets": [e.spec.model_dump(mode="json") for e in evaluators],
        "files": {str(p): file_sha256(p) for e in evaluators for p in e.data_files()},
        "heldout_documents": sorted(map(str, heldout_doc_ids)),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
