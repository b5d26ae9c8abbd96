"""Long-context students end to end: long training documents, chunk-pooled teacher targets, the
extended student trained on new position vectors, and the LongEmbed-style evaluation sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sentence_transformers import SentenceTransformer

from distill.config.loader import load_params, read_params_file
from distill.encoding import Encoder
from distill.evaluation.long import LongDocumentEvaluator, LongSet
from distill.evaluation.registry import load_evaluators
from distill.readers import bbc_articles, load_long_documents
from distill.sampling import heldout_half
from distill.steps import evaluate, label, prepare, train
from distill.text import split_sentences
from tests.conftest import ROOT, write_tiny_params


@pytest.fixture(scope="module")
def heldout() -> pd.DataFrame:
    """Whole BBC articles as a held-out corpus: titles, doc ids and text (filler)."""
    articles = bbc_articles(40)
    return pd.DataFrame({"text": [a.body for a in articles], "doc_id": [a.doc_id for a in articles],
                         "source": "bbc", "title": [a.title for a in articles]})


@pytest.mark.parametrize("kind", ["passkey", "needle", "long_retrieval"])
def test_long_sets_hide_one_target_per_document_at_each_length(kind, heldout, minilm):
    spec = LongSet(name="s", type=kind, documents=12, lengths=[128, 512])
    evaluator = LongDocumentEvaluator.load(spec, heldout, 3, "passage", tokenizer=minilm.tokenizer)
    again = LongDocumentEvaluator.load(spec, heldout, 3, "passage", tokenizer=minilm.tokenizer)
    assert evaluator.by_length == again.by_length  # seeded
    for length, documents in evaluator.by_length.items():
        assert len(documents) == 12 and len({d.query for d in documents}) == 12
        counts = [len(minilm.tokenizer(d.text, add_special_tokens=False)["input_ids"]) for d in documents]
        assert all(length - 40 <= n <= length + 8 for n in counts), (length, counts)
        if kind != "long_retrieval":  # the hidden sentence is in its document and in no other
            for i, document in enumerate(documents):
                subject = document.query.rstrip("?").split(" of ", 1)[1]
                assert [subject in d.text for d in documents].count(True) == 1 and subject in document.text, i


def test_dev_and_test_halves_share_no_article(heldout, minilm):
    halves = {half: heldout[heldout["doc_id"].map(lambda d: heldout_half(3, d)) == half] for half in ("dev", "test")}
    assert all(len(h) >= 15 for h in halves.values())
    for kind in ("long_retrieval", "needle"):
        for half, other in (("dev", "test"), ("test", "dev")):
            spec = LongSet(name="s", type=kind, documents=5, lengths=[256], heldout_half=half)
            # Through load_evaluators, which gives every held-out set the rows of its half.
            documents = load_evaluators([spec], heldout, 3, "passage", tokenizer=minilm.tokenizer)[0].by_length[256]
            if kind == "long_retrieval":
                assert {d.query for d in documents} <= set(halves[half]["title"])
            foreign = [s for body in halves[other]["text"] for s in split_sentences(body) if len(s) > 60]
            assert not any(s in d.text for s in foreign for d in documents), (kind, half)


def test_a_student_that_reads_further_finds_more(heldout, minilm, tmp_path):
    """The metric can fail: at 512 tokens, the same model reading 32 tokens ranks worse than reading 256."""
    spec = LongSet(name="s", type="long_retrieval", documents=20, lengths=[512])
    evaluator = LongDocumentEvaluator.load(spec, heldout, 3, "passage", tokenizer=minilm.tokenizer)
    scores = {}
    for reads in (32, 256):
        minilm.max_seq_length = reads
        try:
            result = evaluator(Encoder(minilm, f"reads{reads}", tmp_path / str(reads)))
        finally:
            minilm.max_seq_length = 256
        scores[reads] = result.scores["len512/ndcg@10"]
        assert result.scores["ndcg@10"] == scores[reads] and len(result.items["primary"]) == 20
    assert scores[256] > scores[32] + 10, scores


def test_long_params_file_is_a_valid_layer_the_flow_accepts():
    params = load_params([ROOT / "params.yaml", ROOT / "params/long.yaml"])
    assert params.student.extend_positions.length == 2048 and params.train.long is not None
    assert "paths" not in read_params_file(ROOT / "params/long.yaml")  # the flow refuses paths.* overrides


@pytest.mark.slow
def test_long_recipe_runs_prepare_label_train_evaluate(tmp_path):
    params = load_params(write_tiny_params(
        tmp_path,
        teacher={"chunking": {"tokens": 32, "overlap": 8}},
        student={"max_seq_length": 1024, "extend_positions": {"length": 1024}},
        corpus={"long_documents": {"documents": 6, "min_tokens": 300, "max_tokens": 600}},
        train={"max_steps": 2, "long": {"positions_epochs": 1, "full_epochs": 1, "token_budget": 2048,
                                        "query_bank": True, "own_weight": 1.0}},
        eval={"token_budget": 4096, "sets": [
            {"name": "headlines", "type": "title_retrieval"},
            {"name": "passkey", "type": "passkey", "documents": 5, "lengths": [128, 768]},
            {"name": "long", "type": "long_retrieval", "documents": 5, "lengths": [128, 768]}]},
        register={"primary_metric": "long/ndcg@10"},
    ))
    prepare.run(params)
    documents = load_long_documents(params.paths.prepared)
    assert len(documents) == 6 and documents["tokens"].between(250, 600).all()
    train_ids = set(pd.read_parquet(f"{params.paths.prepared}/corpus.parquet").query("split == 'train'")["doc_id"])
    assert set(documents["doc_id"]) <= train_ids  # long documents come from training articles only
    label.run(params)
    train.run(params)
    student = SentenceTransformer(params.paths.student)
    assert student.max_seq_length == 1024
    info = json.loads((Path(params.paths.student) / "distillation.json").read_text())
    assert info["long_context"] == {"native_positions": 512, "length": 1024, "method": "copy_tile", "documents": 6}
    flat = evaluate.run(params)
    for role in ("teacher", "baseline", "student"):
        for key in ("passkey/len768/ndcg@1", "long/len768/ndcg@10", "long/ndcg@10"):
            assert 0 <= flat[f"{role}/{key}"] <= 100, (role, key)
    assert np.isfinite(flat["student/vs_baseline/difference"])


def test_token_budget_batches_cover_every_row_once_within_the_budget():
    from datasets import Dataset

    from distill.training.samplers import TokenBudgetBatchSampler

    lengths = [2050, 1030, 1500, 300, 2050, 800, 1200, 640, 1900, 90]
    dataset = Dataset.from_dict({"query": ["q"] * len(lengths), "document": ["d"] * len(lengths)})
    sampler = TokenBudgetBatchSampler(dataset, lengths, token_budget=4200, seed=5)
    batches = list(sampler)
    assert len(batches) == len(sampler) and sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 4200 for b in batches)
    sampler.set_epoch(1)
    assert sorted(map(tuple, sampler)) == sorted(map(tuple, batches))  # same batches, in a new order
