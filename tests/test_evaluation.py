import json

import pytest

from distill.errors import DataError
from distill.evaluation.retrieval import RetrievalEvaluator, RetrievalSet
from distill.evaluation.sts import StsEvaluator, StsSet
from tests.conftest import SHARED_DATA, needs_shared


def load_retrieval(spec):
    return RetrievalEvaluator.load(spec, None, 0, "passage")


def load_sts(spec):
    return StsEvaluator.load(spec, None, 0, "sentence")


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

    from distill.evaluation.retrieval import TitleRetrievalEvaluator, TitleRetrievalSet

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


def test_keyword_queries_name_each_documents_own_distinctive_words():
    import pandas as pd

    from distill.evaluation.retrieval import TitleRetrievalEvaluator, TitleRetrievalSet

    heldout = pd.DataFrame({
        "text": ["The rupee rose against the dollar", "Rupee traders cheered the central bank",
                 "The striker scored twice in the final", "Fans of the striker celebrated the final"],
        "doc_id": ["a", "a", "b", "b"],
    })
    spec = TitleRetrievalSet(name="k", type="title_retrieval", queries="keywords", keywords=2)
    evaluator = TitleRetrievalEvaluator.load(spec, heldout, 0, "passage")
    assert evaluator.queries == ["rupee bank", "final striker"]  # each document's own words, stop words out
    assert evaluator.qrels == {"0": {"0": 1, "1": 1}, "1": {"2": 1, "3": 1}}
    # No titles are needed for keyword queries; they are for headline queries.
    with pytest.raises(DataError, match="no document titles"):
        TitleRetrievalEvaluator.load(TitleRetrievalSet(name="t", type="title_retrieval"), heldout, 0, "passage")


def test_dev_and_test_halves_share_no_document():
    import pandas as pd

    from distill.evaluation.fidelity import FidelitySet
    from distill.evaluation.labelled import ClassificationSet
    from distill.evaluation.registry import heldout_documents
    from distill.evaluation.retrieval import TitleRetrievalSet
    from distill.sampling import heldout_half

    heldout = pd.DataFrame({"text": [f"passage {i}" for i in range(200)], "doc_id": [f"d{i // 2}" for i in range(200)],
                            "title": [f"title {i // 2}" for i in range(200)], "label": ["x", "y"] * 100})
    halves = {}
    for half in ("dev", "test"):
        specs = [TitleRetrievalSet(name=f"h_{half}", type="title_retrieval", heldout_half=half),
                 ClassificationSet(name=f"c_{half}", type="classification", heldout_half=half),
                 FidelitySet(name=f"f_{half}", type="fidelity", heldout_half=half)]
        docs = {spec.name: set(heldout_documents(spec, heldout, 3)["doc_id"]) for spec in specs}
        assert len({frozenset(d) for d in docs.values()}) == 1  # every set of a half reads the same documents
        halves[half] = next(iter(docs.values()))
        assert halves[half] and all(heldout_half(3, d) == half for d in halves[half])
    assert not halves["dev"] & halves["test"] and halves["dev"] | halves["test"] == set(heldout["doc_id"])
    everything = heldout_documents(TitleRetrievalSet(name="all", type="title_retrieval"), heldout, 3)
    assert len(everything) == len(heldout)


def test_a_half_of_a_file_set_is_refused():
    from distill.config.base import ParamsError
    from distill.config.loader import params_from_dict

    with pytest.raises(ParamsError, match="heldout_half chooses held-out corpus documents"):
        params_from_dict({"eval": {"sets": [{"name": "t", "type": "classification", "path": "x.csv",
                                              "heldout_half": "dev"}]}})


def test_report_says_which_documents_chose_the_recipe():
    from distill.config.loader import params_from_dict
    from distill.config.schema import Params
    from distill.evaluation.report import heldout_line

    line = heldout_line(Params())
    assert "`bbc_headlines`" in line and "on the test half" in line and "chosen on the dev half" in line
    unsplit = params_from_dict({"eval": {"sets": [{"name": "h", "type": "title_retrieval"}]}})
    assert "on every held-out document" in heldout_line(unsplit) and "No set is on the test half" in heldout_line(unsplit)


def test_every_set_type_module_is_listed_once_and_each_type_has_one_evaluator():
    """A set type is its module in ``distill.evaluation`` (spec and evaluator) plus its entry in
    ``SET_TYPES``, from which the config's union and ``EVALUATORS`` are built: an evaluator written but
    not listed, or two evaluators claiming one ``type``, fail here rather than mid-run."""
    import importlib
    import inspect
    import pkgutil
    import typing

    import distill.evaluation
    from distill.evaluation.base import Evaluator
    from distill.evaluation.registry import EVALUATORS, SET_TYPES

    declared = set()
    for module in pkgutil.iter_modules(distill.evaluation.__path__):
        members = inspect.getmembers(importlib.import_module(f"distill.evaluation.{module.name}"), inspect.isclass)
        declared |= {c for _, c in members if issubclass(c, Evaluator) and "spec_class" in vars(c)}
    assert declared == set(SET_TYPES)
    types = [t for e in SET_TYPES for t in typing.get_args(e.spec_class.model_fields["type"].annotation)]
    assert sorted(types) == sorted(EVALUATORS) and len(types) == len(set(types))
