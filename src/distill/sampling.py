"""Seeded, order-independent sampling: the same seed picks the same texts on every machine."""

from __future__ import annotations

import hashlib

import pandas as pd

from distill.errors import DataError


def seeded_fraction(seed: int, purpose: str, value: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, purpose, value); each purpose draws independently."""
    digest = hashlib.blake2b(f"{seed}:{purpose}:{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def spread_sample(frame: pd.DataFrame, count: int, seed: int, purpose: str) -> pd.DataFrame:
    """Up to ``count`` rows spread across documents and labels, in a seeded order.

    Rows are dealt round-robin: each label (topic) in turn gives its next document's next text, so
    a small sample covers every topic and many documents instead of the first few articles.
    """
    if len(frame) <= count:
        return frame
    ranked = frame.assign(
        _doc=[seeded_fraction(seed, purpose, str(d)) for d in frame["doc_id"]],
        _row=[seeded_fraction(seed, purpose + "/row", str(t)) for t in frame["text"]],
        _label=frame["label"].fillna("").astype(str) if "label" in frame else "",
    )
    # Rank of a text within its document, then of its document within its label.
    ranked = ranked.sort_values(["_doc", "_row"], kind="stable")
    ranked["_in_doc"] = ranked.groupby("doc_id", sort=False).cumcount()
    doc_order = ranked.drop_duplicates("doc_id")[["doc_id", "_label"]]
    doc_order = doc_order.assign(_doc_in_label=doc_order.groupby("_label", sort=False).cumcount())
    ranked = ranked.merge(doc_order[["doc_id", "_doc_in_label"]], on="doc_id", how="left")
    ranked = ranked.sort_values(["_in_doc", "_doc_in_label", "_label", "_doc"], kind="stable")
    return ranked.head(count).drop(columns=["_doc", "_row", "_label", "_in_doc", "_doc_in_label"])


def heldout_half(seed: int, doc_id: str) -> str:
    """``dev`` or ``test``: a seeded half of the held-out documents, fixed per document, so sets built
    on different halves share no document."""
    return "dev" if seeded_fraction(seed, "heldout-half", doc_id) < 0.5 else "test"


def throughput_texts(heldout: pd.DataFrame, count: int, seed: int) -> list[str]:
    """The ``count`` held-out texts every model encodes for its throughput (repeated when fewer exist)."""
    texts = spread_sample(heldout, count, seed, "eval/throughput")["text"].tolist()
    if not texts:
        raise DataError("the held-out corpus is empty: raise corpus.heldout_fraction to measure throughput")
    return (texts * (count // len(texts) + 1))[:count]
