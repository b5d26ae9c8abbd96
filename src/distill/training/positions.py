"""Position extension: a student that reads more tokens than it was pretrained on.

Absolute-position students (BERT, MiniLM, MPNet, RoBERTa) get a longer position-embedding table:

- ``copy_tile``: the learned vectors repeated (Longformer's conversion, Beltagy et al., 2020,
  https://arxiv.org/abs/2004.05150). As a training-free mapping this is LongEmbed's recurrent
  positions (position ``p`` reads vector ``p mod native``), so ``recurrent`` builds the same table.
  The native vectors keep their positions, so texts up to the native length encode exactly as before.
- ``interpolate``: position interpolation (PI, Chen et al., 2023, https://arxiv.org/abs/2306.15595),
  vector ``p * (native-1)/(length-1)`` linearly interpolated.
- ``grouped``: grouped positions (GP, LongEmbed, Zhu et al., 2024, https://arxiv.org/abs/2404.12096),
  vector ``floor(p * native / length)``.

RoPE students (Qwen2, Llama, ModernBERT-like) are scaled through their config (``linear``,
``dynamic`` NTK or ``yarn``), which transformers reads when it builds the rotary embedding.

Everything the length lives in is updated (the table, the ``position_ids`` and ``token_type_ids``
buffers, ``config.max_position_embeddings``, the tokenizer's ``model_max_length`` and the Sentence
Transformers ``max_seq_length``), so ``SentenceTransformer(path)`` loads the saved student at its new
length.
"""

from __future__ import annotations

import logging

import torch
from sentence_transformers import SentenceTransformer
from torch import nn

from distill.config.schema import PositionExtension
from distill.errors import DataError

log = logging.getLogger(__name__)

ROPE_METHODS = ("linear", "dynamic", "yarn")
# The native vectors stay at their own positions, so "train only the new ones" means rows past them.
KEEPS_NATIVE_ROWS = ("copy_tile", "recurrent")


def _backbone(model: SentenceTransformer) -> nn.Module:
    return model[0].auto_model


def _position_table(model: SentenceTransformer) -> nn.Embedding | None:
    embeddings = getattr(_backbone(model), "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    return table if isinstance(table, nn.Embedding) else None


def _offset(table: nn.Embedding) -> int:
    """RoBERTa-style tables (MPNet too) reserve rows up to the padding index: positions start after it."""
    return table.padding_idx + 1 if table.padding_idx is not None else 0


def native_length(model: SentenceTransformer) -> int:
    """How many token positions the student's backbone holds now."""
    table = _position_table(model)
    if table is not None:
        return table.num_embeddings - _offset(table)
    return int(_backbone(model).config.max_position_embeddings)


def position_rows(native: int, length: int, method: str) -> torch.Tensor:
    """Fractional index into the ``native`` vectors for each of ``length`` positions."""
    positions = torch.arange(length, dtype=torch.float64)
    if method in KEEPS_NATIVE_ROWS:
        return torch.remainder(positions, native)
    if method == "grouped":
        return torch.floor(positions * native / length)
    if method == "interpolate":
        return positions * (native - 1) / (length - 1)
    raise ValueError(f"student.extend_positions.method {method!r} is not an absolute-position method")


def _extend_table(model: SentenceTransformer, table: nn.Embedding, length: int, method: str) -> None:
    offset = _offset(table)
    native = table.num_embeddings - offset
    old = table.weight.data[offset:]
    rows = position_rows(native, length, method).to(old.device)
    low = rows.floor().long()
    high = torch.clamp(low + 1, max=native - 1)
    fraction = (rows - low).to(old.dtype).unsqueeze(1)
    new = nn.Embedding(offset + length, table.embedding_dim, padding_idx=table.padding_idx,
                       device=old.device, dtype=old.dtype)
    with torch.no_grad():
        new.weight[:offset] = table.weight[:offset]
        new.weight[offset:] = (1 - fraction) * old[low] + fraction * old[high]
    embeddings = _backbone(model).embeddings
    embeddings.position_embeddings = new
    # Position (and BERT's token-type) ids are read from buffers sized to the table: they must grow
    # with it, or inputs past the native length index out of range.
    total = offset + length
    for name, values in (("position_ids", torch.arange(total)), ("token_type_ids", torch.zeros(total, dtype=torch.long))):
        if hasattr(embeddings, name) and isinstance(getattr(embeddings, name), torch.Tensor):
            embeddings.register_buffer(name, values.unsqueeze(0).to(old.device), persistent=False)
    _backbone(model).config.max_position_embeddings = total


def _scale_rope(model: SentenceTransformer, length: int, method: str) -> None:
    backbone = _backbone(model)
    config = backbone.config
    native = int(config.max_position_embeddings)
    rotary = backbone.rotary_emb
    parameters = dict(getattr(config, "rope_parameters", None) or {})
    parameters.update({"rope_type": method, "factor": length / native, "original_max_position_embeddings": native})
    config.rope_parameters = parameters
    config.max_position_embeddings = length
    backbone.rotary_emb = type(rotary)(config).to(next(backbone.parameters()).device)


def check_extension(model: SentenceTransformer, extension: PositionExtension) -> int:
    """The student's native length, after checking ``extension`` applies to it (before any training)."""
    native = native_length(model)
    if extension.length <= native:
        raise DataError(f"student.extend_positions.length {extension.length} is not longer than the student's "
                        f"{native} positions: nothing to extend")
    if extension.method in ROPE_METHODS:
        if getattr(_backbone(model), "rotary_emb", None) is None:
            raise DataError(f"student.extend_positions.method {extension.method!r} scales rotary positions, but the "
                            f"student ({type(_backbone(model)).__name__}) has no rotary embedding; use copy_tile, "
                            "interpolate or grouped")
    elif _position_table(model) is None:
        raise DataError(f"student.extend_positions.method {extension.method!r} extends a position-embedding table, and "
                        f"{type(_backbone(model)).__name__} has none (rotary positions?): use linear, dynamic or yarn")
    return native


def extend_positions(model: SentenceTransformer, extension: PositionExtension) -> int:
    """Extend ``model`` in place to ``extension.length`` tokens; returns the native length it had."""
    native = check_extension(model, extension)
    length, method = extension.length, extension.method
    if method in ROPE_METHODS:
        _scale_rope(model, length, method)
    else:
        _extend_table(model, _position_table(model), length, method)
    model.tokenizer.model_max_length = length
    model.max_seq_length = length
    log.info("student positions extended from %d to %d (%s)", native, length, method)
    return native


def train_only_new_positions(model: SentenceTransformer, native: int, method: str):
    """Freeze everything but the position table; with a table that keeps the native vectors at their
    positions, their rows get no gradient either (LongEmbed's tuning of E5-Base-4k). Train it with
    weight decay 0: decay would shrink the frozen rows through the optimiser. Returns the gradient
    hook's handle (or None): remove it before training the native rows too."""
    table = _position_table(model)
    if table is None:
        raise DataError("train.long.positions_epochs tunes position vectors, and the student has none (rotary "
                        "positions): set positions_epochs 0 and full_epochs above 0")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    table.weight.requires_grad_(True)
    if method in KEEPS_NATIVE_ROWS:
        keep = torch.zeros(table.num_embeddings, 1, device=table.weight.device)
        keep[_offset(table) + native:] = 1
        return table.weight.register_hook(lambda grad: grad * keep)
    return None


def train_everything(model: SentenceTransformer) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(True)
