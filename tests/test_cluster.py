"""The label step on a real 2-worker Dask LocalCluster: the same cache as one process, a killed
worker's slice rerun elsewhere, and clear errors for an unreachable scheduler or a worker that
cannot load the teacher."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prefect.testing.utilities import prefect_test_harness

from distill.config.loader import load_params
from distill.config.schema import ClusterConfig
from distill.encoding import teacher_encoder
from distill.errors import DataError
from distill.labelling.dask_label import dask_client, label_on_client, missing_slices
from distill.steps import label, prepare
from tests.conftest import ROOT, labelled_tiny_project, write_tiny_params

sys.path.insert(0, str(ROOT / "flows"))
from distill_pipeline import label_on_cluster  # noqa: E402

pytestmark = pytest.mark.slow


def shard_rows(directory: Path) -> dict[bytes, np.ndarray]:
    """Every row of every shard on disk by key; fails on a key stored twice."""
    rows: dict[bytes, np.ndarray] = {}
    for shard in sorted(directory.glob("shard-*.npz")):
        with np.load(shard) as data:
            for key, embedding in zip(data["keys"], data["embeddings"]):
                assert bytes(key) not in rows, f"{shard.name} repeats a row another shard holds"
                rows[bytes(key)] = embedding.astype(np.float32)
    return rows


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The tiny project labelled in one process: (params, {namespace dir name: rows})."""
    params = load_params(labelled_tiny_project(tmp_path_factory.mktemp("one-process")))
    caches = Path(params.paths.teacher_cache)
    return params, {d.name: shard_rows(d) for d in caches.iterdir() if d.is_dir()}


def test_dask_labels_equal_one_process(tmp_path, single_process):
    expected_params, expected = single_process
    params = load_params(write_tiny_params(tmp_path, cluster={"n_workers": 2}))
    prepare.run(params)
    label.run(params)
    caches = Path(params.paths.teacher_cache)
    got = {d.name: shard_rows(d) for d in caches.iterdir() if d.is_dir()}
    assert set(got) == set(expected)  # the same namespaces: the same model, prompts and settings
    for namespace, rows in expected.items():
        assert set(got[namespace]) == set(rows)  # the same texts, each stored once
        for key, embedding in rows.items():
            np.testing.assert_allclose(got[namespace][key], embedding, atol=2e-3)  # float16 rounding
    assert (Path(params.paths.mined) / "candidates.parquet").read_bytes() == \
        (Path(expected_params.paths.mined) / "candidates.parquet").read_bytes()


def test_killed_worker_slice_is_rerun_elsewhere(tmp_path):
    params = load_params(write_tiny_params(tmp_path, teacher={"shard_size": 8}, cluster={"n_workers": 2}))
    prepare.run(params)
    encoder = teacher_encoder(params, params.paths.teacher_cache)
    slices = missing_slices(params, encoder)
    with dask_client(params.cluster) as client:
        pids = list(client.run(os.getpid).values())
        directory = encoder.cache(params.corpus.text_type).directory

        def kill_one_when_busy():
            deadline = time.monotonic() + 120
            while len(list(directory.glob("shard-*.npz"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(pids[0], signal.SIGKILL)  # a worker dies mid-way through its slices

        killer = threading.Thread(target=kill_one_when_busy)
        killer.start()
        encoded = label_on_client(client, params, slices)
        killer.join()
    texts = sum(len(s.rows) for s in slices)
    assert encoded <= texts
    for text_type in {s.text_type for s in slices}:
        cache = encoder.cache(text_type)
        cache.refresh()
        wanted = [t for s in slices if s.text_type == text_type for t in s.texts()]
        assert not cache.missing(wanted)  # no row lost
    for namespace in Path(params.paths.teacher_cache).iterdir():
        shard_rows(namespace)  # no row stored twice


def test_unreachable_scheduler_names_the_address():
    with pytest.raises(DataError, match=r"cluster.address 'tcp://127.0.0.1:9'.*dask scheduler"):
        with dask_client(ClusterConfig(address="tcp://127.0.0.1:9", connect_timeout=2)):
            pass


def test_worker_without_the_teacher_says_so(tmp_path):
    params = load_params(write_tiny_params(tmp_path, cluster={"n_workers": 1}))
    prepare.run(params)
    slices = missing_slices(params, teacher_encoder(params, params.paths.teacher_cache))
    missing_model = params.model_copy(update={"teacher": params.teacher.model_copy(
        update={"model": str(tmp_path / "not-on-this-worker")})})
    with dask_client(params.cluster) as client, pytest.raises(DataError, match=r"Dask worker failed.*teacher.model"):
        label_on_client(client, missing_model, slices[:1])
    assert not list(Path(params.paths.teacher_cache).rglob("shard-*"))


def test_prefect_flow_labels_on_dask_then_the_stage_encodes_nothing(tmp_path, single_process):
    """The flow's path: the label-on-dask subflow maps Prefect tasks on prefect-dask's DaskTaskRunner
    (a 2-worker LocalCluster); the label step that follows finds every text cached."""
    _, expected = single_process
    params = load_params(write_tiny_params(tmp_path, cluster={"n_workers": 2}))
    prepare.run(params)
    with prefect_test_harness():
        label_on_cluster(params)
    encoder = teacher_encoder(params, params.paths.teacher_cache)
    label.run(params, encoder)
    assert encoder.misses == 0
    caches = Path(params.paths.teacher_cache)
    got = {d.name: shard_rows(d) for d in caches.iterdir() if d.is_dir()}
    assert {n: set(r) for n, r in got.items()} == {n: set(r) for n, r in expected.items()}
