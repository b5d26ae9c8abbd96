"""Training: what the train step (:mod:`distill.steps.train`) is made of.

- ``objectives``: the table of objectives ``train.objectives`` may weight (data, loss, label mapping);
- ``losses``: the loss classes the library does not have, and the weighted sum of a config's objectives;
- ``candidates``: mined query candidates as a training dataset with its loss and prompts;
- ``samplers``: batch samplers (whole candidate batches, token-budget batches of long documents);
- ``fit``: one ``SentenceTransformerTrainer`` run, and the DDP relaunch under ``torchrun``;
- ``long``: the long-context stage (teacher targets of chunked documents, position extension);
- ``positions``: extending a student's position table.
"""
