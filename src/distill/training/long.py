"""The long-context stage: the teacher's targets for long training documents (chunk embeddings pooled),
and training the position-extended student on them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer

from distill.config.schema import ChunkingConfig, Params
from distill.encoding import Encoder
from distill.errors import DataError
from distill.readers import load_long_documents
from distill.training.fit import fit
from distill.training.losses import (
    QueryDocumentSimilarityLoss,
)
from distill.training.positions import train_everything, train_only_new_positions

log = logging.getLogger(__name__)


def long_training_targets(params: Params, teacher) -> tuple[pd.DataFrame, np.ndarray]:
    """The long training documents and their labels ``(rows, 2 * teacher_dim)``: the teacher's query
    embedding, then its (chunk-pooled) document embedding, both from the label cache."""
    frame = load_long_documents(params.paths.prepared)
    before = teacher.misses
    queries = teacher.encode(frame["query"].tolist(), "query", desc="teacher long-document queries")
    documents = teacher.encode(frame["text"].tolist(), params.corpus.text_type, desc="teacher long documents")
    if teacher.misses > before:
        raise DataError(f"{teacher.misses - before} long-document texts had no teacher label in "
                        f"{params.paths.teacher_cache}: run the label step first (python -m distill label)")
    return frame, np.hstack([queries, documents]).astype(np.float32)


def own_pooled_embeddings(student: SentenceTransformer, texts: list[str], native: int, params: Params,
                          scratch: str) -> np.ndarray:
    """The extended student's chunk-pooled embeddings of ``texts``: windows of its ``native`` length (which,
    with a table that keeps the native rows, it encodes exactly as before extension), pooled as the
    teacher's are (``teacher.chunking``'s overlap)."""
    extended = student.max_seq_length
    student.max_seq_length = native
    try:
        overlap = params.teacher.chunking.overlap if params.teacher.chunking else ChunkingConfig().overlap
        encoder = Encoder(model=student, name="student windows", cache_root=Path(scratch) / "own-pooled",
                          prompts=params.student.prompts, token_budget=params.train.long.token_budget,
                          chunking=ChunkingConfig(tokens=native, overlap=overlap))
        return encoder.encode(texts, params.corpus.text_type, desc="student's own chunk-pooled long documents")
    finally:
        student.max_seq_length = extended


def train_long(student: SentenceTransformer, params: Params, scratch: str, native: int,
               targets: tuple[pd.DataFrame, np.ndarray], short_sets: dict[str, Dataset],
               short_losses: dict[str, torch.nn.Module], short_prompts: dict, offset: int) -> list[dict]:
    """Long-context tuning (train.long) of the extended student: the new position vectors alone, then
    optionally everything on long pairs mixed with the short candidate objectives. Returns the log
    history with steps continuing from ``offset``."""
    config = params.train.long
    frame, labels = targets
    prompts = params.student.prompts
    long_prompts = {"long": {"query": prompts.get("query", ""), "document": prompts.get(params.corpus.text_type, "")}}
    bank = None
    if config.query_bank:
        # Every training document's query, prompted as the trainer prompts the query column.
        bank = ([long_prompts["long"]["query"] + q for q in frame["query"]],
                torch.from_numpy(labels[:, : labels.shape[1] // 2]))
    if config.own_weight:
        labels = np.hstack([labels, own_pooled_embeddings(student, frame["text"].tolist(), native, params, scratch)])
    dataset = Dataset.from_dict({"query": frame["query"].tolist(), "document": frame["text"].tolist(),
                                 "label": labels.tolist()})
    long_sets = {"long": dataset}
    long_losses = {"long": QueryDocumentSimilarityLoss(student, query_bank=bank, own_weight=config.own_weight)}
    # Padded width: the document plus the tokenizer's special tokens.
    lengths = [int(n) + 2 for n in frame["tokens"]]
    history: list[dict] = []
    stages = [("positions", config.positions_epochs, config.positions_learning_rate, 0.0, {}),
              ("full", config.full_epochs, params.train.learning_rate, params.train.weight_decay,
               {k: v for k, v in short_sets.items() if k == "candidates"})]
    for stage, epochs, learning_rate, weight_decay, mixed in stages:
        if not epochs:
            continue
        hook = train_only_new_positions(student, native, params.student.extend_positions.method) \
            if stage == "positions" else None
        log.info("long-context tuning (%s): %d documents, %g epochs, learning rate %g", stage, len(frame), epochs,
                 learning_rate)
        trainer = fit(student, params, scratch, {**long_sets, **mixed},
                      {**long_losses, **{k: short_losses[k] for k in mixed}},
                      {**long_prompts, **{k: short_prompts[k] for k in mixed if k in short_prompts}},
                      epochs=epochs, learning_rate=learning_rate, weight_decay=weight_decay, long_lengths=lengths)
        if hook is not None:
            hook.remove()
        train_everything(student)
        history += [{**h, "step": h["step"] + offset} for h in trainer.state.log_history if "step" in h]
        offset += trainer.state.global_step
    return history
