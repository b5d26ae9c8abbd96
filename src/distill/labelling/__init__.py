"""Teacher labels for the label step: ``cache`` (content-addressed embeddings, many writers),
``dask_label`` (labelling on a Dask cluster into that cache), ``mining`` (hard negatives ranked by the
teacher) and ``scoring`` (cross-encoder or LLM reranker scores of the mined candidates, cached)."""
