"""The sets behind a primary metric and each model's per-item scores on them, as the gate resamples them."""

from __future__ import annotations

from distill.evaluation.base import Items, set_items
from distill.evaluation.registry import EVALUATORS, EvalSet


def primary_sets(specs: list[EvalSet], primary_metric: str):
    """The sets behind ``primary_metric`` with their resample functions, for :mod:`distill.evaluation.gate`:
    every quality set for ``mean_score``, else the one named set."""
    chosen = [s for s in specs if s.in_mean_score and primary_metric in ("mean_score", f"{s.name}/{s.primary_metric}")]
    return [(spec.name, EVALUATORS[spec.type].primary_on) for spec in chosen]


def role_items(items: Items, role: str, specs: list[EvalSet]) -> dict[str, Items]:
    """Per-item arrays of one model (flat keys ``<role>/<set>/<field>``), grouped by set."""
    flat = {k[len(role) + 1:]: v for k, v in items.items() if k.startswith(f"{role}/")}
    return {spec.name: set_items(flat, spec.name) for spec in specs}
