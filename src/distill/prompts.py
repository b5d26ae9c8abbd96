"""Prompts per text type (``query``, ``passage``, an instruction…), for teacher and student.

A prompt is prepended to every text of its type before encoding. The pipeline encodes ``query`` and
``passage`` texts (retrieval), ``sentence`` texts (STS) and corpus texts of ``corpus.text_type``;
types without a prompt get none.
The student's prompts are stored in the saved model (``config_sentence_transformers.json``), so
``SentenceTransformer(path).encode(texts, prompt_name="query")`` works after loading.
"""

from __future__ import annotations

from sentence_transformers import SentenceTransformer

from distill.config.base import TEXT_TYPES


def prompt_for(prompts: dict[str, str], text_type: str) -> str:
    return prompts.get(text_type, "")


def set_student_prompts(model: SentenceTransformer, prompts: dict[str, str]) -> None:
    """Save ``prompts`` into the model so they travel with it, with ``""`` for every other text type the
    pipeline encodes, so ``encode(..., prompt_name="query")`` works on every student (a served one
    takes ``prompt_name`` from the request); no prompt is applied by default."""
    model.prompts = {**dict.fromkeys(TEXT_TYPES, ""), **prompts}
    model.default_prompt_name = None

def non_empty_prompts(prompts: dict) -> dict:
    """Prompts per dataset (and per column) without the empty ones, in the trainer's format."""
    out = {}
    for name, prompt in prompts.items():
        prompt = non_empty_prompts(prompt) if isinstance(prompt, dict) else prompt
        if prompt:
            out[name] = prompt
    return out
