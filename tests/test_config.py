import pytest
import yaml

from distill.config.base import ParamsError
from distill.config.loader import flatten, load_params, parse_override
from distill.training.objectives import weights_override
from tests.conftest import ROOT


def write(tmp_path, data, name="params.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_project_params_files_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.teacher.model == "all-mpnet-base-v2"
    bench = load_params([ROOT / "params.yaml", ROOT / "params/benchmark.yaml"])
    assert {s.type for s in bench.eval.sets} >= {"sts", "retrieval", "fidelity"}
    assert bench.corpus.sources[0].type == "bbc" and bench.corpus.sources[1].type == "stsb"
    # Recipe choice reads the dev half; the defaults report the test half, on the same set types.
    dev = load_params([ROOT / "params.yaml", ROOT / "params/dev.yaml"])
    halves = lambda p: [(s.type, getattr(s, "heldout_half", None)) for s in p.eval.sets]  # noqa: E731
    assert halves(dev) == [(kind, "dev") for kind, _ in halves(params)]
    assert {half for _, half in halves(params)} == {"test"}
    for recipe in sorted((ROOT / "params").glob("*.yaml")):
        load_params([ROOT / "params.yaml", recipe])


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ParamsError, match=r"train\.epochs"):
        load_params(write(tmp_path, {"train": {"epochs": "two"}}))


def test_unknown_key_names_the_key(tmp_path):
    with pytest.raises(ParamsError, match=r"teacher\.modle"):
        load_params(write(tmp_path, {"teacher": {"modle": "x"}}))


def test_unknown_eval_type_is_an_error(tmp_path):
    data = {"eval": {"sets": [{"name": "x", "type": "reranking", "path": "p"}]}}
    with pytest.raises(ParamsError, match=r"eval\.sets\.0.*reranking"):
        load_params(write(tmp_path, data))


def test_pruned_student_needs_layers(tmp_path):
    with pytest.raises(ParamsError, match="keep_layers"):
        load_params(write(tmp_path, {"student": {"init": "pruned"}}))


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(path)


def test_layering_and_overrides(tmp_path):
    base = write(tmp_path, {"train": {"epochs": 3, "batch_size": 16}})
    extra = write(tmp_path, {"train": {"epochs": 2}}, "extra.yaml")
    params = load_params([base, extra], ["train.learning_rate=1e-4", "student.prompts={query: 'q: '}"])
    assert params.train.epochs == 2 and params.train.batch_size == 16
    assert params.train.learning_rate == pytest.approx(1e-4)
    assert params.student.prompts == {"query": "q: "}
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        parse_override("train.epochs")


def test_an_objectives_override_names_every_objective_so_none_is_inherited():
    """Layers merge train.objectives key by key: an override that left the default's in_batch_kl out
    would train it too."""
    params = load_params(ROOT / "params.yaml", [weights_override(cosine=1.0), "train.matryoshka_dims=[]"])
    assert {k: v for k, v in params.train.objectives.items() if v} == {"cosine": 1.0}
    with pytest.raises(ValueError, match="unknown objectives"):
        weights_override(margin=1.0)


def test_flatten_uses_dotted_keys_and_yaml_spelling():
    flat = flatten(load_params(ROOT / "params.yaml"))
    assert flat["train.epochs"] == 1
    assert flat["register.model_name"] == "distilled-student"
    assert flat["corpus.sources.0.type"] == "bbc"


def test_params_yaml_is_exactly_the_defaults():
    """Defaults live in config.py; params.yaml spells out every section key with its default value."""
    from distill.config.schema import Params

    assert load_params(ROOT / "params.yaml") == Params()
    written = yaml.safe_load((ROOT / "params.yaml").read_text())
    defaults = Params().model_dump(mode="json", by_alias=True)
    for section, values in defaults.items():
        if isinstance(values, dict):
            assert set(written[section]) == set(values), section


def test_primary_metric_typo_fails_before_any_step(tmp_path):
    with pytest.raises(ParamsError, match=r"register\.primary_metric 'mean_scor'.*expected one of \['mean_score'"):
        load_params(write(tmp_path, {"register": {"primary_metric": "mean_scor"}}))
    params = load_params(write(tmp_path, {"register": {"primary_metric": "bbc_topics/accuracy"}}))
    assert params.registry.primary_metric == "bbc_topics/accuracy"
    with pytest.raises(ParamsError, match="bbc_fidelity/sim_spearman"):  # fidelity is never primary
        load_params(write(tmp_path, {"register": {"primary_metric": "bbc_fidelity/sim_spearman"}}))
