"""Long documents built from short text, for long-context training and evaluation.

Every builder places one target (an article, a pass key, a one-sentence fact) at a seeded random
position among filler sentences until the document is about ``length`` tokens of the given
tokenizer, so a model that truncates sees the target only when it happens to fall early. Synthetic
tasks follow LongEmbed (Zhu et al., 2024, https://arxiv.org/abs/2404.12096): ``passkey`` and
``needle``; ``articles`` is its long-document retrieval on offline news text.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from distill.errors import DataError
from distill.readers import (
    bbc_articles,
)
from distill.text import collapse_whitespace, match_key, split_sentences

if TYPE_CHECKING:  # the config imports the evaluation sets, which import this module
    from distill.config.corpus import LongDocumentsConfig

FIRST_NAMES = ("Ada", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kira", "Luca",
               "Maya", "Nikolai", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Yusuf")
LAST_NAMES = ("Abbott", "Brandt", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
              "Jensen", "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Sato")
DISHES = ("soup", "stew", "curry", "pie", "salad", "risotto", "chowder", "dumplings", "omelette", "paella")
INGREDIENTS = ("smoked paprika", "star anise", "black garlic", "sumac", "juniper berries", "tamarind", "miso",
               "fennel pollen", "preserved lemon", "saffron", "cardamom", "sorrel", "lovage", "fenugreek")


@dataclass(frozen=True)
class LongDocument:
    text: str
    tokens: int  # of the tokenizer it was built with
    query: str


class TokenCounter:
    """Token counts (no special tokens) of a Hugging Face tokenizer, memoised per text."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._counts: dict[str, int] = {}

    def __call__(self, texts: Sequence[str]) -> list[int]:
        new = [t for t in dict.fromkeys(texts) if t not in self._counts]
        if new:
            ids = self.tokenizer(new, add_special_tokens=False, verbose=False)["input_ids"]
            self._counts.update(zip(new, map(len, ids)))
        return [self._counts[t] for t in texts]

    def head(self, text: str, tokens: int) -> str:
        """The longest prefix of ``text`` within ``tokens`` tokens (cut at a token boundary)."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = encoded["offset_mapping"]
        return text if len(offsets) <= tokens else text[: offsets[tokens - 1][1]]


def filler_sentences(texts: Sequence[str]) -> list[str]:
    return [s for text in texts for s in split_sentences(text) if len(s) > 20]


def place_among_filler(target: str, filler: Sequence[str], length: int, count: TokenCounter,
          rng: random.Random) -> tuple[str, int]:
    """``target`` at a random sentence boundary among filler sentences drawn in random order, about
    ``length`` tokens in all, and its token count; a target longer than ``length`` is cut to its first
    ``length`` tokens."""
    target_tokens = count([target])[0]
    if target_tokens >= length:
        return count.head(target, length), length
    budget = length - target_tokens
    chosen: list[str] = []
    for index in rng.sample(range(len(filler)), len(filler)):
        tokens = count([filler[index]])[0]
        if tokens > budget:
            if budget < 8:
                break
            continue
        chosen.append(filler[index])
        budget -= tokens
    chosen.insert(rng.randint(0, len(chosen)), target)
    return " ".join(chosen), length - budget


def pass_keys(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(pass-key sentence, query) pairs for ``count`` distinct people."""
    people = [f"{a} {b}" for a in FIRST_NAMES for b in LAST_NAMES]
    if count > len(people):
        raise ValueError(f"at most {len(people)} pass-key documents per length, asked for {count}")
    out = []
    for person in rng.sample(people, count):
        key = rng.randint(10000, 99999)
        out.append((f"The pass key of {person} is {key}. Remember it. {key} is the pass key of {person}.",
                    f"What is the pass key of {person}?"))
    return out


def needles(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(fact sentence, question) pairs, each about a distinct person's dish."""
    subjects = [(f"{a} {b}", d) for a in FIRST_NAMES for b in LAST_NAMES for d in DISHES]
    if count > len(subjects):
        raise ValueError(f"at most {len(subjects)} needle documents per length, asked for {count}")
    out = []
    for person, dish in rng.sample(subjects, count):
        ingredient = rng.choice(INGREDIENTS)
        out.append((f"The secret ingredient of {person}'s famous {dish} is {ingredient}.",
                    f"What is the secret ingredient of {person}'s famous {dish}?"))
    return out


def documents_at_length(
    targets: Sequence[tuple[str, str]], filler: Sequence[str], length: int, count: TokenCounter, seed: int
) -> list[LongDocument]:
    """One document of about ``length`` tokens per ``(target text, query)``, seeded by length."""
    rng = random.Random(f"{seed}/{length}")
    return [LongDocument(*place_among_filler(target, filler, length, count, rng), query=query) for target, query in targets]






LONG_COLUMNS = ["query", "text", "doc_id", "tokens"]


def build_long_documents(corpus: pd.DataFrame, config: LongDocumentsConfig, tokenizer, seed: int,
                         excluded: set[str] = frozenset()) -> pd.DataFrame:
    """``config.documents`` long documents from whole *training* BBC articles: each article at a random
    position among sentences of other training articles, ``min_tokens``..``max_tokens`` student tokens,
    with its headline as the query. Articles holding an evaluation text are left out."""
    train_ids = set(corpus.loc[(corpus["split"] == "train") & (corpus["source"] == "bbc"), "doc_id"].astype(str))
    articles = [a for a in bbc_articles() if a.doc_id in train_ids and a.title
                and not any(match_key(s) in excluded for s in split_sentences(a.body))]
    if len(articles) < 2:
        raise DataError(f"corpus.long_documents needs at least 2 training BBC articles with headlines, found "
                        f"{len(articles)}: add a bbc source to corpus.sources")
    count = TokenCounter(tokenizer)
    rng = random.Random(f"{seed}/long_documents")
    sentences = [(s, i) for i, a in enumerate(articles) for s in filler_sentences([a.body])]
    order = rng.sample(range(len(articles)), len(articles))
    rows = []
    for n in range(config.documents):
        index = order[n % len(articles)]
        article = articles[index]
        filler = [s for s, owner in sentences if owner != index]
        length = rng.randint(config.min_tokens, config.max_tokens)
        text, tokens = place_among_filler(collapse_whitespace(article.body), filler, length, count, rng)
        rows.append({"query": article.title, "text": text, "doc_id": article.doc_id, "tokens": tokens})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)
