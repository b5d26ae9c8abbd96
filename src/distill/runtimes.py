"""Exported students: the distilled student's transformer as an ONNX or OpenVINO graph, in fp32 or
int8, inside a Sentence Transformers folder. ``SentenceTransformer(path, trust_remote_code=True)``
loads one (the input module is :class:`GraphTransformer`, in this installed package, not code from
the folder) and encodes with the student's own tokenizer, prompts, pooling, projection and
normalisation; only the transformer runs in the graph runtime.

Why not ``SentenceTransformer(path, backend="onnx"|"openvino")`` and the library's
``export_*_quantized_*`` helpers: they go through optimum, whose ONNX package needs
transformers<4.58 and whose OpenVINO package needs transformers<5.6, while sentence-transformers 6.2
needs transformers>=5.0 and the project pins 5.24. The graphs are made with the runtimes' own
converters instead: ``torch.onnx.export``, ``onnxruntime.quantization.quantize_dynamic``, and
OpenVINO's ``convert_model`` with NNCF post-training quantisation calibrated on corpus texts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.input_module import InputModule
from sentence_transformers.models import Transformer
from transformers import AutoTokenizer

from distill.errors import DataError

log = logging.getLogger(__name__)

# Each format: the graph runtime and the file the graph is saved as (OpenVINO adds a .bin of weights).
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "model.onnx"),
    "onnx_int8": ("onnx", "model_qint8.onnx"),
    "openvino_int8": ("openvino", "openvino_model_qint8.xml"),
}
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MODULE_TYPE = "distill.runtimes.GraphTransformer"


def _graph_files(folder: Path, file_name: str) -> list[Path]:
    files = [folder / file_name]
    if file_name.endswith(".xml"):
        files.append((folder / file_name).with_suffix(".bin"))
    return files


def file_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


class GraphTransformer(InputModule):
    """A Sentence Transformers input module that runs the transformer as an ONNX Runtime or OpenVINO
    graph: the same tokenisation as :class:`~sentence_transformers.models.Transformer` (prompt
    prepended, padded, truncated at ``max_seq_length``), and ``token_embeddings`` out for the saved
    pooling module. Inference only: it has no trainable parameters.

    Runs with ``torch.get_num_threads()`` threads at load, so a throughput comparison with torch
    models in the same process uses the same cores.
    """

    config_keys = ["runtime", "file_name", "max_seq_length", "input_names", "embedding_dimension", "graph_sha256"]
    config_file_name = "graph_config.json"

    def __init__(self, folder: str, runtime: str, file_name: str, max_seq_length: int, input_names: list[str],
                 embedding_dimension: int, graph_sha256: str) -> None:
        super().__init__()
        if runtime not in ("onnx", "openvino"):
            raise DataError(f"{folder}/{self.config_file_name}: runtime {runtime!r}, expected onnx or openvino")
        self.folder = Path(folder)
        self.runtime, self.file_name = runtime, file_name
        self.max_seq_length, self.input_names = max_seq_length, list(input_names)
        self.embedding_dimension, self.graph_sha256 = embedding_dimension, graph_sha256
        files = _graph_files(self.folder, file_name)
        if missing := [str(f) for f in files if not f.is_file()]:
            raise DataError(f"exported student {folder}: graph files {missing} are missing; run the export step again")
        if file_digest(files) != graph_sha256:
            raise DataError(f"exported student {folder}: {file_name} does not match its recorded sha256 "
                            f"(damaged or replaced); run the export step again")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self._run = self._onnx_session() if runtime == "onnx" else self._openvino_request()

    def _onnx_session(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(self.folder / self.file_name), options,
                                               providers=["CPUExecutionProvider"])
        return lambda inputs: session.run(None, inputs)[0]

    def _openvino_request(self):
        import openvino

        compiled = openvino.Core().compile_model(str(self.folder / self.file_name), "CPU",
                                                 {"INFERENCE_NUM_THREADS": torch.get_num_threads()})
        return lambda inputs: compiled(inputs)[0]

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        if prompt:
            inputs = self._prepend_prompt(inputs, prompt)
        encoded = self.tokenizer(list(inputs), padding=True, truncation="longest_first",
                                 max_length=self.max_seq_length, return_tensors="pt")
        return {name: encoded[name] for name in self.input_names}

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        inputs = {name: features[name].cpu().numpy().astype(np.int64) for name in self.input_names}
        features["token_embeddings"] = torch.from_numpy(np.ascontiguousarray(self._run(inputs), dtype=np.float32))
        return features

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension

    def save(self, output_path: str, *args, **kwargs) -> None:
        for source in _graph_files(self.folder, self.file_name):
            if source.resolve() != (Path(output_path) / source.name).resolve():
                shutil.copy2(source, Path(output_path) / source.name)
        self.save_tokenizer(output_path)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> GraphTransformer:
        folder = Path(model_name_or_path) / subfolder
        config_path = folder / cls.config_file_name
        try:
            config = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{config_path} is missing or damaged ({err}); run the export step again") from err
        return cls(str(folder), **config)

    def __repr__(self) -> str:
        # In the fingerprint behind every cache key: a new graph is a new model.
        return (f"GraphTransformer(runtime={self.runtime!r}, file_name={self.file_name!r}, "
                f"max_seq_length={self.max_seq_length}, graph_sha256={self.graph_sha256!r})")


class _LastHiddenState(torch.nn.Module):
    """The transformer alone, token embeddings out: what ``torch.onnx.export`` traces."""

    def __init__(self, transformer: Transformer, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.input_names = transformer.auto_model, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs)), return_dict=True).last_hidden_state


def _input_transformer(student: SentenceTransformer, where: str) -> Transformer:
    first = student[0]
    if not isinstance(first, Transformer) or not hasattr(first, "auto_model"):
        raise DataError(f"{where}: export needs a student whose first module is a transformer "
                        f"(found {type(first).__name__}); set export.formats: [] for this student")
    return first


def export_onnx(student: SentenceTransformer, path: Path, where: str) -> list[str]:
    """The student's transformer as an fp32 ONNX graph at ``path`` (batch and length dynamic); returns
    the graph's input names."""
    transformer = _input_transformer(student, where)
    sample = transformer.tokenizer(["an example text to trace", "a second one"], padding=True, return_tensors="pt")
    input_names = [name for name in GRAPH_INPUTS if name in sample]
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    module = _LastHiddenState(transformer, input_names).eval()
    with torch.no_grad():
        torch.onnx.export(
            module, tuple(sample[name] for name in input_names), str(path),
            input_names=input_names, output_names=["token_embeddings"],
            dynamic_shapes=(tuple({0: batch, 1: length} for _ in input_names),),  # one entry: *inputs
            dynamo=True, external_data=False, verbose=False,
        )
    return input_names


