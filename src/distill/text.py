"""Splitting text into sentences and passages (prepare's units, inverse-cloze queries, long-document filler)."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    sentences = []
    for paragraph in text.splitlines():
        paragraph = paragraph.strip()
        if paragraph:
            sentences.extend(s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip())
    return sentences


def split_passages(text: str, passage_chars: int) -> list[str]:
    """Consecutive sentences grouped into passages of about ``passage_chars`` characters."""
    passages, current = [], ""
    for sentence in split_sentences(text):
        if current and len(current) + 1 + len(sentence) > passage_chars:
            passages.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        passages.append(current)
    return passages
