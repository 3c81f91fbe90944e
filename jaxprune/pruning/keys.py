"""The random streams of the pruning jobs, in one place.

Every key of a job is ``fold_in(jax.random.key(cfg.seed), SALT)`` with one named salt per stream:
a job is reproducible from its seed, and no two streams share a key (the k-means seeding and the
random baseline's order, say, stay independent however the seed is set).
"""

from __future__ import annotations

import jax

KMEANS = 1  # k-means++ seeding and restarts
SELECT = 2  # the order of mode="random" subsets (and the curve's random baseline)
RANDOM_SCORES = 3  # score="random"
SSL = 4  # the SimCLR encoder: init, data order, augmentations
SCORE_MODELS = 5  # the ensemble behind el2n / grand / forgetting
TRAIN_MODELS = 6  # the classifiers trained on a subset (model i: fold_in(key, i))
TIES = 7  # the order that breaks ties between equal scores in select


def job_key(seed: int, salt: int) -> jax.Array:
  """The key of stream ``salt`` of the job seeded ``seed``."""
  return jax.random.fold_in(jax.random.key(int(seed)), salt)
