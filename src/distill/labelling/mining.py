"""Teacher-mined candidates for training queries: a positive and hard negatives per query.

Exact search over the cached teacher embeddings of the training passages (a matrix product in
torch chunks; held-out passages are evaluation documents and never candidates). Sentence
Transformers' ``util.mine_hard_negatives`` does the same ranking but encodes the corpus itself;
here the teacher's embeddings are already paid for, so the ranking reuses them.

Per query, the positive is the teacher's best passage among the known positives (the passages of
the query's document, or its inverse-cloze context), or its top-ranked passage for a user query.
Negatives come from teacher ranks ``[rank_start, rank_end)``, skipping the query's own document and
any passage the teacher scores within ``margin`` of the positive (likely an unlabelled positive,
the false-negative guard of RocketQA, https://arxiv.org/abs/2010.08191).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from distill.config.schema import MiningConfig

CANDIDATE_COLUMNS = ["query", "kind", "candidates", "scores"]


def rank_passages(queries: np.ndarray, passages: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` passage indices and cosines per query (embeddings are L2-normalised first)."""
    p = torch.nn.functional.normalize(torch.from_numpy(passages).float(), dim=-1)
    k = min(k, len(passages))
    indices, scores = [], []
    for begin in range(0, len(queries), chunk):
        q = torch.nn.functional.normalize(torch.from_numpy(queries[begin : begin + chunk]).float(), dim=-1)
        top = (q @ p.T).topk(k, dim=1)
        indices.append(top.indices.numpy())
        scores.append(top.values.numpy())
    return np.concatenate(indices), np.concatenate(scores)


def mine_candidates(
    queries: pd.DataFrame,
    query_embeddings: np.ndarray,
    passages: pd.DataFrame,
    passage_embeddings: np.ndarray,
    positive_embeddings: dict[str, np.ndarray],
    config: MiningConfig,
) -> tuple[pd.DataFrame, int]:
    """Candidates (positive first, then ``config.negatives`` hard negatives) and their teacher cosines
    for each query; queries left with too few negatives are dropped and counted.

    ``queries``: columns ``query, kind, doc_id, positive``; ``passages``: ``text, doc_id`` (training
    split); ``positive_embeddings``: teacher embeddings of the inverse-cloze contexts by text.
    """
    ranked, ranked_scores = rank_passages(query_embeddings, passage_embeddings, config.rank_end)
    texts = passages["text"].tolist()
    doc_ids = passages["doc_id"].astype(str).to_numpy()
    rows_of_doc: dict[str, list[int]] = {}
    for row, doc in enumerate(doc_ids):
        rows_of_doc.setdefault(doc, []).append(row)
    unit = torch.nn.functional.normalize(torch.from_numpy(passage_embeddings).float(), dim=-1).numpy()

    out, dropped = [], 0
    for i, query in enumerate(queries.itertuples(index=False)):
        q = query_embeddings[i] / np.linalg.norm(query_embeddings[i])
        own_doc = str(query.doc_id) if isinstance(query.doc_id, str) else None
        if isinstance(query.positive, str):  # inverse cloze: the passage the sentence came out of
            positive = query.positive
            vector = positive_embeddings[positive]
            positive_score = float(q @ (vector / np.linalg.norm(vector)))
        elif own_doc is not None and own_doc in rows_of_doc:  # a title: its document's best passage
            rows = rows_of_doc[own_doc]
            best = rows[int(np.argmax(unit[rows] @ q))]
            positive, positive_score = texts[best], float(unit[best] @ q)
        else:  # a user query: the teacher's first choice, whose document then counts as relevant
            best = int(ranked[i, 0])
            positive, positive_score = texts[best], float(ranked_scores[i, 0])
            own_doc = doc_ids[best]
        negatives, negative_scores = [], []
        for row, score in zip(ranked[i, config.rank_start :], ranked_scores[i, config.rank_start :]):
            if doc_ids[row] == own_doc or score > positive_score - config.margin:
                continue
            negatives.append(texts[row])
            negative_scores.append(float(score))
            if len(negatives) == config.negatives:
                break
        if len(negatives) < config.negatives:
            dropped += 1
            continue
        out.append({"query": query.query, "kind": query.kind, "candidates": [positive, *negatives],
                    "scores": [positive_score, *negative_scores]})
    return pd.DataFrame(out, columns=CANDIDATE_COLUMNS), dropped
