"""Position extension: tables, buffers and config grow together, and the student saves and loads at
its new length; position-only tuning leaves every other weight (and the native rows) untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from sentence_transformers.util import batch_to_device

from distill.config.schema import PositionExtension
from distill.errors import DataError
from distill.models import resolve_model
from distill.training.positions import extend_positions, native_length, position_rows, train_only_new_positions
from tests.conftest import needs_cuda
from tests.tiny_models import tiny_bert_embedder, tiny_decoder_embedder

LONG_TEXT = " ".join(f"Sentence {i} is about markets, football and elections in a long report." for i in range(120))
SHORT_TEXT = "A short text about cats."


@pytest.fixture()
def tiny_bert(tmp_path, word_tokenizer_dir):
    return SentenceTransformer(str(tiny_bert_embedder(tmp_path / "bert", str(word_tokenizer_dir), 32)))


def tiny_mpnet(path):
    """A 1-layer MPNet (positions start after its padding index) with mean pooling."""
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-mpnet-base-v2"))
    config = MPNetConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=514)
    MPNetModel(config).save_pretrained(path / "hf")
    tokenizer.save_pretrained(path / "hf")
    SentenceTransformer(modules=[Transformer(str(path / "hf")), Pooling(32, "mean")]).save(str(path))
    return SentenceTransformer(str(path))


@pytest.mark.parametrize("method", ["copy_tile", "interpolate", "grouped"])
@pytest.mark.parametrize("architecture", ["bert", "mpnet"])
def test_extended_student_round_trips_through_save_and_load(tmp_path, tiny_bert, method, architecture):
    model = tiny_bert if architecture == "bert" else tiny_mpnet(tmp_path / "mpnet")
    short_before = model.encode([SHORT_TEXT])
    assert extend_positions(model, PositionExtension(length=2048, method=method)) == 512
    long_embedding = model.encode([LONG_TEXT])
    model.save(str(tmp_path / "saved"))

    loaded = SentenceTransformer(str(tmp_path / "saved"))
    assert loaded.max_seq_length == 2048 and native_length(loaded) == 2048
    assert loaded.tokenizer.model_max_length == 2048
    assert loaded.tokenize([LONG_TEXT])["input_ids"].shape[1] > 1024  # the long text is read, not cut at 512
    np.testing.assert_allclose(loaded.encode([LONG_TEXT]), long_embedding, atol=1e-5)
    short_after = loaded.encode([SHORT_TEXT])
    if method == "copy_tile":  # the native vectors keep their positions: short texts encode as before
        np.testing.assert_allclose(short_after, short_before, atol=1e-5)
    else:
        assert not np.allclose(short_after, short_before, atol=1e-5)


def test_position_mappings():
    assert position_rows(4, 8, "copy_tile").tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert position_rows(4, 8, "recurrent").tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert position_rows(4, 8, "grouped").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    interpolated = position_rows(4, 7, "interpolate")
    assert interpolated[0] == 0 and interpolated[-1] == 3 and interpolated[2] == 1.0


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_rope_student_is_scaled_through_its_config(tmp_path, device):
    model = SentenceTransformer(str(tiny_decoder_embedder(tmp_path / "qwen")), device=device)
    assert extend_positions(model, PositionExtension(length=4096, method="yarn")) == 512
    text = "word " * 3000
    embedding = model.encode([text])
    model.save(str(tmp_path / "saved"))
    loaded = SentenceTransformer(str(tmp_path / "saved"), device=device)
    config = loaded[0].auto_model.config
    assert loaded.max_seq_length == 4096 and config.max_position_embeddings == 4096
    assert config.rope_parameters["rope_type"] == "yarn" and config.rope_parameters["factor"] == 8.0
    np.testing.assert_allclose(loaded.encode([text]), embedding, atol=1e-5)


def test_bad_extensions_name_the_field(tiny_bert, tmp_path):
    with pytest.raises(DataError, match="student.extend_positions.length 256 is not longer"):
        extend_positions(tiny_bert, PositionExtension(length=256))
    with pytest.raises(DataError, match="student.extend_positions.method 'yarn'"):
        extend_positions(tiny_bert, PositionExtension(length=1024, method="yarn"))
    rope = SentenceTransformer(str(tiny_decoder_embedder(tmp_path / "qwen")))
    with pytest.raises(DataError, match="has none"):
        extend_positions(rope, PositionExtension(length=1024, method="copy_tile"))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_position_only_tuning_changes_only_the_new_position_vectors(tiny_bert, device):
    """On a GPU under bf16 autocast as the trainer runs it there: the gradient mask lives on the table's device."""
    tiny_bert.to(device)
    native = extend_positions(tiny_bert, PositionExtension(length=1024))
    before = {name: p.detach().clone() for name, p in tiny_bert.named_parameters()}
    hook = train_only_new_positions(tiny_bert, native, "copy_tile")
    trainable = [p for p in tiny_bert.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    features = batch_to_device(tiny_bert.tokenize([LONG_TEXT, SHORT_TEXT]), device)
    for _ in range(2):
        optimizer.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = tiny_bert(features)["sentence_embedding"].float().pow(2).sum()
        loss.backward()
        optimizer.step()
    hook.remove()
    for name, parameter in tiny_bert.named_parameters():
        if name.endswith("position_embeddings.weight"):
            assert torch.equal(parameter[:native], before[name][:native])
            assert not torch.equal(parameter[native:], before[name][native:])
        else:
            assert torch.equal(parameter, before[name]), name
