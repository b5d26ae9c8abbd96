"""Errors the pipeline expects: each message names the params key, file or field and what was expected."""

from __future__ import annotations


class DataError(ValueError):
    """Corpus or evaluation data is malformed or missing; the message names the file or field."""


class ModelLoadError(ValueError):
    """A model reference cannot be resolved or loaded; the message names the params field."""


class ProvenanceError(ValueError):
    """An artifact is not the one a later step expects (e.g. a student other than the evaluated one)."""
