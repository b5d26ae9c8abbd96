"""Services the pipeline runs beside its steps: ``servers`` (Prefect and MLflow servers and the
deployment, ``python -m distill.services``), ``tracking`` (MLflow logging), ``dvc_experiments``
(DVC commands, experiments and provenance), ``lock`` (one pipeline run at a time per project)."""
