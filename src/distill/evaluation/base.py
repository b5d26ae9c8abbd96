"""What every set type builds on: its config fields (:class:`SetSpec`, validated as one entry of
``eval.sets``), the evaluator interface, and the per-item scores an evaluator returns.

A set type is one module in :mod:`distill.evaluation` holding both its spec and its evaluator (the
evaluator's ``spec_class`` names the spec class), listed once in :data:`distill.evaluation.registry.SET_TYPES`.
These modules are imported when a config is validated, so they import no model library: the encoder
arrives as an argument and the heavy metric libraries load inside :mod:`~distill.evaluation.metrics`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd

from distill.config.base import _Section

if TYPE_CHECKING:
    from distill.encoding import Encoder

Items = dict[str, np.ndarray]
ToReferenceSpace = Callable[[np.ndarray], np.ndarray | None]


class SetSpec(_Section):
    """One ``eval.sets`` entry. Subclasses add ``type: Literal[...]`` (the discriminator), their fields,
    and the ``primary_metric`` their evaluator reports; ``in_mean_score`` says whether that metric enters
    the mean score."""

    primary_metric: ClassVar[str]
    in_mean_score: ClassVar[bool] = True
    name: str


class HeldoutSet(SetSpec):
    """A set built from the held-out corpus documents. Held-out documents fall into two seeded halves
    by doc id (:func:`distill.sampling.heldout_half`): a set on ``dev`` shares no document with one on
    ``test``, so recipes are chosen on dev sets (``params/dev.yaml``) and reported on test sets. null
    builds from every held-out document."""

    heldout_half: Literal["dev", "test"] | None = None


@dataclass(frozen=True)
class SetResult:
    scores: dict[str, float]  # metric name → value, 0–100 (cosine: −1..1)
    items: Items  # per-item arrays from which primary_on recomputes the primary metric


class Evaluator(ABC):
    """One evaluation set: its data, how a model is scored on it, and its primary metric."""

    spec_class: ClassVar[type[SetSpec]]  # the config fields of this set type
    uses_heldout: ClassVar[bool] = False  # data comes from the held-out corpus, not a file
    needs_tokenizer: ClassVar[bool] = False  # load takes the student's tokenizer (sets sized in its tokens)

    def __init__(self, spec: SetSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def primary_metric(self) -> str:
        return self.spec.primary_metric

    @classmethod
    @abstractmethod
    def load(cls, spec: SetSpec, heldout: pd.DataFrame | None, seed: int, text_type: str) -> Evaluator:
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
