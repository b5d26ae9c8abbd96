"""What every params section shares: unknown keys refused, floats read from YAML 1.1 strings, the error type."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Strict

# YAML 1.1 reads "1e-4" (no dot) as a string; floats accept numeric strings, everything else is strict.
Float = Annotated[float, Strict(False)]


# The text types the pipeline encodes besides corpus.text_type: retrieval queries and documents, STS sentences.
TEXT_TYPES = ("query", "passage", "sentence")


class ParamsError(ValueError):
    """A params file or override is malformed; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
