import numpy as np

from distill.encoding import Encoder


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
