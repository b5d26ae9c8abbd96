"""Typed pipeline configuration: ``params.yaml`` parsed and validated in one place.

- ``loader``: files and ``key=value`` overrides deep-merged and validated (:func:`loader.load_params`);
- ``schema``: the root :class:`schema.Params` and every section but these two:
- ``corpus``: corpus and query sources, long documents;
- ``eval_sets``: the ``eval`` section (each set type's fields live beside its evaluator in :mod:`distill.evaluation`);
- ``base``: what every section shares (strict sections, lenient floats, the error type).
"""
