"""Bad input, one case per test: ``python -m distill <step>`` exits non-zero with an error naming the
field or file and what was expected, and no artifact of the project changes.

Every case runs the real command line in-process against one prepared and labelled tiny project;
the project's files are hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from distill.__main__ import main
from distill.config.loader import load_params
from distill.encoding import teacher_encoder
from distill.labelling.cache import KEY_BYTES
from distill.models import resolve_model
from tests.conftest import labelled_tiny_project
from tests.tiny_models import tiny_bert_embedder

LATIN1 = "caf\xe9 au lait".encode("latin-1")
LATIN1_LINES = LATIN1 * 20 + b"\n"
NAN_STS = b"g\tf\t2012\t1\tnan\tA sentence.\tAnother one.\n"
SHORT_LINES = b"tiny\nshort\n"  # every line below corpus.min_chars
BROKEN_JSON = b'{"student/mean_score": 8'  # a hand edit cut short
TOPICS_JSON = b'{"student/topics/accuracy": 91.0}'


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A tiny project after prepare and label; its params.yaml is the tiny config."""
    return labelled_tiny_project(tmp_path_factory.mktemp("bad-inputs")).parent


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file of the project, but the lock file each run rewrites."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".distill.lock"}


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def beir(folder: Path, corpus=None, queries=None, qrels: bytes | None = None) -> Path:
    """A valid two-document BEIR folder, with any of its three files replaced."""
    (folder / "qrels").mkdir(parents=True)
    jsonl(folder / "corpus.jsonl", corpus or [{"_id": "d1", "title": "", "text": "first document text"},
                                               {"_id": "d2", "title": "Two", "text": "second document text"}])
    jsonl(folder / "queries.jsonl", queries or [{"_id": "q1", "text": "which document"}])
    (folder / "qrels" / "test.tsv").write_bytes(qrels or b"query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


def retrieval_set(folder: Path) -> list[str]:
    return [f"eval.sets=[{{name: bad, type: retrieval, path: {folder}}}]"]


def labelled_set(path: Path) -> list[str]:
    return [f"eval.sets=[{{name: bad, type: classification, path: {path}}}]"]


def broken_model(inputs: Path) -> Path:
    folder = inputs / "broken-model"
    shutil.copytree(resolve_model("all-MiniLM-L6-v2"), folder)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    return folder


def wide_student(inputs: Path) -> Path:
    """A 256-dimensional student: its PCA of the 384-dimensional labels needs 256 training texts."""
    return tiny_bert_embedder(inputs / "wide-student", resolve_model("all-MiniLM-L6-v2"), hidden_size=256)


def foreign_shard(project: Path) -> None:
    """A readable shard of another dimension in the teacher's corpus namespace."""
    params = load_params(project / "params.yaml")
    directory = teacher_encoder(params, params.paths.teacher_cache).cache(params.corpus.text_type).directory
    np.savez(directory / "shard-99999999999999999999-ffffffff_p1_hother.npz",
             keys=np.zeros((1, KEY_BYTES), dtype=np.uint8), embeddings=np.zeros((1, 5), dtype=np.float16))


def damaged_copy(source: Path, folder: Path, name: str, cut: int | None = None, data: bytes | None = None) -> Path:
    """A copy of the artifact folder ``source`` in ``folder`` whose file ``name`` is cut to its first
    ``cut`` bytes or replaced by ``data``: what a killed copy or a hand edit leaves."""
    shutil.copytree(source, folder)
    target = folder / name
    target.write_bytes(target.read_bytes()[:cut] if data is None else data)
    return folder


def exports_of(folder: Path, fingerprint: str) -> Path:
    """An exports folder whose manifest names a student by ``fingerprint`` and an ``onnx`` export."""
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"student_fingerprint": fingerprint,
                                                      "formats": {"onnx": {"folder": "onnx", "size_mb": 1.0}}}))
    return folder


def evaluated_metrics(folder: Path, per_item: bytes, eval_json: bytes = b"{}") -> Path:
    folder.mkdir()
    (folder / "eval.json").write_bytes(eval_json)
    (folder / "per_item.npz").write_bytes(per_item)
    return folder


@dataclass
class Case:
    step: str
    expected: str  # regex the error must match: the field or file, and what was expected
    overrides: Callable[[Path], list[str]] = lambda inputs: []
    damage: Callable[[Path], None] | None = None  # changes the project itself (then snapshotted)


