import json
import subprocess
import sys

import numpy as np
import pytest

from distill.errors import DataError
from distill.labelling.cache import EmbeddingCache, text_key


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


def test_open_keeps_live_writers_temp_files_and_removes_orphans(tmp_path):
    import os
    import socket
    import time

    cache = EmbeddingCache(tmp_path, {"m": 1})
    cache.fill(["a1"], fake_encoder([]), 4, show_progress=False)
    host = socket.gethostname().replace("_", "-")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = cache.directory / f".shard-1-aa_p{os.getpid()}_h{host}.npz.tmp-x1"  # this process: alive
    orphan = cache.directory / f".shard-2-bb_p{dead.pid}_h{host}.npz.tmp-x2"  # a dead writer on this host
    remote = cache.directory / ".shard-3-cc_p1_hother-host.npz.tmp-x3"  # another host: cannot be asked
    stale_remote = cache.directory / ".shard-4-dd_p1_hother-host.npz.tmp-x4"
    for path in (live, orphan, remote, stale_remote):
        path.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale_remote, (old, old))
    EmbeddingCache(tmp_path, {"m": 1})
    assert live.exists() and remote.exists()
    assert not orphan.exists() and not stale_remote.exists()


def test_manifest_lists_every_writers_shards(tmp_path):
    first, second = EmbeddingCache(tmp_path, {"m": 1}), EmbeddingCache(tmp_path, {"m": 1})
    first.fill(["a1", "a2"], fake_encoder([]), 1, show_progress=False)
    second.fill(["b1"], fake_encoder([]), 1, show_progress=False)  # wrote last, never opened first's shards
    manifest = json.loads((first.directory / "manifest.json").read_text())
    assert manifest["rows"] == 3 and len(manifest["shards"]) == 3
    assert set(manifest["shards"]) == {p.name for p in first.directory.glob("shard-*.npz")}


def test_shards_of_another_dimension_stop_the_run(tmp_path):
    cache = EmbeddingCache(tmp_path, {"m": 1})
    cache.fill(["a1"], fake_encoder([]), 4, show_progress=False)
    np.savez(cache.directory / "shard-9_p1_hx.npz", keys=np.frombuffer(text_key("b"), dtype=np.uint8)[None],
             embeddings=np.zeros((1, 5), dtype=np.float16))
    with pytest.raises(DataError, match=r"shard-9_p1_hx.npz holds 5-dimensional rows .* hold 3"):
        EmbeddingCache(tmp_path, {"m": 1})


WRITER = """
import sys, time
import numpy as np
from distill.labelling.cache import EmbeddingCache
root, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def encode(texts, on_batch):
    time.sleep(0.3)  # a slow teacher: the other writer and the kill land mid-way
    with open(f"{root}/encoded-{first}.log", "a") as log:
        log.write("\\n".join(texts) + "\\n")
    return np.array([[len(t), int(t[1:]), 1.0] for t in texts], dtype=np.float32)
texts = [f"t{i}" for i in range(first, last)]
EmbeddingCache(root + "/cache", {"m": 1}).fill_missing(texts, encode, 4, show_progress=False)
"""


def test_two_writers_one_killed_then_rerun(tmp_path):
    """Two processes fill overlapping slices of one cache at once; one is SIGKILLed mid-way. The
    survivor's shards are all kept, the rerun encodes only what no finished shard holds, and every
    text is then in the cache once."""
    import os
    import signal
    import time

    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    victim = subprocess.Popen([sys.executable, str(script), str(tmp_path), "0", "60"])
    survivor = subprocess.Popen([sys.executable, str(script), str(tmp_path), "30", "90"])
    directory = EmbeddingCache(tmp_path / "cache", {"m": 1}).directory
    deadline = time.monotonic() + 120
    while len(list(directory.glob("shard-*.npz"))) < 6:
        assert victim.poll() is None and time.monotonic() < deadline, "the writers finished too soon"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=120) == 0
    finished = EmbeddingCache(tmp_path / "cache", {"m": 1})
    before = {t for t in (f"t{i}" for i in range(90)) if not finished.missing([t])}
    assert {f"t{i}" for i in range(30, 90)} <= before  # nothing of the survivor's was lost

    calls: list[list[str]] = []
    rerun = EmbeddingCache(tmp_path / "cache", {"m": 1})
    rerun.fill_missing([f"t{i}" for i in range(90)], fake_encoder(calls), 4, show_progress=False)
    assert sorted(t for call in calls for t in call) == sorted({f"t{i}" for i in range(90)} - before)
    assert len(EmbeddingCache(tmp_path / "cache", {"m": 1})) == 90
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["rows"] == 90
    assert set(manifest["shards"]) == {p.name for p in directory.glob("shard-*.npz")}
    assert not list(directory.glob(".shard-*"))  # the killed writer's temporary shard is gone


@pytest.mark.parametrize("damage", [b"{\"spec\": ", b"[]", b"{\"shards\": {}}"])
def test_damaged_manifest_is_rebuilt_from_the_shards(tmp_path, damage, caplog):
    cache = EmbeddingCache(tmp_path, {"m": 1})
    cache.fill(["a1", "a2", "a3"], fake_encoder([]), 2, show_progress=False)
    manifest = cache.directory / "manifest.json"
    written = json.loads(manifest.read_text())
    manifest.write_bytes(damage)
    reopened = EmbeddingCache(tmp_path, {"m": 1})
    assert json.loads(manifest.read_text()) == written and reopened.get(["a2"]).shape == (1, 3)
    assert "manifest.json is damaged" in caplog.text
    caplog.clear()
    EmbeddingCache(tmp_path, {"m": 1})  # an intact manifest is left alone, without a word
    assert "manifest.json" not in caplog.text
