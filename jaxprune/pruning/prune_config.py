"""The prune job's config (:class:`PruneConfig`, its checks); the job itself is
:mod:`jaxprune.pruning.prune`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jaxprune.core.config import check_finite, require
from jaxprune.models.classifier import ClassifierConfig
from jaxprune.pruning import data as data_lib
from jaxprune.pruning.embeddings import SSLConfig
from jaxprune.pruning.kmeans_config import KMeansConfig
from jaxprune.pruning.select import MODES
from jaxprune.pruning.supervised import check_scoring_fields

SCORES = ("ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting", "random")
EMBEDDINGS = ("pixels", "ssl")
DIGITS_SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class PruneConfig:
  """Score and prune a dataset with (self-)supervised prototypes or a supervised score."""

  data: str = "digits"
  """digits (bundled) | a TFDS name | a .npy/.npz embeddings file"""
  data_dir: str | None = None
  """TFDS data_dir (the dataset prepared there as ArrayRecord)"""
  split: str = "train"
  """dataset split (digits: train, test or all)"""
  max_examples: int | None = None
  """use at most this many examples (TFDS)"""
  embeddings: str | None = None
  """.npy/.npz embeddings, one row per example (overrides --embedding)"""
  embedding: Literal["pixels", "ssl"] = "ssl"
  """embeddings when none are given: ssl (the paper's method: a SimCLR encoder trained through
  the loop, in workdir/ssl; a rerun reuses it) or pixels (standardised)"""
  ssl: SSLConfig = field(default_factory=SSLConfig)
  """the SimCLR encoder of --embedding ssl"""
  score: Literal[
    "ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting", "random"
  ] = "ssl_prototypes"
  """the pruning score (hardness of each example)"""
  kmeans: KMeansConfig = field(default_factory=KMeansConfig)
  """k-means of ssl_prototypes (k, distance, n_init, max_iter, tol, algorithm, chunk_size);
  its distance is also that of supervised_prototypes"""
  fraction: float = 0.5
  """fraction of the examples kept, in (0, 1]"""
  mode: Literal["hard", "easy", "random"] = "hard"
  """keep the hardest, the easiest, or a random subset"""
  class_balance: float = 0.0
  """each class keeps at least this share of its proportional quota, in [0, 1]"""
  classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
  """the models behind el2n / grand / forgetting"""
  score_epochs: int | None = None
  """epochs of the scoring run behind el2n / grand / forgetting (forgetting counts over all of
  it); None: as many steps as one classifier training run (classifier.steps)"""
  score_models: int = 10
  """models (vmapped) averaged by el2n / grand / forgetting (Paul et al.: 10)"""
  score_at: float = 0.1
  """el2n is taken at this fraction of the scoring run, in (0, 1] (Paul et al.: epoch 20 of 200)"""
  grand_at: Literal["init", "score_at"] = "init"
  """grand at the models' initialisations (Paul et al.) or with el2n's models"""
  seed: int = 0
  """root of every key of the job (k-means, random subsets, SimCLR, score models)"""
  stream: bool | None = None
  """stream embeddings from disk; None: when the file is larger than 2 GiB"""
  init_sample: int | None = None
  """rows used for k-means++ seeding when streaming; None: 64 * k"""
  shard: bool = True
  """shard k-means over all local devices when there are several"""
  workdir: str = "runs/prune"
  """output directory"""
  overwrite: bool = False
  """discard a stored SimCLR encoder (workdir/ssl) of another config instead of stopping"""
  progress: bool = True
  """show progress bars and timings"""

  def __post_init__(self):
    check_finite(self)
    require(self.score in SCORES, f"score must be one of {SCORES}, got {self.score!r}")
    require(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
    require(
      self.embedding in EMBEDDINGS, f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}"
    )
    require(0.0 < self.fraction <= 1.0, f"fraction must be in (0, 1], got {self.fraction}")
    require(
      0.0 <= self.class_balance <= 1.0, f"class_balance must be in [0, 1], got {self.class_balance}"
    )
    require(
      self.data != data_lib.DEFAULT or self.split in DIGITS_SPLITS,
      f"digits splits are {DIGITS_SPLITS}; got split {self.split!r}",
    )
    for name in ("max_examples", "init_sample"):
      v = getattr(self, name)
      require(v is None or v >= 1, f"{name} must be >= 1, got {v}")
    require(self.score_models >= 1, f"score_models must be >= 1, got {self.score_models}")
    check_scoring_fields(self)
