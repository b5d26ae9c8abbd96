"""The evaluator interface every set type implements, and the per-item scores it returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from distill.config.eval_sets import (
    EvalSet,
)
from distill.encoding import Encoder

Items = dict[str, np.ndarray]
ToReferenceSpace = Callable[[np.ndarray], np.ndarray | None]


@dataclass(frozen=True)
class SetResult:
    scores: dict[str, float]  # metric name → value, 0–100 (cosine: −1..1)
    items: Items  # per-item arrays from which primary_on recomputes the primary metric


class Evaluator(ABC):
    """One evaluation set: its data, how a model is scored on it, and its primary metric."""

    uses_heldout: ClassVar[bool] = False  # data comes from the held-out corpus, not a file

    def __init__(self, spec: EvalSet) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def primary_metric(self) -> str:
        return self.spec.primary_metric

    @classmethod
    @abstractmethod
    def load(cls, spec: EvalSet, heldout: pd.DataFrame | None, seed: int, text_type: str) -> Evaluator:
        """Read and check the set's data; a missing or malformed file is an error, never a skip."""

    @abstractmethod
    def texts(self) -> list[str]:
        """Every text this set shows a model."""

    def data_files(self) -> list[Path]:
        """Files whose content the scores depend on (hashed into the evaluation spec)."""
        return []

    @abstractmethod
    def __call__(
        self, encoder: Encoder, reference: Encoder | None = None, to_reference_space: ToReferenceSpace | None = None
    ) -> SetResult: ...

    @staticmethod
    @abstractmethod
    def primary_on(items: Items, index: np.ndarray) -> float:
        """The primary metric on the items at ``index`` (a bootstrap resample)."""


def set_items(items: Items, name: str) -> Items:
    """The per-item arrays of one set, keyed by field."""
    prefix = f"{name}/"
    return {k[len(prefix):]: v for k, v in items.items() if k.startswith(prefix)}
