"""Kill the label step with SIGKILL mid-way; the rerun reuses the finished shards and matches a clean run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from distill.config.loader import load_params
from distill.encoding import teacher_encoder
from distill.readers import load_corpus, load_queries
from distill.steps import label
from tests.conftest import ROOT, write_tiny_params


def test_label_resumes_after_kill(tmp_path):
    path = write_tiny_params(tmp_path, teacher={"shard_size": 8, "batch_size": 8})
    params = load_params(path)
    command = [sys.executable, "-m", "distill", "{}", "--params", str(path)]
    subprocess.run([c.format("prepare") for c in command], check=True, cwd=ROOT, capture_output=True)

    process = subprocess.Popen(
        [c.format("label") for c in command], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    cache_root = Path(params.paths.teacher_cache)
    deadline = time.monotonic() + 300
    while len(list(cache_root.rglob("shard-*.npz"))) < 3:
        assert process.poll() is None, "label finished before it could be interrupted"
        assert time.monotonic() < deadline, "label produced no shards in time"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    resumed = teacher_encoder(params, cache_root)
    cache = resumed.cache(params.corpus.text_type)
    finished_rows = len(cache)
    texts = load_corpus(params.paths.prepared)["text"].tolist()
    assert 0 < finished_rows < len(texts)
    label.run(params, resumed)
    labels = cache.get(texts)
    # The killed run got through part of the corpus only; the rerun encodes the rest of it, then the
    # training queries and cloze contexts (this teacher has no prompts: one cache namespace for all).
    queries = load_queries(params.paths.prepared)
    later = len(set(queries["query"])) + len(set(queries["positive"].dropna()))
    assert cache.stats.misses == len(texts) - finished_rows + later
    assert not list(cache.directory.glob(".shard-*"))

    clean = teacher_encoder(params, tmp_path / "clean-cache")
    expected = clean.encode(texts, params.corpus.text_type)
    np.testing.assert_allclose(labels, expected, atol=2e-3)
