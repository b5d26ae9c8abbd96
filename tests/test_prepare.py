import json

import pandas as pd
import pytest

from distill.config.corpus import CorpusConfig
from distill.config.loader import params_from_dict
from distill.errors import DataError
from distill.readers import load_corpus
from distill.steps.prepare import build_corpus, run
from distill.text import split_passages, split_sentences


def corpus(sources, **kwargs):
    return CorpusConfig.model_validate({"sources": sources, "min_chars": 5, **kwargs})


def test_sentence_and_passage_splitting():
    text = 'He said "Yes." Then he left. It rained! Was it 2004? Yes.\nNew paragraph here.'
    assert split_sentences(text) == ['He said "Yes."', "Then he left.", "It rained!", "Was it 2004?", "Yes.", "New paragraph here."]
    passages = split_passages(text, 30)
    assert all(len(p) <= 30 for p in passages) and " ".join(passages).startswith('He said "Yes." Then he left.')


def test_bbc_offline_corpus_splits_by_document():
    frame = build_corpus(corpus([{"type": "bbc", "unit": "passage", "max_documents": 50}], heldout_fraction=0.3), seed=1)[0]
    assert set(frame["label"]) <= {"business", "entertainment", "politics", "sports", "tech"}
    per_doc = frame.groupby("doc_id")["split"].nunique()
    assert (per_doc == 1).all(), "a document's texts must all land in one split"
    assert set(frame["split"]) == {"train", "heldout"}
    again = build_corpus(corpus([{"type": "bbc", "unit": "passage", "max_documents": 50}], heldout_fraction=0.3), seed=1)[0]
    pd.testing.assert_frame_equal(frame, again)


def test_bbc_first_units_per_document():
    """max_units_per_document keeps each article's first passages, in order: more articles per text budget."""
    source = {"type": "bbc", "unit": "passage", "max_documents": 30}
    every = build_corpus(corpus([source], heldout_fraction=0.3), seed=1)[0]
    capped = build_corpus(corpus([{**source, "max_units_per_document": 2}], heldout_fraction=0.3), seed=1)[0]
    assert capped.groupby("doc_id").size().max() == 2 < every.groupby("doc_id").size().max()
    for doc_id, texts in capped.groupby("doc_id")["text"]:
        assert texts.tolist() == every[every["doc_id"] == doc_id]["text"].tolist()[:2]


def test_train_only_source_adds_training_text_and_leaves_the_heldout_documents_alone():
    base = {"type": "bbc", "unit": "passage", "max_documents": 80, "max_units_per_document": 1}
    plain = build_corpus(corpus([base], heldout_fraction=0.5, max_texts=30), seed=3)[0]
    grown = build_corpus(corpus([base, {"type": "bbc", "unit": "passage", "max_documents": 80, "train_only": True}],
                                heldout_fraction=0.5, max_texts=30), seed=3)[0]
    held = lambda frame: frame[frame["split"] == "heldout"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(held(plain), held(grown))  # the same evaluation documents and texts
    train, plain_train = grown[grown["split"] == "train"], plain[plain["split"] == "train"]
    assert len(train) > len(plain_train) + 30  # not capped by corpus.max_texts
    assert set(plain_train["text"]) < set(train["text"])  # a shared text stays once, in its first source
    assert not train["text"].duplicated().any()
    # Every held-out-eligible document's text is dropped, also of documents the cap left out.
    everything = build_corpus(corpus([{**base, "max_units_per_document": None}], heldout_fraction=0.5), seed=3)[0]
    eligible = set(everything.loc[everything["split"] == "heldout", "doc_id"])
    assert not set(train["doc_id"]) & eligible and "train_only" not in grown


def test_file_sources_clean_dedupe_and_cap(tmp_path, monkeypatch):
    # Relative source paths: a file's rows are documents "<path>#<row>" and the held-out split hashes them,
    # so under an absolute tmp_path (pytest-<n> changes per run) 1 run in 5 held out none of 7 documents.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("first text here\n\n  first   text here \nsecond one\nx\n" + "y" * 50 + "\n")
    pd.DataFrame({"body": ["from jsonl one", "from jsonl two"]}).to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    pd.DataFrame({"body": ["from csv"]}).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"body": ["from parquet"]}).to_parquet(tmp_path / "d.parquet")
    sources = [{"type": "file", "path": "a.txt"}] + [
        {"type": "file", "path": n, "column": "body"} for n in ("b.jsonl", "c.csv", "d.parquet")
    ]
    frame = build_corpus(corpus(sources, max_chars=20, heldout_fraction=0.2), seed=0)[0]
    texts = set(frame["text"])
    assert texts == {"first text here", "second one", "y" * 20, "from jsonl one", "from jsonl two", "from csv", "from parquet"}


def test_folder_source(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.txt").write_text(f"Document {i} starts here. It has two sentences.")
    frame = build_corpus(corpus([{"type": "folder", "path": str(folder), "unit": "sentence"}]), seed=0)[0]
    assert len(frame) == 7  # "It has two sentences." is shared, so kept once


def test_missing_column_names_file_and_column(tmp_path):
    pd.DataFrame({"body": ["a long enough text"]}).to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"b\.jsonl: missing column 'text'.*body"):
        build_corpus(corpus([{"type": "file", "path": str(tmp_path / "b.jsonl")}]), seed=0)[0]


