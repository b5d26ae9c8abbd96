"""Prompts per text type (``query``, ``passage``, an instruction…), for teacher and student.

A prompt is prepended to every text of its type before encoding. Types without a prompt get none.
The student's prompts are stored in the saved model (``config_sentence_transformers.json``), so
``SentenceTransformer(path).encode(texts, prompt_name="query")`` works after loading.
"""

from __future__ import annotations

from sentence_transformers import SentenceTransformer

# The text types the pipeline encodes; prompts maps may use these names (and others, for users).
TEXT_TYPES = ("query", "passage", "sentence")


def prompt_for(prompts: dict[str, str], text_type: str) -> str:
    return prompts.get(text_type, "")


def set_student_prompts(model: SentenceTransformer, prompts: dict[str, str]) -> None:
    """Save ``prompts`` into the model so they travel with it; no prompt is applied by default."""
    model.prompts = dict(prompts)
    model.default_prompt_name = None
