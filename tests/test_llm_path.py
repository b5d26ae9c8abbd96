"""The LLM-teacher and reranker paths on tiny randomly initialised models (no such weights exist here):
a decoder embedder with last-token pooling as teacher, a causal LM and a cross-encoder as score
teachers, through label → train → evaluate."""

import json

import numpy as np
import pytest
import torch

from distill.config.loader import load_params
from distill.config.schema import CausalLMScorer, CrossEncoderScorer
from distill.encoding import teacher_encoder
from distill.errors import ModelLoadError
from distill.labelling.scoring import cached_scores, load_reranker
from distill.models import load_model, resolve_model
from distill.readers import load_candidates
from distill.steps import evaluate, label, prepare, train
from tests.conftest import write_tiny_params
from tests.tiny_models import INSTRUCTION, tiny_causal_lm, tiny_cross_encoder, tiny_decoder_embedder


@pytest.fixture(scope="module")
def tiny_llms(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-llms")
    return {"embedder": tiny_decoder_embedder(root / "embedder"), "causal_lm": tiny_causal_lm(root / "lm"),
            "cross_encoder": tiny_cross_encoder(root / "ce", resolve_model("all-MiniLM-L6-v2"))}


def test_decoder_embedder_pools_the_eos_token_with_left_padding(tiny_llms):
    model = load_model(str(tiny_llms["embedder"]), field="teacher.model")
    tokenizer = model.tokenizer
    assert tokenizer.padding_side == "left"
    assert tokenizer("the bank raised rates")["input_ids"][-1] == tokenizer.eos_token_id
    text = "the bank raised rates"
    alone = model.encode([text])
    padded = model.encode([text, "a much longer text about the economy, the markets and the central bank today"])
    assert np.allclose(alone[0], padded[0], atol=1e-5), "left padding: the last position is the EOS token"
    with torch.no_grad():
        hidden = model[0].auto_model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0, -1]
    assert np.allclose(alone[0], torch.nn.functional.normalize(hidden, dim=-1).numpy(), atol=1e-5)


def test_llm_teacher_with_instructions_and_llm_reranker_run_label_train_evaluate(tmp_path, tiny_llms):
    params = load_params(write_tiny_params(
        tmp_path,
        teacher={"model": str(tiny_llms["embedder"]), "prompts": {"query": INSTRUCTION}, "max_seq_length": 128},
        mining={"negatives": 3, "rank_end": 20, "margin": 0.0,
                "scorer": {"type": "causal_lm", "model": str(tiny_llms["causal_lm"]), "batch_size": 16}},
        train={"objectives": {"similarity": 1.0, "margin_mse": 1.0, "kl": 1.0}, "teacher_temperature": 1.0,
               "max_steps": 3, "candidate_batch_size": 4},
    ))
    prepare.run(params)
    label.run(params)
    candidates = load_candidates(params.paths.mined)
    assert len(candidates) > 10 and all(len(c) == 4 for c in candidates["candidates"])
    # The scores are the reranker's (cached), not the embedder's cosines.
    reranker = load_reranker(params.mining.scorer)
    pairs = [(q, c) for q, cs in zip(candidates["query"], candidates["candidates"]) for c in cs]
    calls = []
    score = reranker.score
    reranker.score = lambda batch, on_batch: calls.append(len(batch)) or score(batch, on_batch)
    again = cached_scores(reranker, pairs, params.paths.teacher_cache)
    assert not calls, "reranker scores are never paid twice"
    assert np.allclose(np.concatenate(candidates["scores"].to_numpy()), again, atol=1e-6)
    # Queries carry the instruction, passages none: two cache namespaces.
    teacher = teacher_encoder(params, params.paths.teacher_cache)
    assert teacher.spec("query")["prompt"] == INSTRUCTION and teacher.spec("passage")["prompt"] == ""
    label.run(params, teacher)
    assert teacher.misses == 0, "a rerun of label encodes nothing"

    train.run(params)
    flat = evaluate.run(params)
    assert all(np.isfinite(v) for k, v in flat.items() if isinstance(v, float))
    info = json.loads((tmp_path / "models/student/distillation.json").read_text())
    assert info["objectives"] == {"similarity": 1.0, "margin_mse": 1.0, "kl": 1.0}
    assert info["train_queries"] == len(candidates)


def test_cross_encoder_scores_are_cached_per_model_query_and_passage(tmp_path, tiny_llms):
    config = CrossEncoderScorer(type="cross_encoder", model=str(tiny_llms["cross_encoder"]), batch_size=2)
    reranker = load_reranker(config)
    pairs = [("who won", "the home side won 2-1"), ("who won", "rain is due"), ("rates", "the bank raised rates")]
    first = cached_scores(reranker, pairs, tmp_path)
    assert first.shape == (3,) and np.isfinite(first).all() and len(set(first.round(6))) == 3
    direct = reranker.model.predict(pairs, activation_fn=torch.nn.Identity())
    assert np.allclose(first, direct, atol=1e-5), "scores are the cross-encoder's logits"
    calls = []
    score = reranker.score
    reranker.score = lambda batch, on_batch: calls.append(list(batch)) or score(batch, on_batch)
    cached_scores(reranker, pairs + [("rates", "a new phone")], tmp_path)
    assert calls == [[("rates", "a new phone")]], "only the new pair is scored"
    # Other weights are another cache key: nothing is reused across rerankers.
    retrained = tiny_cross_encoder(tmp_path / "ce2", resolve_model("all-MiniLM-L6-v2"), seed=1)
    other = load_reranker(config.model_copy(update={"model": str(retrained)}))
    assert other.spec["model"] != reranker.spec["model"]
    assert not np.allclose(cached_scores(other, pairs, tmp_path), first)


def test_reranker_answer_tokens_must_be_single_tokens(tiny_llms):
    with pytest.raises(ModelLoadError, match="yes_token.*expected exactly one"):
        load_reranker(CausalLMScorer(type="causal_lm", model=str(tiny_llms["causal_lm"]),
                                     yes_token=" yes indeed"))