def test_non_string_text_is_an_error(tmp_path):
    (tmp_path / "n.jsonl").write_text(json.dumps({"text": "fine text here"}) + "\n" + json.dumps({"text": 12345}) + "\n")
    with pytest.raises(DataError, match=r"n\.jsonl: column 'text' row 1 is int"):
        build_corpus(corpus([{"type": "file", "path": str(tmp_path / "n.jsonl")}]), seed=0)[0]


def test_non_utf8_file_is_an_error(tmp_path):
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait, s'il vous pla\xeet\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt: not valid UTF-8"):
        build_corpus(corpus([{"type": "file", "path": str(tmp_path / "latin.txt")}]), seed=0)[0]


def test_empty_corpus_after_cleaning(tmp_path):
    (tmp_path / "short.txt").write_text("a\nb\n\n")
    with pytest.raises(DataError, match="empty after cleaning.*min_chars"):
        build_corpus(corpus([{"type": "file", "path": str(tmp_path / "short.txt")}]), seed=0)[0]


def test_failed_prepare_leaves_previous_output_intact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative source paths: a seeded split that does not depend on tmp_path
    (tmp_path / "good.txt").write_text("\n".join(f"text number {i} is long enough" for i in range(20)))
    params = params_from_dict(
        {"paths": {"prepared": str(tmp_path / "prepared")}, "corpus": {"sources": [{"type": "file", "path": "good.txt"}], "min_chars": 5}}
    )
    run(params)
    before = load_corpus(params.paths.prepared)
    bad = params_from_dict(
        {"paths": {"prepared": str(tmp_path / "prepared")}, "corpus": {"sources": [{"type": "file", "path": str(tmp_path / "missing.txt")}]}}
    )
    with pytest.raises(DataError, match="does not exist"):
        run(bad)
    pd.testing.assert_frame_equal(before, load_corpus(params.paths.prepared))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.txt", "prepared"]


def test_default_params_corpus_builds_from_every_bbc_file():
    from distill.config.loader import load_params
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    frame, _, source_texts = build_corpus(params.corpus, params.seed)
    assert len(frame) == params.corpus.max_texts == sum(source_texts)
    assert frame[frame["split"] == "heldout"]["doc_id"].nunique() >= 50  # enough for the topic probe
    # The test half holds the 250+ headline queries, one per held-out article.
    from distill.sampling import heldout_half

    held = frame.loc[frame["split"] == "heldout", "doc_id"].drop_duplicates()
    assert sum(heldout_half(params.seed, d) == "test" for d in held) >= 300
    # Some BBC files are ISO-8859-1; they must decode to the right characters, not fail or garble.
    bbc = build_corpus(corpus([{"type": "bbc", "unit": "passage"}]), seed=0)[0]
    assert bbc["text"].str.contains("£").any() and not bbc["text"].str.contains("\ufffd").any()


def test_decontamination_drops_every_evaluation_text(tmp_path, monkeypatch):
    """Texts of evaluated sets and of recipe-selection sets leave the corpus, after NFKC, casefolding and
    whitespace collapsing; the count reaches summary.json."""
    monkeypatch.chdir(tmp_path)  # relative source paths: a seeded split that does not depend on tmp_path
    row = "main-captions\tMSRvid\t2012test\t0001\t{score}\t{first}\t{second}"
    (tmp_path / "sts-test.csv").write_text(
        row.format(score=5.0, first="A man is playing a guitar.", second="A woman slices an onion.") + "\n")
    (tmp_path / "sts-dev.csv").write_text(row.format(score=1.0, first="Dev sentence number one.", second="x y z w.") + "\n")
    kept = [f"an ordinary training sentence number {i}" for i in range(10)]
    leaked = ["a  MAN is playing   a guitar.", "Ａ woman slices an onion.", "DEV sentence number one."]
    (tmp_path / "corpus.txt").write_text("\n".join(kept[:5] + leaked + kept[5:]))
    sts = lambda name, path: {"name": name, "type": "sts", "path": str(tmp_path / path)}  # noqa: E731
    params = params_from_dict({
        "paths": {"prepared": str(tmp_path / "prepared")},
        "corpus": {"sources": [{"type": "file", "path": "corpus.txt"}], "min_chars": 5,
                   "heldout_fraction": 0.2, "exclude_sets": [sts("dev", "sts-dev.csv")]},
        "eval": {"sets": [sts("test", "sts-test.csv")]},
    })
    run(params)
    texts = load_corpus(params.paths.prepared)["text"].tolist()
    assert sorted(texts) == sorted(kept)
    summary = json.loads((tmp_path / "prepared" / "summary.json").read_text())
    assert summary["decontamination"] == {"dropped_texts": 3, "dropped_queries": 0, "evaluation_texts": 4,
                                          "sets": ["test", "dev"]}


def test_evaluation_samples_span_topics_and_documents():
    from distill.config.loader import load_params
    from distill.sampling import spread_sample
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    heldout = build_corpus(params.corpus, params.seed)[0].query("split == 'heldout'")
    sample = spread_sample(heldout, 40, params.seed, "eval/fidelity")
    assert len(sample) == 40
    assert set(sample["label"]) == set(heldout["label"])  # every topic, tech included
    assert sample["doc_id"].nunique() == 40  # one text per document before any second one
    assert spread_sample(heldout, 40, params.seed, "eval/fidelity")["text"].tolist() == sample["text"].tolist()
