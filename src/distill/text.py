"""Splitting text into sentences and passages (prepare's units, inverse-cloze queries, long-document filler)."""

from __future__ import annotations

import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")
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


def collapse_whitespace(text: str) -> str:
    """Every run of whitespace as one space, ends stripped."""
    return _WHITESPACE.sub(" ", text).strip()

def match_key(text: str) -> str:
    """The form texts are compared in for decontamination: Unicode NFKC, casefolded, whitespace
    collapsed, so "Café  au lait" and "CAFÉ au lait" are one text."""
    return collapse_whitespace(unicodedata.normalize("NFKC", text).casefold())
