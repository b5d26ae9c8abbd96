"""The static student: a Model2Vec distillation of the teacher (Tulkens and van Dongen, 2024,
https://github.com/MinishLab/model2vec), as a Sentence Transformers ``StaticEmbedding`` model.

Every token of the teacher's vocabulary goes through the teacher once, alone between its special
tokens; the mean of the output token states is that token's vector. PCA reduces the vectors to
``pca_dims`` and each row is weighted by SIF, ``a / (a + p(token))``, with ``p`` estimated from the
token's rank by Zipf's law (token ids stand in for frequency ranks), which Model2Vec does in place
of corpus counts. A text's embedding is the mean of its tokens' vectors, normalised.

This is ``model2vec.distill.distill`` with pooling ``mean`` and the teacher's own tokenizer. It is
written here because ``model2vec[distill]`` 0.10 needs transformers<5.4 (through skeletoken) and the
project pins transformers 5.24; the result loads like any student, ``SentenceTransformer(path)``.
Training it further on the teacher's embeddings of the corpus (tokenlearn's recipe) is the train
step's ``cosine`` objective through the projection into the teacher's space (``params/static.yaml``).

The distillation is made once per teacher and setting by the label step, which pays every teacher
cost, and kept in the label cache (``<paths.teacher_cache>/static/<key>``); the train and evaluate
steps only read it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Normalize, Transformer
from sentence_transformers.sentence_transformer.modules import StaticEmbedding
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from distill.atomic import atomic_dir
from distill.config.schema import StaticStudentConfig
from distill.encoding import KEY_LIBRARIES
from distill.errors import DataError
from distill.models import fingerprint

log = logging.getLogger(__name__)


def vocabulary_embeddings(teacher: SentenceTransformer, batch_size: int) -> np.ndarray:
    """``(vocabulary, teacher hidden size)``: each token id alone between the teacher's special tokens,
    the mean of the teacher's output states over those positions (Model2Vec's ``mean`` pooling)."""
    transformer = teacher_transformer(teacher)
    tokenizer, model = transformer.tokenizer, transformer.auto_model
    prefix, suffix = special_tokens_around(tokenizer)
    rows = [[*prefix, token, *suffix] for token in range(len(tokenizer))]
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    out = np.empty((len(rows), model.config.hidden_size), dtype=np.float32)
    model.eval()
    with torch.inference_mode(), tqdm(total=len(rows), desc="teacher: vocabulary tokens", unit=" tokens") as bar:
        for begin in range(0, len(rows), batch_size):
            ids = torch.tensor(rows[begin: begin + batch_size], device=model.device)
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if takes_types:
                inputs["token_type_ids"] = torch.zeros_like(ids)
            out[begin: begin + len(ids)] = model(**inputs).last_hidden_state.float().mean(dim=1).cpu().numpy()
            bar.update(len(ids))
    return np.nan_to_num(out)


def teacher_transformer(teacher: SentenceTransformer) -> Transformer:
    transformer = teacher[0]
    if not isinstance(transformer, Transformer):
        raise DataError(f"student.init static distils the teacher's transformer; the teacher's first module is "
                        f"{type(transformer).__name__}")
    return transformer


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own tokens ([CLS] … [SEP], <s> … </s>, … <eos>)."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(inner) + 1):
        if full[start: start + len(inner)] == inner:
            return full[:start], full[start + len(inner):]
    raise DataError("student.init static: cannot find where the teacher's tokenizer puts a text among its special tokens")


def sif_weights(count: int, coefficient: float | None) -> np.ndarray:
    """Model2Vec's weights: SIF ``a / (a + p)`` with ``p`` from Zipf's law over the token ranks."""
    if coefficient is None:
        return np.ones(count, dtype=np.float32)
    inverse_rank = 1 / np.arange(2, count + 2)
    return (coefficient / (coefficient + inverse_rank / inverse_rank.sum())).astype(np.float32)


def distil_static(teacher: SentenceTransformer, config: StaticStudentConfig) -> SentenceTransformer:
    """The plain Model2Vec distillation of ``teacher``: ``StaticEmbedding`` → ``Normalize``."""
    transformer = teacher_transformer(teacher)
    hidden, vocabulary = transformer.auto_model.config.hidden_size, len(transformer.tokenizer)
    if config.pca_dims > min(hidden, vocabulary):  # checked before the minutes the teacher takes
        raise DataError(f"student.static.pca_dims {config.pca_dims} is above the teacher's {hidden} hidden dimensions "
                        f"(or its {vocabulary} tokens): lower it")
    vectors = vocabulary_embeddings(teacher, config.batch_size)
    vectors = PCA(n_components=config.pca_dims, svd_solver="full").fit_transform(vectors).astype(np.float32)
    vectors = np.ascontiguousarray(vectors * sif_weights(len(vectors), config.sif_coefficient)[:, None])
    embedding = StaticEmbedding(teacher.tokenizer, embedding_weights=vectors)
    return SentenceTransformer(modules=[embedding, Normalize()], device="cpu")


def static_key(teacher: SentenceTransformer, config: StaticStudentConfig) -> str:
    spec = {"teacher": fingerprint(teacher), "static": config.model_dump(mode="json", exclude={"batch_size"}),
            "libraries": {name: package_version(name) for name in KEY_LIBRARIES}}
    return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=12).hexdigest()


def static_folder(cache_root: str | Path, teacher: SentenceTransformer, config: StaticStudentConfig) -> Path:
    return Path(cache_root) / "static" / static_key(teacher, config)


def ensure_static_student(cache_root: str | Path, teacher: SentenceTransformer, config: StaticStudentConfig) -> Path:
    """The distillation for this teacher and setting in the label cache, made when it is not there."""
    folder = static_folder(cache_root, teacher, config)
    if not (folder / "modules.json").is_file():
        log.info("student.init static: distilling the teacher's vocabulary into %s", folder)
        model = distil_static(teacher, config)
        with atomic_dir(folder) as staging:
            model.save(str(staging))
    return folder


def load_static_student(cache_root: str | Path, teacher: SentenceTransformer, config: StaticStudentConfig) -> SentenceTransformer:
    folder = static_folder(cache_root, teacher, config)
    if not (folder / "modules.json").is_file():
        raise DataError(f"student.init static: no distillation of this teacher and student.static in {folder}: "
                        "run the label step first (python -m distill label)")
    return SentenceTransformer(str(folder), device="cpu")
