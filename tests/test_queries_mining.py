"""Query-shaped training data (prepare) and teacher-mined candidates (label)."""

import numpy as np
import pandas as pd
import pytest

from distill.config.base import ParamsError
from distill.config.corpus import CorpusConfig
from distill.config.loader import params_from_dict
from distill.config.schema import MiningConfig
from distill.errors import DataError
from distill.labelling.mining import mine_candidates, rank_passages
from distill.steps.prepare import build_corpus, build_queries, match_key
from distill.text import split_sentences


def bbc_corpus(**queries):
    config = CorpusConfig.model_validate({
        "sources": [{"type": "bbc", "unit": "passage", "max_documents": 40}], "heldout_fraction": 0.3,
        "queries": queries.get("queries", [{"type": "titles"}, {"type": "inverse_cloze"}]),
    })
    return config, build_corpus(config, seed=3)[0]


def test_titles_and_cloze_come_from_training_documents_only():
    config, corpus = bbc_corpus()
    queries, dropped = build_queries(corpus, config, seed=3)
    assert dropped == 0 and set(queries["kind"]) == {"title", "inverse_cloze"}
    train_docs = set(corpus.loc[corpus["split"] == "train", "doc_id"])
    heldout_titles = set(corpus.loc[corpus["split"] == "heldout", "title"])
    assert set(queries["doc_id"]) <= train_docs
    assert not set(queries["query"]) & heldout_titles, "held-out headlines are evaluation queries"
    cloze = queries[queries["kind"] == "inverse_cloze"]
    passages = dict(zip(corpus["text"], corpus["doc_id"]))
    for query, positive, doc in zip(cloze["query"], cloze["positive"], cloze["doc_id"]):
        assert query not in positive, "the cloze sentence is taken out of its passage"
        source = [t for t, d in passages.items() if d == doc and query in t]
        assert source and len(split_sentences(source[0])) == len(split_sentences(positive)) + 1
    again, _ = build_queries(corpus, config, seed=3)
    pd.testing.assert_frame_equal(queries, again)


def test_user_queries_are_read_deduplicated_and_decontaminated(tmp_path):
    (tmp_path / "q.txt").write_text("who won the election\nwho won  the election\nsingle\nleaked EVAL query\n")
    config, corpus = bbc_corpus(queries=[{"type": "file", "path": str(tmp_path / "q.txt")}])
    queries, dropped = build_queries(corpus, config, seed=3, excluded={match_key("leaked eval query")})
    assert queries["query"].tolist() == ["who won the election"] and dropped == 1
    assert queries["kind"].tolist() == ["user"] and queries["positive"].isna().all()


def test_bad_query_sources_name_the_file_or_column(tmp_path):
    config, corpus = bbc_corpus(queries=[{"type": "file", "path": str(tmp_path / "missing.txt")}])
    with pytest.raises(DataError, match="missing.txt does not exist"):
        build_queries(corpus, config, seed=3)
    pd.DataFrame({"text": ["a b"]}).to_csv(tmp_path / "q.csv", index=False)
    config, corpus = bbc_corpus(queries=[{"type": "file", "path": str(tmp_path / "q.csv")}])
    with pytest.raises(DataError, match=r"q.csv: missing column 'query'"):
        build_queries(corpus, config, seed=3)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_mining_picks_the_best_own_passage_and_guarded_hard_negatives():
    rng = np.random.default_rng(0)
    passages = pd.DataFrame({"text": [f"p{i}" for i in range(30)], "doc_id": [f"d{i // 3}" for i in range(30)]})
    embeddings = _unit(rng.normal(size=(30, 16))).astype(np.float32)
    query = _unit((embeddings[4] + 0.3 * embeddings[7] + 0.05 * rng.normal(size=16))[None]).astype(np.float32)
    queries = pd.DataFrame({"query": ["headline"], "kind": ["title"], "doc_id": ["d1"], "positive": [None]})
    config = MiningConfig(negatives=4, rank_start=0, rank_end=20, margin=0.0)
    mined, dropped = mine_candidates(queries, query, passages, embeddings, {}, config)
    candidates, scores = mined["candidates"][0], mined["scores"][0]
    assert dropped == 0 and candidates[0] == "p4", "the positive is the teacher's best passage of its own document"
    assert not {"p3", "p5"} & set(candidates[1:]), "passages of the query's own document are never negatives"
    assert len(candidates) == 5 and scores == sorted(scores, reverse=True)
    cosines = embeddings @ query[0]
    assert scores[0] == pytest.approx(cosines[4], abs=1e-5)
    # The false-negative guard: with a margin, nothing scored within it of the positive is a negative.
    guarded, _ = mine_candidates(queries, query, passages, embeddings, {}, MiningConfig(
        negatives=4, rank_start=0, rank_end=20, margin=0.2))
    assert max(guarded["scores"][0][1:]) <= guarded["scores"][0][0] - 0.2
    # Too few negatives in the window: the query is dropped and counted, never padded.
    none, dropped = mine_candidates(queries, query, passages, embeddings, {}, MiningConfig(
        negatives=4, rank_start=0, rank_end=4, margin=0.0))  # p4 takes one of the 4 ranks
    assert len(none) == 0 and dropped == 1


def test_rank_passages_is_exact_search():
    rng = np.random.default_rng(1)
    q, p = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    indices, scores = rank_passages(q, p, k=3, chunk=2)
    expected = _unit(q) @ _unit(p).T
    assert (indices == np.argsort(-expected, axis=1)[:, :3]).all()
    assert np.allclose(scores, np.sort(expected, axis=1)[:, ::-1][:, :3], atol=1e-5)


@pytest.mark.parametrize("train, message", [
    ({"objectives": {"simliarity": 1.0}}, "unknown"),
    ({"objectives": {"similarity": 0.0}}, "at least one objective"),
    ({"objectives": {"similarity": -1.0}}, ">= 0"),
    ({"mode": "asymmetric"}, "teacher-space objective"),
    ({"objectives": {"similarity": 1.0, "margin_mse": 0.0}, "matryoshka_dims": [64]}, "candidate objectives"),
])
def test_objective_params_are_checked_up_front(train, message):
    with pytest.raises(ParamsError, match=message):
        params_from_dict({"train": train})


def test_mining_window_must_hold_the_negatives():
    with pytest.raises(ParamsError, match="rank_end"):
        params_from_dict({"mining": {"negatives": 10, "rank_start": 5, "rank_end": 10}})
