import numpy as np

from distill.encoding import Encoder, turn_order


def test_token_budget_batches_match_plain_encode(minilm, tmp_path):
    texts = ["short one", "a somewhat longer sentence about markets and prices", "x " * 200, "tiny", "mid length text here"]
    encoder = Encoder(minilm, "teacher", tmp_path, prompts={"passage": "passage: "}, token_budget=64)
    budgeted = encoder.budget_encode(texts, "passage")
    plain = encoder.raw_encode(texts, "passage")
    np.testing.assert_allclose(budgeted, plain, atol=1e-5)
    cached = encoder.encode(texts, "passage")
    np.testing.assert_allclose(cached, plain, atol=2e-3)  # float16 storage
    assert encoder.misses == len(texts)
    encoder.encode(texts, "passage")
    assert encoder.misses == len(texts)  # second call is all hits


def test_progress_moves_once_per_batch(minilm, tmp_path):
    texts = [f"text number {i} " * (1 + i % 7) for i in range(40)]
    encoder = Encoder(minilm, "teacher", tmp_path, token_budget=128, shard_size=1000)
    batches = encoder.token_batches(texts, "passage")
    assert len(batches) > 3 and sorted(i for b in batches for i in b) == list(range(40))
    updates = []
    encoder.budget_encode(texts, "passage", on_batch=updates.append)
    assert updates == [len(b) for b in batches]  # one bar update per forward pass, not per shard


def test_no_prompt_means_no_default_prompt(minilm, tmp_path):
    """The cache key says "no prompt", so a model's own default prompt must not apply either."""
    minilm.prompts = {"passage": "passage: "}
    minilm.default_prompt_name = "passage"
    try:
        encoder = Encoder(minilm, "teacher", tmp_path)
        np.testing.assert_allclose(encoder.raw_encode(["hello"], "passage"),
                                   minilm.encode(["hello"], prompt="", normalize_embeddings=True), atol=1e-6)
        assert encoder.spec("passage")["prompt"] == ""
    finally:
        minilm.prompts, minilm.default_prompt_name = {}, None


def test_chunking_pools_cached_windows_by_token_count(minilm, tmp_path):
    from distill.config.schema import ChunkingConfig

    long_text = " ".join(f"Sentence number {i} reports on a different market today." for i in range(60))
    encoder = Encoder(minilm, "teacher", tmp_path, chunking=ChunkingConfig(tokens=48, overlap=8))
    windows = encoder.windows(long_text, "passage")
    assert len(windows) > 5 and all(n <= 48 for _, n in windows)
    assert windows[0][0].startswith("Sentence number 0") and windows[-1][0].endswith("market today.")
    pooled = encoder.encode([long_text, "a short text"], "passage")
    assert encoder.misses == len(windows) + 1  # the windows and the short text, nothing else
    window_embeddings = encoder.encode([w for w, _ in windows], "passage")
    weights = np.array([n for _, n in windows], dtype=np.float64)
    expected = (weights[:, None] * window_embeddings).sum(axis=0)
    np.testing.assert_allclose(pooled[0], expected / np.linalg.norm(expected), atol=1e-5)
    np.testing.assert_allclose(pooled[1], encoder.raw_encode(["a short text"], "passage")[0], atol=2e-3)
    encoder.encode([long_text], "passage")
    assert encoder.misses == len(windows) + 1  # pooling again reads the cached windows


def test_turn_order_gives_every_model_each_position_once_over_as_many_rounds():
    roles = ["teacher", "baseline", "student"]
    rounds = [turn_order(roles, i) for i in range(4)]
    assert rounds[:3] == [roles, ["baseline", "student", "teacher"], ["student", "teacher", "baseline"]]
    assert rounds[3] == roles  # the rotation wraps
    assert all(sorted(order) == sorted(roles) for order in rounds)
