"""The subset training job's config (:class:`SubsetTrainConfig`, its checks); the job itself is
:mod:`jaxprune.pruning.train_subset`."""

from __future__ import annotations

from dataclasses import dataclass, field

from jaxprune.core.config import check_finite, require
from jaxprune.models.classifier import ClassifierConfig


@dataclass(frozen=True)
class SubsetTrainConfig:
  """Train classifiers on the examples kept by scripts/prune.py and report test accuracy."""

  data: str = "digits"
  """digits (bundled, fixed train/test split) | a TFDS name (train/test splits)"""
  data_dir: str | None = None
  """TFDS data_dir"""
  max_examples: int | None = None
  """use at most this many examples of each split (TFDS)"""
  kept: str | None = None
  """kept_indices.npy written by scripts/prune.py (rows of the train split); None: the full
  training split. The kept_indices.json beside it (the data's identity) must match this run's
  training split; a kept file without it is used unchecked, with a warning"""
  classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
  """the model and how it trains. classifier.steps may be raised on resume, but the cosine
  learning-rate schedule then changes at the resume point: the model differs from a fresh run
  with those steps (a warning says so)"""
  seed: int = 0
  """root of the models' keys (model i: fold_in(fold_in(key(seed), salt), i))"""
  seeds: int = 1
  """models trained side by side (vmapped); accuracy is reported for each"""
  shard: bool = True
  """shard batches over all local devices"""
  distributed: bool = False
  """call jax.distributed.initialize() first (multi-host)"""
  workdir: str = "runs/train"
  """output directory (checkpoints, metrics.jsonl, result.json)"""
  overwrite: bool = False
  """discard a run of another config stored in workdir instead of stopping"""
  progress: bool = True
  """show progress bars and timings"""

  def __post_init__(self):
    check_finite(self)
    require(self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}")
    require(
      self.max_examples is None or self.max_examples >= 1,
      f"max_examples must be >= 1, got {self.max_examples}",
    )
