"""Evaluation: one evaluator class per set type, in the shape of Sentence Transformers' ``evaluation/``.

Each evaluator loads and checks its data up front (:meth:`~base.Evaluator.load`), names every text it
shows a model (:meth:`~base.Evaluator.texts`, for decontamination), scores one model
(:meth:`~base.Evaluator.__call__` → metrics keyed ``<set>/<metric>``, scale 0–100) and keeps the
per-item scores behind its ``primary_metric`` (per pair, per query, per text), so that
:meth:`~base.Evaluator.primary_on` can recompute it on a bootstrap resample.

- ``base``: the set spec and :class:`Evaluator` interfaces and the result; one module per set type, its
  spec beside its evaluator: ``sts``, ``retrieval`` (BEIR sets and held-out title/keyword retrieval),
  ``labelled`` (classification and clustering of held-out articles), ``long`` (long documents),
  ``fidelity`` (agreement with the teacher).
- ``registry``: the set types (:data:`~registry.SET_TYPES`, from which the config's ``eval.sets`` union
  and type → evaluator map are built), loading every set of a config, scoring a model on all of them,
  and the fingerprint of what was evaluated. A new set type is one module holding its spec and its
  evaluator, listed once in ``SET_TYPES``.
- ``items``: the per-item scores the gate resamples; ``gate``: the paired bootstrap and the promotion
  decision; ``metrics``: the metric functions; ``report``: the Markdown report and plots.
"""
