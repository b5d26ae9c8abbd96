"""Step 5, register: track the run in MLflow, log the student, and gate the ``champion`` alias.

The gate (:func:`distill.evaluation.gate.decide`) promotes the new version only when its primary metric beats
both the undistilled student of the same run and the current champion beyond noise (paired bootstrap
on the same evaluation spec) and every ``register.min_metrics`` floor is met. A champion scored on
another evaluation spec is loaded from the registry and re-evaluated on this one. Otherwise the
version takes ``challenger`` and a ``lost_because`` tag. The step refuses a student other than the
one that was evaluated, a failure while aliasing deletes the new version, and a retried step reuses
the version its MLflow run already registered instead of registering a twin.
"""

from __future__ import annotations

import difflib
import logging
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import mlflow
import mlflow.sentence_transformers
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from distill.atomic import write_json
from distill.config.base import ParamsError
from distill.config.schema import Params, export_role
from distill.encoding import Encoder
from distill.errors import DataError, ProvenanceError
from distill.evaluation.base import Items, set_items
from distill.evaluation.gate import Interval, decide, interval_text, paired_bootstrap
from distill.evaluation.items import primary_sets, role_items
from distill.evaluation.registry import load_evaluators, score_model
from distill.models import fingerprint, load_model
from distill.readers import PER_ITEM_FILE, load_corpus, load_exports_manifest, load_per_item, read_json_artifact
from distill.services.dvc_experiments import lineage_tags
from distill.services.tracking import log_outputs, pipeline_run
from distill.student import describe

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: int
    alias: str
    reason: str
    primary_metric: str
    primary_value: float
    versus_baseline: str
    versus_champion: str | None
    champion_version: int | None
    run_id: str


# What `mlflow models serve` of a registered student takes beside the texts: the student's prompt by
# name (every student carries query, passage and sentence, "" where it has none). Passage by default.
SERVING_PARAMS = {"prompt_name": "passage"}
SERVING_EXAMPLE = (["who won the election", "The election was won by a narrow margin."], {"prompt_name": "query"})


def serving_requirements() -> list[str]:
    """The versions of every library that computes an embedding here, so the served model encodes as
    the evaluated one did (and MLflow need not infer them by loading the model in a subprocess).
    torch is pinned without its local build tag (``+cpu``, ``+cu128``): the serving host's package
    index supplies the build for its hardware, of the same version."""
    return [f"{name}=={package_version(name).split('+')[0]}"
            for name in ("sentence-transformers", "transformers", "tokenizers", "torch")]