CASES = {
    # prepare: corpus and query sources
    "hub_corpus_unloadable": Case(
        "prepare", r"hub dataset 'no-such-org/no-such-set'.*cannot be loaded.*HF_HUB_OFFLINE",
        lambda i: ["corpus.sources=[{type: hub, name: no-such-org/no-such-set}]"]),
    "hub_queries_unloadable": Case(
        "prepare", r"hub dataset 'no-such-org/no-queries'.*cannot be loaded",
        lambda i: ["corpus.queries=[{type: hub, name: no-such-org/no-queries}]"]),
    "corpus_file_missing": Case(
        "prepare", r"missing\.txt.*(does not exist|not found)",
        lambda i: [f"corpus.sources=[{{type: file, path: {i / 'missing.txt'}}}]"]),
    "corpus_file_not_utf8": Case(
        "prepare", r"latin1\.txt: not valid UTF-8 \(byte 3\)",
        lambda i: [f"corpus.sources=[{{type: file, path: {written(i / 'latin1.txt', LATIN1_LINES)}}}]"]),
    "corpus_file_missing_column": Case(
        "prepare", r"nocol\.jsonl: missing column 'text'",
        lambda i: [f"corpus.sources=[{{type: file, path: {jsonl(i / 'nocol.jsonl', [{'body': 'x' * 60}])}}}]"]),
    "corpus_file_non_string": Case(
        "prepare", r"numbers\.jsonl.*column 'text' row 1 is int.*expected a string",
        lambda i: [f"corpus.sources=[{{type: file, path: "
                   f"{jsonl(i / 'numbers.jsonl', [{'text': 'a fine text ' * 5}, {'text': 7}])}}}]"]),
    "heldout_split_empty": Case(
        "prepare", r"corpus\.heldout_fraction 0\.001 held out none of the corpus's \d+ documents",
        lambda i: ["corpus.heldout_fraction=0.001"]),
    "queries_file_missing": Case(
        "prepare", r"no-queries\.txt.*(does not exist|not found)",
        lambda i: [f"corpus.queries=[{{type: file, path: {i / 'no-queries.txt'}}}]"]),
    # params, refused before any step runs
    "prompt_key_typo": Case(
        "prepare", r"teacher\.prompts keys \['pasage'\] name no text type.*expected keys among",
        lambda i: ["teacher.prompts={pasage: 'passage: '}"]),
    "text_type_without_prompt": Case(
        "prepare", r"corpus\.text_type 'document' is not one of .* no teacher or student prompt names it",
        lambda i: ["corpus.text_type=document"]),
    "primary_metric_typo": Case(
        "train", r"register\.primary_metric 'topic/accuracy' is not a primary metric.*expected one of",
        lambda i: ["register.primary_metric=topic/accuracy"]),
    "long_training_without_extension": Case(
        "train", r"train\.long needs student\.extend_positions",
        lambda i: ["train.long={positions_epochs: 1}", "corpus.long_documents={documents: 4}"]),
    "chunk_overlap_not_below_size": Case(
        "label", r"teacher\.chunking\.overlap \(64\) must be below teacher\.chunking\.tokens \(64\)",
        lambda i: ["teacher.chunking={tokens: 64, overlap: 64}"]),
    "extension_shorter_than_the_student": Case(
        "train", r"student\.extend_positions\.length 256 is not longer than the student's 512 positions",
        lambda i: ["student.extend_positions={length: 256}", "student.max_seq_length=128"]),
    "long_set_too_many_articles": Case(
        "evaluate", r"eval set long: 500 documents need at least 510 held-out BBC articles.*found \d+",
        lambda i: ["eval.sets=[{name: long, type: long_retrieval, documents: 500, lengths: [128]}]",
                   "register.primary_metric=long/ndcg@10"]),
    "cluster_address_and_workers": Case(
        "label", r"cluster.*set address .* or n_workers .*not both",
        lambda i: ["cluster.address=tcp://127.0.0.1:8786", "cluster.n_workers=2"]),
    # label: the cache and the cluster
    "cache_dimension_mismatch": Case(
        "label", r"shard-99999999999999999999-ffffffff_p1_hother\.npz holds 5-dimensional rows.*delete that folder",
        damage=foreign_shard),
    "unreachable_scheduler": Case(
        "label", r"cluster\.address 'tcp://127\.0\.0\.1:9': no Dask scheduler answered",
        lambda i: [f"paths.teacher_cache={i / 'empty-cache'}", "cluster.address=tcp://127.0.0.1:9",
                   "cluster.connect_timeout=1"]),
    "teacher_weights_unreadable": Case(
        "label", r"teacher\.model: cannot load model .*broken-model.*SafetensorError",
        lambda i: [f"teacher.model={broken_model(i)}"]),
    # train
    "pca_with_fewer_texts_than_dims": Case(
        "train", r"needs at least 256 training texts; the corpus has \d+.*student\.target_space: teacher",
        lambda i: ["train.objectives={similarity: 0, margin_mse: 0, mse: 1}", "train.matryoshka_dims=[]",
                   "student.target_space=student", f"student.model={wide_student(i)}"]),
    "training_set_smaller_than_a_batch": Case(
        "train", r"the texts training set has \d+ rows, fewer than one batch \(train\.batch_size = 100000\)",
        lambda i: ["train.objectives={similarity: 1.0, margin_mse: 1.0}", "train.batch_size=100000"]),
    "teacher_longer_than_its_positions": Case(
        "label", r"teacher\.max_seq_length 4096 is above the 512 token positions .*all-MiniLM-L6-v2.*lower it",
        lambda i: ["teacher.max_seq_length=4096"]),
    "student_longer_than_its_positions": Case(
        "train", r"student\.max_seq_length 4096 is above the 512 token positions the student holds",
        lambda i: ["student.max_seq_length=4096"]),
    "source_yields_no_text": Case(
        "prepare", r"corpus\.sources\[1\] \(file .*short\.txt\) yields no text.*corpus\.min_chars",
        lambda i: ["corpus.sources=[{type: bbc, max_documents: 20}, "
                   f"{{type: file, path: {written(i / 'short.txt', SHORT_LINES)}}}]"]),
    # a damaged artifact of an earlier step: named, with the step that rewrites it
    "prepared_corpus_cut_short": Case(
        "train", r"corpus\.parquet is damaged or not what the prepare step writes.*run the prepare step",
        lambda i: [f"paths.prepared={damaged_copy(i / 'project/data/prepared', i / 'prepared', 'corpus.parquet', cut=100)}"]),
    "per_item_cut_short": Case(
        "register", r"per_item\.npz is damaged or not what the evaluate step writes.*run the evaluate step",
        lambda i: [f"paths.metrics={evaluated_metrics(i / 'metrics', b'PK' + bytes(20))}"]),
    "eval_json_hand_broken": Case(
        "register", r"eval\.json is damaged or not what the evaluate step writes \(JSONDecodeError",
        lambda i: [f"paths.metrics={evaluated_metrics(i / 'metrics', b'', eval_json=BROKEN_JSON)}"]),
    "min_metrics_set_typo": Case(
        "register", r"register\.min_metrics key 'student/topic/accuracy' names no metric of this evaluation.*'topics'",
        lambda i: ["register.min_metrics={student/topic/accuracy: 90}"]),
    "min_metrics_metric_typo": Case(
        "register", r"register\.min_metrics keys \['student/topics/acuracy'\] are not metrics of .*eval\.json; "
                    r"for 'student/topics/acuracy' did you mean \['student/topics/accuracy'\]",
        lambda i: ["register.min_metrics={student/topics/acuracy: 90}",
                   f"paths.metrics={evaluated_metrics(i / 'metrics', b'', eval_json=TOPICS_JSON)}"]),
    "static_dims_above_the_teacher": Case(
        "label", r"student\.static\.pca_dims 512 is above the teacher's 384 hidden dimensions.*lower it",
        lambda i: ["student.init=static", "student.static.pca_dims=512"]),
    # export: formats, and exports that do not belong to the student
    "export_format_repeated": Case(
        "export", r"export\.formats repeats a format: \['onnx', 'onnx'\]",
        lambda i: ["export.formats=[onnx, onnx]"]),
    "export_format_unknown": Case(
        "export", r"export\.formats\.0.*'onnx', 'onnx_int8' or 'openvino_int8'",
        lambda i: ["export.formats=[tflite]"]),
    "export_without_a_student": Case(
        "export", r"holds no trained student: run the train step first",
        lambda i: [f"paths.student={i / 'no-student'}", "export.formats=[onnx]"]),
    "evaluate_without_exports": Case(
        "evaluate", r"no-exports/manifest\.json does not exist: run the export step \(python -m distill export\)",
        lambda i: [f"paths.student={resolve_model('all-MiniLM-L6-v2')}", f"paths.exports={i / 'no-exports'}",
                   "export.formats=[onnx]"]),
    "exports_of_another_student": Case(
        "evaluate", r"other-exports was exported from another student than .*: run the export step",
        lambda i: [f"paths.student={resolve_model('all-MiniLM-L6-v2')}", "export.formats=[onnx]",
                   f"paths.exports={exports_of(i / 'other-exports', 'f' * 32)}"]),
    # evaluate: evaluation files
    "labelled_file_null_label": Case(
        "evaluate", r"eval set bad: .*nolabel\.jsonl column 'label' row 1 is empty",
        lambda i: labelled_set(jsonl(i / "nolabel.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": None}]))),
    "labelled_file_null_text": Case(
        "evaluate", r"eval set bad: .*notext\.jsonl column 'text' row 0 is empty",
        lambda i: labelled_set(jsonl(i / "notext.jsonl", [{"text": None, "label": "x"}, {"text": "b", "label": "y"}]))),
    "labelled_file_missing": Case(
        "evaluate", r"eval set bad: file .*absent\.jsonl does not exist",
        lambda i: labelled_set(i / "absent.jsonl")),
    "beir_null_title": Case(
        "evaluate", r"corpus\.jsonl:1: field 'title' is None, expected a string \(\"\" for no title\)",
        lambda i: retrieval_set(beir(i / "null-title", corpus=[{"_id": "d1", "title": None, "text": "x"}]))),
    "beir_null_text": Case(
        "evaluate", r"queries\.jsonl:1: field 'text' is None, expected a string",
        lambda i: retrieval_set(beir(i / "null-text", queries=[{"_id": "q1", "text": None}]))),
    "beir_duplicate_corpus_id": Case(
        "evaluate", r"corpus\.jsonl:2: _id 'd1' repeats line 1",
        lambda i: retrieval_set(beir(i / "dup-corpus", corpus=[{"_id": "d1", "text": "x"}, {"_id": "d1", "text": "y"}]))),
    "beir_duplicate_query_id": Case(
        "evaluate", r"queries\.jsonl:2: _id 'q1' repeats line 1",
        lambda i: retrieval_set(beir(i / "dup-queries", queries=[{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}]))),
    "qrels_not_utf8": Case(
        "evaluate", r"test\.tsv: not valid UTF-8",
        lambda i: retrieval_set(beir(i / "latin1-qrels", qrels=b"query-id\tcorpus-id\tscore\nq1\td1\t1\n" + LATIN1))),
    "qrels_negative_relevance": Case(
        "evaluate", r"test\.tsv:2: score -1 is negative; expected a relevance grade >= 0",
        lambda i: retrieval_set(beir(i / "negative", qrels=b"query-id\tcorpus-id\tscore\nq1\td1\t-1\n"))),
    "sts_nan_score": Case(
        "evaluate", r"sts\.tsv:1: score 'nan' is not a finite number",
        lambda i: [f"eval.sets=[{{name: bad, type: sts, path: "
                   f"{written(i / 'sts.tsv', NAN_STS)}}}]"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_clearly_and_changes_nothing(name, project, tmp_path, capsys):
    case = CASES[name]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "project").symlink_to(project)  # for cases that copy one of its artifacts to damage it
    overrides = case.overrides(inputs)
    if case.damage is not None:
        case.damage(project)
    argv = [case.step, "--params", str(project / "params.yaml")]
    for override in overrides:
        argv += ["--set", override]
    before = snapshot(project)
    try:
        code = main(argv)
        after = snapshot(project)
    finally:
        for path in project.rglob("shard-99999999999999999999-*"):  # the next cases get the project back
            path.unlink()
    error = capsys.readouterr().err
    assert code != 0, f"{name}: exit code 0, stderr:\n{error}"
    assert re.search(r"^error: ", error, flags=re.M) and "Traceback" not in error, error
    assert re.search(case.expected, error, flags=re.S), error
    assert after == before, f"{name} changed {sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))}"
