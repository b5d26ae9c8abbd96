"""Exported students (distill.runtimes) refuse what they cannot serve faithfully: a graph that is not
the one exported, and a student whose first module is no transformer."""

import shutil
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import StaticEmbedding

from distill.errors import DataError
from distill.runtimes import export_student, load_exported


@pytest.mark.parametrize("fmt", ["onnx_int8", "openvino_int8"])
def test_a_damaged_graph_is_refused_by_name(finished_pipeline, tmp_path, fmt):
    params, _ = finished_pipeline
    folder = tmp_path / fmt
    shutil.copytree(Path(params.paths.exports) / fmt, folder)
    assert load_exported(folder, "paths.exports").encode(["a text"]).shape == (1, 384)
    graph = next(p for p in folder.iterdir() if p.suffix in (".onnx", ".bin"))
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])  # what a killed copy leaves
    with pytest.raises(DataError, match=rf"{fmt}: {graph.name.replace('.bin', '.xml')} does not match its recorded "
                                        r"sha256.*run the export step again"):
        load_exported(folder, "paths.exports")


def test_a_student_without_a_transformer_is_not_exported(minilm, tmp_path):
    static = SentenceTransformer(modules=[StaticEmbedding(minilm.tokenizer, embedding_dim=16)], device="cpu")
    static.save(str(tmp_path / "static"))
    (tmp_path / "exports").mkdir()
    with pytest.raises(DataError, match=r"static: export needs a student whose first module is a transformer "
                                        r"\(found StaticEmbedding\); set export\.formats: \[\]"):
        export_student(tmp_path / "static", static, ["onnx"], tmp_path / "exports", [])
