import json

import pytest

from distill.config import RetrievalSet, StsSet
from distill.errors import DataError
from distill.evaluation import RetrievalEvaluator, StsEvaluator


def load_retrieval(spec):
    return RetrievalEvaluator.load(spec, None, 0, "passage")


def load_sts(spec):
    return StsEvaluator.load(spec, None, 0, "sentence")
from tests.conftest import SHARED_DATA, needs_shared


def beir(tmp_path, qrels_rows):
    (tmp_path / "qrels").mkdir(parents=True)
    (tmp_path / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": f"doc {i}"}) for i in range(3))
    )
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) for i in range(2)))
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels_rows) + "\n")
    return RetrievalSet(name="toy", type="retrieval", path=str(tmp_path))


def test_beir_folder_loads(tmp_path):
    data = load_retrieval(beir(tmp_path, ["q0\td1\t2", "q1\td0\t1"]))
    assert data.queries == ["query 0", "query 1"]
    assert data.documents[1] == "T1 doc 1"
    assert data.qrels == {"0": {"1": 2}, "1": {"0": 1}}


def test_qrels_naming_unknown_documents_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"test\.tsv:3: corpus-id 'd9' is not in corpus\.jsonl"):
        load_retrieval(beir(tmp_path, ["q0\td1\t1", "q1\td9\t1"]))


def test_missing_eval_files_are_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_retrieval(RetrievalSet(name="x", type="retrieval", path=str(tmp_path / "none")))
    with pytest.raises(DataError, match="does not exist"):
        load_sts(StsSet(name="x", type="sts", path=str(tmp_path / "sts.csv")))


@needs_shared
def test_shared_benchmark_sets_load():
    sts = load_sts(StsSet(name="stsb", type="sts", path=str(SHARED_DATA / "stsb/sts-test.csv")))
    assert len(sts.scores) == 1379 and len(sts.texts()) == 2 * 1379
    for name, judged in (("msmarco", 43), ("dbpedia", 40)):
        data = load_retrieval(RetrievalSet(name=name, type="retrieval", path=str(SHARED_DATA / "retrieval" / name)))
        assert len(data.documents) == 5000
        assert len(data.queries) == len(data.qrels) == judged


def test_title_retrieval_relates_each_title_to_its_own_passages():
    import pandas as pd

    from distill.config import TitleRetrievalSet
    from distill.evaluation import TitleRetrievalEvaluator

    heldout = pd.DataFrame({
        "text": ["rupee rises", "markets cheer", "team wins final", "fans celebrate", "untitled note"],
        "doc_id": ["a", "a", "b", "b", "c"],
        "title": ["Rupee hits high", "Rupee hits high", "Cup final won", "Cup final won", None],
    })
    evaluator = TitleRetrievalEvaluator.load(TitleRetrievalSet(name="t", type="title_retrieval"), heldout, 0, "passage")
    assert evaluator.queries == ["Rupee hits high", "Cup final won"]
    assert evaluator.documents == heldout["text"].tolist()  # every held-out passage is a candidate
    assert evaluator.qrels == {"0": {"0": 1, "1": 1}, "1": {"2": 1, "3": 1}}
    with pytest.raises(DataError, match="no document titles"):
        TitleRetrievalEvaluator.load(TitleRetrievalSet(name="t", type="title_retrieval"),
                                     heldout.assign(title=None), 0, "passage")