def quantize_onnx_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the weights of every MatMul (activations quantised per batch at
    run time): no calibration data needed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weight scales: one scale per tensor moved the student's embeddings visibly further from fp32.
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def quantize_openvino_int8(source: Path, target: Path, tokenizer, max_seq_length: int,
                           input_names: list[str], calibration_texts: list[str]) -> None:
    """OpenVINO static int8: NNCF post-training quantisation (transformer preset, so attention's
    softmax and layer norms stay in float) with activation ranges calibrated on ``calibration_texts``."""
    import nncf
    import openvino

    def tokenized(text: str) -> dict[str, np.ndarray]:
        encoded = tokenizer([text], truncation=True, max_length=max_seq_length, return_tensors="np")
        return {name: encoded[name].astype(np.int64) for name in input_names}

    model = openvino.convert_model(str(source))
    quantized = nncf.quantize(model, nncf.Dataset(calibration_texts, tokenized), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration_texts))
    openvino.save_model(quantized, str(target), compress_to_fp16=False)


def write_exported_student(student_dir: Path, target: Path, fmt: str, graph_dir: Path, input_names: list[str],
                           max_seq_length: int, embedding_dimension: int) -> None:
    """A Sentence Transformers folder at ``target``: the student's folder without its torch weights,
    module 0 replaced by a :class:`GraphTransformer` over the ``fmt`` graph from ``graph_dir``."""
    runtime, file_name = EXPORT_FORMATS[fmt]
    shutil.copytree(student_dir, target, ignore=shutil.ignore_patterns("*.safetensors", "pytorch_model.bin",
                                                                        "sentence_bert_config.json"))
    for source in _graph_files(graph_dir, file_name):
        shutil.copy2(source, target / source.name)
    modules = json.loads((target / "modules.json").read_text())
    modules[0] = {**modules[0], "path": "", "type": MODULE_TYPE}
    (target / "modules.json").write_text(json.dumps(modules, indent=2))
    config = {"runtime": runtime, "file_name": file_name, "max_seq_length": max_seq_length,
              "input_names": input_names, "embedding_dimension": embedding_dimension,
              "graph_sha256": file_digest(_graph_files(target, file_name))}
    (target / GraphTransformer.config_file_name).write_text(json.dumps(config, indent=2))


def export_student(student_dir: Path, student: SentenceTransformer, formats: Sequence[str], target: Path,
                   calibration_texts: list[str]) -> dict[str, Path]:
    """Every format of ``formats`` as its own folder under ``target`` (``target/<format>``); the fp32
    ONNX graph, which the int8 formats start from, is made once."""
    transformer = _input_transformer(student, str(student_dir))
    dimension = transformer.get_embedding_dimension()
    folders: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=target) as work:
        graphs = Path(work)
        input_names = export_onnx(student, graphs / EXPORT_FORMATS["onnx"][1], str(student_dir))
        for fmt in formats:
            log.info("export: %s", fmt)
            if fmt == "onnx_int8":
                quantize_onnx_int8(graphs / EXPORT_FORMATS["onnx"][1], graphs / EXPORT_FORMATS[fmt][1])
            elif fmt == "openvino_int8":
                if not calibration_texts:
                    raise DataError("export openvino_int8 needs calibration texts: the corpus has no training text")
                quantize_openvino_int8(graphs / EXPORT_FORMATS["onnx"][1], graphs / EXPORT_FORMATS[fmt][1],
                                       transformer.tokenizer, transformer.max_seq_length, input_names, calibration_texts)
            write_exported_student(student_dir, target / fmt, fmt, graphs, input_names, transformer.max_seq_length,
                                   dimension)
            folders[fmt] = target / fmt
    return folders


def load_exported(path: str | Path, field: str) -> SentenceTransformer:
    """An exported student folder as a ``SentenceTransformer`` (its input module is this package's)."""
    try:
        return SentenceTransformer(str(path), device="cpu", trust_remote_code=True)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise DataError(f"{field} {path}: not a loadable exported student ({err}); run the export step again") from err


def disk_size_mb(path: str | Path) -> float:
    """What a model folder takes on disk (every file under it), in MiB."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20
