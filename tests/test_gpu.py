"""The CUDA paths, on tiny randomly initialised models (no weights to download): an LLM teacher in
bf16 with SDPA attention, the LLM reranker, bf16 mixed-precision training of the student with the
long recipe, and evaluation. Skipped without a GPU; run them where one is (``pytest tests/test_gpu.py``,
README "Testing on a GPU")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from distill.config.loader import load_params
from distill.encoding import teacher_encoder
from distill.labelling.scoring import cached_scores, load_reranker
from distill.models import load_model
from distill.readers import load_candidates
from distill.steps import evaluate, label, prepare, train
from tests.conftest import needs_cuda, write_tiny_params
from tests.tiny_models import INSTRUCTION, tiny_bert_embedder, tiny_causal_lm, tiny_decoder_embedder

pytestmark = needs_cuda

TEXTS = ["the bank raised rates", "a late goal won the cup final for the home side",
         "the minister resigned after the vote", "a new phone with a larger screen goes on sale next week"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, word_tokenizer_dir):
    root = tmp_path_factory.mktemp("tiny-gpu")
    return {"embedder": tiny_decoder_embedder(root / "embedder"), "causal_lm": tiny_causal_lm(root / "lm"),
            "student": tiny_bert_embedder(root / "student", str(word_tokenizer_dir), 64)}


def test_llm_teacher_runs_in_bf16_with_sdpa_close_to_fp32(tiny):
    gpu = load_model(str(tiny["embedder"]), field="teacher.model", dtype="auto", attn_implementation="sdpa")
    backbone = gpu[0].auto_model
    assert backbone.device.type == "cuda" and backbone.dtype == torch.bfloat16
    assert backbone.config._attn_implementation == "sdpa"
    reference = load_model(str(tiny["embedder"]), field="teacher.model", device="cpu", dtype="float32")
    fast, exact = gpu.encode(TEXTS), reference.encode(TEXTS)
    assert fast.dtype == np.float32, "bf16 embeddings reach numpy and the cache as float32"
    cosines = (fast * exact).sum(axis=1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(exact, axis=1)
    assert cosines.min() > 0.99, cosines


def test_label_train_evaluate_on_the_gpu(tmp_path, tiny):
    params = load_params(write_tiny_params(
        tmp_path,
        teacher={"model": str(tiny["embedder"]), "prompts": {"query": INSTRUCTION}, "max_seq_length": 128,
                 "dtype": "auto", "attn_implementation": "sdpa", "chunking": {"tokens": 64, "overlap": 8}},
        student={"model": str(tiny["student"]), "max_seq_length": 1024, "extend_positions": {"length": 1024}},
        corpus={"long_documents": {"documents": 6, "min_tokens": 300, "max_tokens": 600}},
        mining={"negatives": 3, "rank_end": 20, "margin": 0.0,
                "scorer": {"type": "causal_lm", "model": str(tiny["causal_lm"]), "batch_size": 16}},
        train={"objectives": {"similarity": 1.0, "margin_mse": 1.0, "kl": 1.0}, "matryoshka_dims": [16, 32],
               "teacher_temperature": 1.0, "max_steps": 3, "candidate_batch_size": 4,
               "long": {"positions_epochs": 1, "full_epochs": 1, "token_budget": 2048}},
        eval={"token_budget": 4096, "sets": [
            {"name": "headlines", "type": "title_retrieval"},
            {"name": "topics", "type": "classification"},
            {"name": "passkey", "type": "passkey", "documents": 5, "lengths": [128, 768]},
            {"name": "long", "type": "long_retrieval", "documents": 5, "lengths": [128, 768]}]},
    ))
    prepare.run(params)
    label.run(params)
    teacher = teacher_encoder(params, params.paths.teacher_cache)
    assert teacher.model[0].auto_model.dtype == torch.bfloat16
    label.run(params, teacher)
    assert teacher.misses == 0, "bf16 labels are cached under their own key and never paid twice"
    candidates = load_candidates(params.paths.mined)
    scores = np.concatenate(candidates["scores"].to_numpy())
    assert np.isfinite(scores).all() and scores.std() > 0
    reranker = load_reranker(params.mining.scorer)
    assert reranker.model.device.type == "cuda" and reranker.model.dtype == torch.bfloat16
    pairs = [(q, c) for q, cs in zip(candidates["query"], candidates["candidates"]) for c in cs]
    assert np.allclose(cached_scores(reranker, pairs, params.paths.teacher_cache), scores, atol=1e-6)

    torch.cuda.reset_peak_memory_stats()  # the peak restarts at what the models above still hold
    held = torch.cuda.memory_allocated()
    train.run(params)
    assert torch.cuda.max_memory_allocated() > held, "the student trained on the GPU (memory beyond what was held)"
    weights = sorted((tmp_path / "models/student").rglob("*.safetensors"))
    assert weights
    for path in weights:
        with safe_open(path, "pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes == {"F32"}, f"bf16 autocast keeps fp32 master weights: {path} holds {dtypes}"

    flat = evaluate.run(params)
    assert all(np.isfinite(v) for v in flat.values() if isinstance(v, float))
    info = json.loads((tmp_path / "models/student/distillation.json").read_text())
    assert info["long_context"] == {"native_positions": 512, "length": 1024, "method": "copy_tile", "documents": 6}
    for role in ("teacher", "baseline", "student"):
        for key in ("passkey/len768/ndcg@1", "long/len768/ndcg@10", "headlines/ndcg@10"):
            assert 0 <= flat[f"{role}/{key}"] <= 100, (role, key)