def description(params: Params, metrics: dict, alias: str, reason: str) -> str:
    """What a person reads first on the MLflow run and model version: the verdict, the student, and
    every variant evaluated beside it (exports under the run's ``exports/`` artifacts)."""
    primary = params.registry.primary_metric
    lines = [f"{describe(params)} distilled from `{params.teacher.model}`; registered as @{alias}: {reason}.",
             f"{primary}: student {metrics[f'student/{primary}']:.2f}, undistilled {metrics[f'baseline/{primary}']:.2f}, "
             f"teacher {metrics[f'teacher/{primary}']:.2f}; student − undistilled "
             f"{interval_text(metrics, 'student/vs_baseline')}; {metrics['student/speedup']:.1f}x the teacher's texts/s.",
             "Serve: `mlflow models serve -m models:/<name>@<alias> --env-manager local`, request "
             '`{"inputs": [texts], "params": {"prompt_name": "query"}}` (query | passage | sentence).']
    for fmt in params.export.formats:
        role = export_role(fmt)
        lines.append(f"Export `{fmt}` (artifact `exports/{fmt}`, load with SentenceTransformer(path, trust_remote_code=True)): "
                     f"{primary} {metrics[f'{role}/{primary}']:.2f}, "
                     f"vs fp32 student {interval_text(metrics, f'{role}/vs_student')}, "
                     f"{metrics[f'{role}/speedup']:.1f}x the teacher's texts/s, {metrics[f'{role}/size_mb']:.0f} MB.")
    return "\n\n".join(lines)


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _version_of_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version this MLflow run registered already (a retried register step), if any."""
    try:
        found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def champion_items(client: MlflowClient, champion: ModelVersion, spec: str, params: Params) -> Items:
    """The champion's per-item scores on this run's evaluation spec: from its run's artifact when it
    was scored on the same spec, else by loading the champion and evaluating it here."""
    if champion.tags.get("eval_spec") == spec:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=champion.run_id, artifact_path=f"report/{PER_ITEM_FILE}", dst_path=tmp
                )
                return role_items(load_per_item(path), "student", params.eval.sets)
            except (MlflowException, OSError, DataError) as err:
                log.warning("champion v%s: per-item scores unavailable (%s); re-evaluating it", champion.version, err)
    else:
        log.info("champion v%s was scored on evaluation spec %s, this run on %s: re-evaluating it",
                 champion.version, champion.tags.get("eval_spec"), spec)
    model = mlflow.sentence_transformers.load_model(f"models:/{champion.name}/{champion.version}")
    corpus = load_corpus(params.paths.prepared)
    evaluators = load_evaluators(params.eval.sets, corpus[corpus["split"] == "heldout"], params.seed,
                                 params.corpus.text_type)
    encoder = Encoder(model=model, name=f"champion v{champion.version}", cache_root=Path(params.paths.eval_cache),
                      prompts=dict(model.prompts), normalize=True, batch_size=params.eval.batch_size)
    _, items = score_model(encoder, evaluators)
    return {spec.name: set_items(items, spec.name) for spec in params.eval.sets}


def run(params: Params) -> Registration:
    metrics_dir = Path(params.paths.metrics)
    metrics_path = metrics_dir / "eval.json"
    metrics = read_json_artifact(metrics_path, "evaluate")
    if unknown := [key for key in params.registry.min_metrics if key not in metrics]:
        close = {key: difflib.get_close_matches(key, metrics, n=2) for key in unknown}
        raise ParamsError(f"register.min_metrics keys {unknown} are not metrics of {metrics_path}"
                          + "".join(f"; for {k!r} did you mean {v}?" for k, v in close.items() if v)
                          + ": use its keys (`dvc metrics show`)")
    items = load_per_item(metrics_dir / PER_ITEM_FILE)
    config = params.registry
    student = load_model(params.paths.student, field="paths.student")
    student_fingerprint = fingerprint(student)
    if metrics.get("student/fingerprint") != student_fingerprint:
        raise ProvenanceError(
            f"{params.paths.student} (fingerprint {student_fingerprint}) is not the student that {metrics_path} "
            f"scored ({metrics.get('student/fingerprint')}): run the evaluate step on it first"
        )
    if params.export.formats:
        exported_from = load_exports_manifest(params.paths.exports).get("student_fingerprint")
        if exported_from != student_fingerprint:
            raise ProvenanceError(f"{params.paths.exports} was exported from another student ({exported_from}) than "
                                  f"{params.paths.student} ({student_fingerprint}): run the export and evaluate steps")
    spec = str(metrics["eval/spec"])
    sets = primary_sets(params.eval.sets, config.primary_metric)
    student_items = role_items(items, "student", params.eval.sets)

    def interval_against(rival: dict[str, Items]) -> Interval:
        return paired_bootstrap(student_items, rival, sets, config.bootstrap_resamples, config.confidence, params.seed)

    versus_baseline = interval_against(role_items(items, "baseline", params.eval.sets))
    with pipeline_run(params) as run_id:
        client = MlflowClient()
        existing = _version_of_run(client, config.model_name, run_id)
        if existing is not None:
            log.info("this run registered %s v%s already; not registering a twin", config.model_name, existing.version)
            result = _registration_from_tags(config.model_name, existing, run_id, metrics, config.primary_metric)
            write_json(metrics_dir / "registry.json", asdict(result))
            return result
        log_outputs(params, metrics)
        lineage = lineage_tags()
        mlflow.set_tags(lineage)
        champion = _champion(client, config.model_name)
        versus_champion = interval_against(champion_items(client, champion, spec, params)) if champion else None
        decision = decide(metrics, config, versus_baseline, versus_champion)
        texts, example_params = SERVING_EXAMPLE
        info = mlflow.sentence_transformers.log_model(
            student,
            name="student",
            registered_model_name=config.model_name,
            pip_requirements=serving_requirements(),
            signature=infer_signature(texts, student.encode(texts, **example_params), params=SERVING_PARAMS),
            input_example=SERVING_EXAMPLE,
        )
        version = str(info.registered_model_version)
        alias = CHAMPION if decision.promote else CHALLENGER
        note = description(params, metrics, alias, decision.reason)
        tags = {
            "gate": decision.reason,
            "alias_at_registration": alias,
            "eval_spec": spec,
            "student_fingerprint": student_fingerprint,
            "corpus_sha256": str(metrics.get("corpus/sha256")),
            "vs_baseline": str(versus_baseline),
            "vs_champion": f"v{champion.version}: {versus_champion}" if champion else "no champion",
            **lineage,
        }
        if not decision.promote:
            tags["lost_because"] = decision.reason
        try:
            for key, value in tags.items():
                client.set_model_version_tag(config.model_name, version, key, value)
            client.set_registered_model_alias(config.model_name, alias, version)
            client.update_model_version(config.model_name, version, description=note)
        except Exception:
            client.delete_model_version(config.model_name, version)
            raise
        mlflow.set_tags({"registered_version": version, "registry_alias": alias, "mlflow.note.content": note})
    result = Registration(
        model_name=config.model_name,
        version=int(version),
        alias=alias,
        reason=decision.reason,
        primary_metric=config.primary_metric,
        primary_value=float(metrics[f"student/{config.primary_metric}"]),
        versus_baseline=str(versus_baseline),
        versus_champion=str(versus_champion) if versus_champion else None,
        champion_version=int(champion.version) if champion else None,
        run_id=run_id,
    )
    write_json(metrics_dir / "registry.json", asdict(result))
    log.info("registered %s version %s as %s: %s", config.model_name, version, alias, decision.reason)
    return result


def _registration_from_tags(name: str, version: ModelVersion, run_id: str, metrics: dict, primary: str) -> Registration:
    tags = version.tags
    vs_champion = tags.get("vs_champion", "no champion")
    return Registration(
        model_name=name,
        version=int(version.version),
        alias=tags.get("alias_at_registration", CHALLENGER),
        reason=tags.get("gate", ""),
        primary_metric=primary,
        primary_value=float(metrics[f"student/{primary}"]),
        versus_baseline=tags.get("vs_baseline", ""),
        versus_champion=None if vs_champion == "no champion" else vs_champion,
        champion_version=int(vs_champion[1:].split(":")[0]) if vs_champion.startswith("v") else None,
        run_id=run_id,
    )
