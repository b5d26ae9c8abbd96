import numpy as np
import pytest

from distill.cache import EmbeddingCache, text_key


def fake_encoder(calls):
    def encode(texts, on_batch):
        calls.append(list(texts))
        on_batch(len(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    return encode


def test_fill_encodes_only_missing_texts(tmp_path):
    calls = []
    cache = EmbeddingCache(tmp_path, {"model": "m", "prompt": ""})
    first = cache.fill(["aa", "b", "aa"], fake_encoder(calls), shard_size=10, show_progress=False)
    assert calls == [["aa", "b"]]
    assert first.shape == (3, 3) and np.array_equal(first[0], first[2])
    reopened = EmbeddingCache(tmp_path, {"model": "m", "prompt": ""})
    second = reopened.fill(["b", "ccc", "aa"], fake_encoder(calls), shard_size=10, show_progress=False)
    assert calls[-1] == ["ccc"] and reopened.stats.hits == 2 and reopened.stats.misses == 1
    assert np.array_equal(second[0], first[1])


def test_spec_change_misses_everything(tmp_path):
    calls = []
    EmbeddingCache(tmp_path, {"model": "m", "prompt": ""}).fill(["x1", "x2"], fake_encoder(calls), 10, show_progress=False)
    other = EmbeddingCache(tmp_path, {"model": "m", "prompt": "query: "})
    assert other.missing(["x1", "x2"]) == ["x1", "x2"]


def test_shards_are_float16_and_longest_first(tmp_path):
    calls = []
    cache = EmbeddingCache(tmp_path, {"m": 1})
    cache.fill(["a", "aaaa", "aa", "aaa", "aaaaa"], fake_encoder(calls), shard_size=2, show_progress=False)
    assert calls == [["aaaaa", "aaaa"], ["aaa", "aa"], ["a"]]
    shards = sorted(cache.directory.glob("shard-*.npz"))
    assert len(shards) == 3
    for shard in shards:
        with np.load(shard) as data:
            assert data["embeddings"].dtype == np.float16


@pytest.mark.parametrize("damage", ["truncate", "nan"])
def test_broken_shards_are_dropped_and_recomputed(tmp_path, damage):
    calls = []
    cache = EmbeddingCache(tmp_path, {"m": 1})
    cache.fill(["t1", "t22", "t333"], fake_encoder(calls), shard_size=1, show_progress=False)
    victim = next(p for p in cache.directory.glob("shard-*.npz") if np.load(p)["keys"].tobytes() == text_key("t22"))
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:40])
    else:
        with np.load(victim) as data:
            keys = data["keys"]
        np.savez(victim, keys=keys, embeddings=np.array([[np.nan, 0, 0]], dtype=np.float16))
    calls.clear()
    reopened = EmbeddingCache(tmp_path, {"m": 1})
    assert len(reopened) == 2 and not victim.exists()
    reopened.fill(["t1", "t22", "t333"], fake_encoder(calls), shard_size=1, show_progress=False)
    assert calls == [["t22"]]


def test_get_unknown_text_says_what_to_do(tmp_path):
    cache = EmbeddingCache(tmp_path, {"m": 1})
    cache.fill(["known"], fake_encoder([]), 4, show_progress=False)
    with pytest.raises(KeyError, match="run the label step first"):
        cache.get(["unknown"])


def test_non_finite_embeddings_are_refused(tmp_path):
    cache = EmbeddingCache(tmp_path, {"m": 1})
    with pytest.raises(ValueError, match="non-finite"):
        cache.add(["a"], np.array([[np.inf, 1.0]]))
    assert not list(tmp_path.rglob("shard-*"))


def test_two_cache_objects_on_one_namespace_never_overwrite(tmp_path):
    first, second = EmbeddingCache(tmp_path, {"m": 1}), EmbeddingCache(tmp_path, {"m": 1})
    first.fill(["a1"], fake_encoder([]), 4, show_progress=False)
    second.fill(["b22"], fake_encoder([]), 4, show_progress=False)  # second never saw first's shard
    first.fill(["c333"], fake_encoder([]), 4, show_progress=False)
    assert len(EmbeddingCache(tmp_path, {"m": 1})) == 3
