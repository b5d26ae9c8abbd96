"""Training: what the train step (:mod:`distill.steps.train`) is made of.

- ``objectives``: the weighted losses on teacher embeddings and on mined candidates with teacher scores;
- ``losses``: the loss classes the library does not have;
- ``samplers``: batch samplers (whole candidate batches, token-budget batches of long documents);
- ``fit``: one ``SentenceTransformerTrainer`` run, and the DDP relaunch under ``torchrun``;
- ``long``: the long-context stage (teacher targets of chunked documents, position extension);
- ``positions``: extending a student's position table.
"""
