"""Data pruning (Sorscher et al. 2022): k-means prototypes (``kmeans``, ``kmeans_streamed``) and
the supervised scores they are compared with (``scores``, trained by ``supervised``), subset
selection (``select``), data and embeddings, and the jobs: ``prune`` (score and keep a fraction),
``train_subset`` (train on the kept subset), ``curve`` (accuracy vs fraction kept), ``benchmark``,
each with its config (and presets) in ``<job>_config``.
Every key of a job derives from its seed through the salts in ``keys``."""
