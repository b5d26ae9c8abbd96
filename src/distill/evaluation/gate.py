"""The registry gate as a pure function: may this student become ``@champion``, and why (not)?

A student is promoted only when, on the primary metric and the same evaluation spec, the lower bound
of a seeded paired bootstrap interval of its difference to each rival (the undistilled student of
the same run, and the current champion) is above ``register.min_improvement``. Paired: each resample
draws the same pairs / queries / texts for both models, so the shared difficulty of the items
cancels out (Efron & Tibshirani, 1993; Koehn, 2004, "Statistical Significance Tests for Machine
Translation Evaluation"). Non-finite metrics fail with a reason; they never pass a floor or win.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from distill.config.schema import RegisterConfig

Items = dict[str, np.ndarray]
# One entry per set behind the primary metric: (set name, primary_on(items, index) → value).
PrimarySets = list[tuple[str, Callable[[Items, np.ndarray], float]]]


@dataclass(frozen=True)
class Interval:
    """Point estimate and bootstrap percentile interval of (student − rival) on the primary metric."""

    difference: float
    low: float
    high: float
    confidence: float
    resamples: int

    def __str__(self) -> str:
        return f"{self.difference:+.2f} [{self.low:+.2f}, {self.high:+.2f}] ({self.confidence:.0%} bootstrap)"

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def interval_text(flat: dict, prefix: str) -> str:
    """``+d [low, high]`` from the ``<prefix>/difference|low|high`` keys an interval is stored under in eval.json."""
    return f"{flat[f'{prefix}/difference']:+.2f} [{flat[f'{prefix}/low']:+.2f}, {flat[f'{prefix}/high']:+.2f}]"


def paired_bootstrap(
    student: dict[str, Items],
    rival: dict[str, Items],
    sets: PrimarySets,
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """Interval of mean over ``sets`` of (student − rival) primary metric, resampling each set's
    items with replacement, the same indices for both models."""
    for name, _ in sets:
        counts = {len(v) for items in (student[name], rival[name]) for v in items.values()}
        if len(counts) != 1:
            raise ValueError(f"set {name}: student and rival were scored on different items ({sorted(counts)})")

    def difference(indices: dict[str, np.ndarray]) -> float:
        return float(np.mean([score(student[n], indices[n]) - score(rival[n], indices[n]) for n, score in sets]))

    sizes = {name: len(next(iter(student[name].values()))) for name, _ in sets}
    rng = np.random.default_rng(seed)
    draws = np.array([
        difference({name: rng.integers(0, size, size) for name, size in sizes.items()}) for _ in range(resamples)
    ])
    draws = draws[np.isfinite(draws)]  # a degenerate resample (e.g. constant scores) has no correlation
    if not len(draws):
        raise ValueError("every bootstrap resample was degenerate; the evaluation sets are too small")
    tail = (1 - confidence) / 2 * 100
    point = difference({name: np.arange(size) for name, size in sizes.items()})
    return Interval(point, float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail)), confidence,
                    len(draws))


def decide(
    metrics: dict[str, float],
    config: RegisterConfig,
    versus_baseline: Interval,
    versus_champion: Interval | None,
) -> Decision:
    """Promote only when every floor is met and the student beats both rivals beyond noise.

    ``metrics`` are the flat ``eval.json`` values; ``versus_champion`` is None when the registry has
    no champion yet (a champion scored on another spec is re-evaluated by the caller, never skipped).
    """
    primary = f"student/{config.primary_metric}"
    for key in [primary, f"baseline/{config.primary_metric}", *config.min_metrics]:
        if key not in metrics:
            return Decision(False, f"metric {key} is missing from the evaluation")
        if not _finite(metrics[key]):
            return Decision(False, f"metric {key} is {metrics[key]!r}, not a finite number")
    for key, floor in config.min_metrics.items():
        if metrics[key] < floor:
            return Decision(False, f"{key}={metrics[key]:.4f} is below the minimum {floor}")
    margin = config.min_improvement
    for rival, interval in (("the undistilled student", versus_baseline), ("the champion", versus_champion)):
        if interval is None:
            continue
        if not all(_finite(v) for v in (interval.difference, interval.low, interval.high)):
            return Decision(False, f"{config.primary_metric} difference to {rival} is not finite: {interval}")
        if not interval.low > margin:
            return Decision(
                False,
                f"{config.primary_metric} does not beat {rival} beyond noise: student − rival = {interval}; "
                f"the lower bound must be above register.min_improvement={margin}",
            )
    against = "the undistilled student" + (" and the champion" if versus_champion is not None else " (no champion yet)")
    return Decision(True, f"{config.primary_metric} beats {against} beyond noise: vs undistilled {versus_baseline}"
                    + (f"; vs champion {versus_champion}" if versus_champion is not None else ""))


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
